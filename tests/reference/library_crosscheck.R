# Held-out data and lme4 reference values for tests/test_library_crosscheck.py, which compares psytest
# with the design card's libraries (statsmodels' MixedLM here) on data none of them was tuned on.
#
#   cd tests/reference && Rscript library_crosscheck.R   # writes data/spi-scores.csv, golden/library_crosscheck.json
#
# data/spi-scores.csv: psychTools::spi (SAPA Personality Inventory, Condon 2018; 4,000 people), the
# demographics used as grouping variables and the Big Five scale scores of its 135 items
# (psych::scoreItems with psychTools::spi.keys, the mean of the items answered).
#
# Models: a random intercept per category of a demographic variable, with age as a fixed effect, fitted
# by lmer(REML = TRUE). The category variances are small (a few thousandths of the residual variance, or
# zero), the region where an optimiser can stop early and still report convergence.
suppressPackageStartupMessages({library(psych); library(psychTools); library(lme4); library(jsonlite)})

spi <- psychTools::spi
scores <- scoreItems(psychTools::spi.keys[c("Agree", "Consc", "Neuro", "Extra", "Open")], spi, impute = "none")$scores
out <- data.frame(age = spi$age, sex = spi$sex, education = spi$education, p2edu = spi$p2edu,
                  wellness = spi$wellness, scores)
write.csv(out, "data/spi-scores.csv", row.names = FALSE)

d <- read.csv("data/spi-scores.csv")  # fit what the tests read (15 significant digits)
cases <- list(c("Agree", "p2edu"), c("Extra", "education"), c("Open", "wellness"), c("Consc", "p2edu"))
mixed <- lapply(cases, function(case) {
  score <- case[1]; group <- case[2]
  dd <- d[!is.na(d[[score]]) & !is.na(d[[group]]) & !is.na(d$age), ]
  fit <- lmer(as.formula(paste(score, "~ age + (1 |", group, ")")), data = dd, REML = TRUE,
              control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e6),
                                    check.conv.singular = "ignore"))
  co <- summary(fit)$coefficients
  vc <- as.data.frame(VarCorr(fit))
  list(score = score, group = group, n = nrow(dd), n_groups = length(unique(dd[[group]])),
       intercept = co["(Intercept)", "Estimate"], age = co["age", "Estimate"],
       intercept_se = co["(Intercept)", "Std. Error"], age_se = co["age", "Std. Error"],
       group_variance = vc$vcov[vc$grp == group], residual_variance = vc$vcov[vc$grp == "Residual"],
       reml = as.numeric(REMLcrit(fit)), singular = isSingular(fit))
})

golden <- list(
  meta = list(r_version = R.version.string, lme4 = as.character(packageVersion("lme4")),
              psych = as.character(packageVersion("psych")),
              psychTools = as.character(packageVersion("psychTools"))),
  mixed = mixed
)
write_json(golden, "golden/library_crosscheck.json", auto_unbox = TRUE, digits = NA, na = "null", pretty = TRUE)
