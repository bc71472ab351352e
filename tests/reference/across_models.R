# Reference values for the study report's variance decomposition with model as a factor
# (psychometrics.analysis.across_models.model_variance, i.e. psychometrics.statistics.design_effects.
# variance_decomposition(scores, extra_factors = "model")), computed in R on data written here.
#
#   cd tests/reference && Rscript across_models.R      # writes data/across-models-scores.csv, golden/across_models.json
#
# The data (seeded): four models x two option orders x two templates x five personas, one score per cell
# for two scales of one inventory. Scale E: the models differ by about 1.5 points, personas by less, option
# order a little. Scale A: the models do not differ (their component is at or near zero) and the option order
# moves the models differently (an interaction, left in the residual). Model names carry commas and '=' as
# psytest's do. Unbalanced: a deterministic subset removed (the Python test removes the same rows).
suppressPackageStartupMessages({library(lme4); library(jsonlite)})

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
if (length(script) == 1) setwd(dirname(normalizePath(script)))

set.seed(20261206)
models <- c("sim/e=1,seed=1", "sim/e=-1,n=1,seed=2", "sim/a=1,acquiescence=1,seed=3", "local/qwen2.5-0.5b")
grid <- expand.grid(persona = sprintf("p%d", 1:5), template = c("numbered", "worded"),
                    option_order = c("original", "reversed"), model = models, stringsAsFactors = FALSE)
model_e <- c(1.5, -1.5, 0.2, 0.0)
persona_e <- c(-0.4, 0.1, 0.3, 0.0, 0.2)
e <- grid
e$scale <- "E"
e$score <- 3 + model_e[match(e$model, models)] + persona_e[match(e$persona, sprintf("p%d", 1:5))] +
  0.15 * (e$option_order == "reversed") + 0.2 * (e$template == "worded") + rnorm(nrow(e), 0, 0.3)
a <- grid
a$scale <- "A"
slope <- c(0.4, -0.4, 0.2, -0.2)
a$score <- 3 + slope[match(a$model, models)] * (a$option_order == "reversed") + rnorm(nrow(a), 0, 0.25)
scores <- rbind(e, a)
scores$inventory <- "mini-ipip"
scores$mode <- "text"
scores$kind <- "scale"
scores$score <- round(scores$score, 6)
scores <- scores[, c("inventory", "mode", "kind", "scale", "model", "option_order", "template", "persona", "score")]
write.csv(scores, "data/across-models-scores.csv", row.names = FALSE)
scores <- read.csv("data/across-models-scores.csv", stringsAsFactors = FALSE)

golden <- list(meta = list(r_version = R.version.string, lme4 = as.character(packageVersion("lme4")),
                           generated_by = "tests/reference/across_models.R"))
factors <- c("model", "option_order", "template", "persona")
unbalanced_drop <- function(d) (d$model == models[4] & d$template == "worded") | (d$persona == "p2" & d$option_order == "reversed")

aov_table <- function(d) {
  rows <- list()
  for (s in unique(d$scale)) {
    ds <- d[d$scale == s, ]
    for (f in factors) ds[[f]] <- factor(ds[[f]])
    tab <- summary(aov(reformulate(factors, "score"), data = ds))[[1]]
    sources <- trimws(rownames(tab))
    for (i in seq_along(sources)) {
      rows[[length(rows) + 1]] <- list(scale = s, source = ifelse(sources[i] == "Residuals", "residual", sources[i]),
                                       df = tab[i, "Df"], sum_sq = tab[i, "Sum Sq"], mean_sq = tab[i, "Mean Sq"],
                                       F = tab[i, "F value"], p = tab[i, "Pr(>F)"])
    }
  }
  rows
}
golden$aov <- list(balanced = aov_table(scores), unbalanced = aov_table(scores[!unbalanced_drop(scores), ]))

lmer_components <- function(factors) {
  rows <- list()
  for (s in unique(scores$scale)) {
    ds <- scores[scores$scale == s, ]
    formula <- as.formula(paste("score ~ 1 +", paste0("(1 | ", factors, ")", collapse = " + ")))
    fit <- lmer(formula, data = ds, REML = TRUE,
                control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e6),
                                      check.conv.singular = "ignore"))
    vc <- as.data.frame(VarCorr(fit))
    rows[[length(rows) + 1]] <- list(scale = s, boundary = isSingular(fit, tol = 1e-6),
                                     components = setNames(as.list(vc$vcov), ifelse(vc$grp == "Residual", "residual", vc$grp)))
  }
  list(factors = factors, rows = rows)
}
golden$lmer <- list(lmer_components(factors), lmer_components(c("model", "persona")), lmer_components(c("model")))
writeLines(toJSON(golden, auto_unbox = TRUE, digits = NA, pretty = TRUE), "golden/across_models.json")
