# Reference values for psychometrics/validity/behavior_scores.py: variant-centred scores with missing
# variants, for an interval task (lm with sum contrasts) and a ratio task (glm, quasipoisson), and alpha
# with Feldt's interval (psych::alpha) on the respondent x variant table; as a cross-check the respondent
# levels of lmer(m ~ 1 + (1 | respondent) + (1 | variant)), variant as a random effect.
#
#   cd tests/reference && Rscript behavior_scores.R   # writes data/behavior-scores.csv, golden/behavior_scores.json
#
# Two models x 12 personas x 5 variants x 2 samples. Variant means differ a lot (reply length: 40 to 210
# words); each respondent's level is persona-specific. Missing: the high-mean variant v03 is lost by the
# personas with the highest level (p09-p12) in model a, and single unreadable samples are scattered.
suppressPackageStartupMessages({library(psych); library(jsonlite); library(lme4)})
args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
if (length(script) == 1) setwd(dirname(normalizePath(script)))

set.seed(16)
personas <- sprintf("p%02d", 1:12)
rows <- list()
for (m in c("a", "b")) for (p in 1:12) {
  level <- (p - 6.5) / 4 + rnorm(1, 0, 0.3)
  for (v in 1:5) for (s in 0:1) {
    amount <- 0.5 + c(-0.2, 0, 0.3, 0.1, -0.1)[v] + 0.1 * level + rnorm(1, 0, 0.05)
    words <- round(c(41, 80, 211, 120, 60)[v] * exp(0.3 * level + rnorm(1, 0, 0.15)))
    rows[[length(rows) + 1]] <- data.frame(model = m, persona = personas[p], sample = s, variant = sprintf("v%02d", v),
                                           amount = amount, words = words)
  }
}
d <- do.call(rbind, rows)
lost <- d$model == "a" & d$variant == "v03" & d$persona %in% c("p09", "p10", "p11", "p12")
d$amount[lost] <- NA; d$words[lost] <- NA
scattered <- c(7, 33, 58, 101, 150, 177, 203)
d$amount[scattered] <- NA
d$words[scattered + 1] <- NA
write.csv(d, "data/behavior-scores.csv", row.names = FALSE)

cells <- function(column, m) {
  x <- d[d$model == m & !is.na(d[[column]]), ]
  aggregate(x[[column]], list(persona = x$persona, variant = x$variant), mean)
}
scores <- list()
for (m in c("a", "b")) {
  a <- cells("amount", m)
  a$persona <- factor(a$persona); a$variant <- factor(a$variant)
  fit <- lm(x ~ 0 + persona + variant, a, contrasts = list(variant = "contr.sum"))
  interval <- coef(fit)[paste0("persona", levels(a$persona))]
  w <- cells("words", m)
  w$persona <- factor(w$persona); w$variant <- factor(w$variant)
  fit <- glm(x ~ 0 + persona + variant, family = quasipoisson, data = w, control = glm.control(epsilon = 1e-15,
                                                                                                 maxit = 200))
  ratio <- exp(coef(fit)[paste0("persona", levels(w$persona))])
  plain <- aggregate(x ~ persona, a, mean)$x
  # Cross-check: variant as a random effect (crossed with the respondent), the respondent's predicted level.
  mixed <- lmer(x ~ 1 + (1 | persona) + (1 | variant), a, REML = TRUE)
  blup <- fixef(mixed)[1] + ranef(mixed)$persona[levels(a$persona), 1]
  scores[[m]] <- list(persona = levels(a$persona), interval = unname(interval), ratio = unname(ratio / mean(ratio)),
                      plain_interval = plain, mixed_interval = unname(blup))
}

alpha_of <- function(column, models, ratio) {
  x <- d[d$model %in% models & !is.na(d[[column]]), ]
  agg <- aggregate(x[[column]], list(model = x$model, persona = x$persona, variant = x$variant), mean)
  wide <- reshape(agg, idvar = c("model", "persona"), timevar = "variant", direction = "wide")
  y <- as.matrix(wide[, -(1:2)])
  g <- wide$model
  mean_in <- function(v) ave(v, g, FUN = function(u) mean(u, na.rm = TRUE))
  if (ratio) y <- apply(y, 2, function(v) v / mean_in(v))
  if (length(models) > 1) y <- apply(y, 2, function(v) { v[ave(!is.na(v), g, FUN = sum) < 2] <- NA; v - mean_in(v) })
  fit <- suppressWarnings(suppressMessages(psych::alpha(y, check.keys = FALSE, use = "pairwise")))
  list(column = column, scope = if (length(models) > 1) "pooled" else models, reliability = fit$total$raw_alpha,
       low = as.numeric(fit$feldt$lower.ci), high = as.numeric(fit$feldt$upper.ci), n = nrow(y), k = ncol(y))
}
alphas <- list()
for (column in c("amount", "words")) for (models in list("a", "b", c("a", "b")))
  alphas[[length(alphas) + 1]] <- alpha_of(column, models, column == "words")

write_json(list(meta = list(r_version = R.version.string, psych = as.character(packageVersion("psych")),
                            lme4 = as.character(packageVersion("lme4")),
                            generated_by = "tests/reference/behavior_scores.R"),
                scores = scores, alpha = alphas),
           "golden/behavior_scores.json", auto_unbox = TRUE, digits = NA, na = "null", pretty = TRUE)
