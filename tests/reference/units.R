# Reference values for the unit of analysis (psychometrics/analysis/units.py, tests/test_units.py).
#
#   cd tests/reference && Rscript units.R      # writes golden/units.json
#
# Inputs:
#   data/units-items.csv         the raw answers of a simulated run (written by `python tests/test_units.py`):
#                                12 personas x 2 samples (24 respondents) in two design cells (option orders),
#                                the Mini-IPIP (1-5, reverse-keyed items marked)
#   data/sensitivity-scores.csv  the scale scores of tests/test_sensitivity.py's run
#
# 1. Reliability within each design cell: psych::alpha of the cell's respondents (persona x sample) x items
#    matrix, per scale, keyed here (6 - value for a reverse-keyed item).
# 2. The variance components of the design facets in score points: the standard deviations (sdcor) of
#    lmer's crossed random intercepts, REML, for the factor sets golden/sensitivity.json uses.
suppressPackageStartupMessages({library(psych); library(lme4); library(jsonlite)})

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
if (length(script) == 1) setwd(dirname(normalizePath(script)))

golden <- list(meta = list(r_version = R.version.string, psych = as.character(packageVersion("psych")),
                           lme4 = as.character(packageVersion("lme4")), generated_by = "tests/reference/units.R"))

# --- 1. alpha within each design cell ---------------------------------------------------------------
items <- read.csv("data/units-items.csv", stringsAsFactors = FALSE)
items$keyed <- ifelse(items$reverse_keyed == "True", 1 + 5 - items$value, items$value)
items$respondent <- paste(items$persona, items$sample, sep = "|")
rows <- list()
for (cell in unique(items$option_order)) {
  for (s in unique(items$scale)) {
    d <- items[items$option_order == cell & items$scale == s, ]
    wide <- reshape(d[, c("respondent", "item_id", "keyed")], idvar = "respondent", timevar = "item_id",
                    direction = "wide")
    x <- as.matrix(wide[, -1])
    a <- psych::alpha(x, check.keys = FALSE, warnings = FALSE)
    rows[[length(rows) + 1]] <- list(
      option_order = cell, scale = s, n = nrow(x),
      raw_alpha = a$total$raw_alpha, std_alpha = a$total$std.alpha, g6 = a$total[["G6(smc)"]],
      average_r = a$total$average_r, feldt_lower = a$feldt$lower.ci[[1]], feldt_upper = a$feldt$upper.ci[[1]])
  }
}
golden$alpha <- rows

# --- 2. variance components as standard deviations ---------------------------------------------------
scores <- read.csv("data/sensitivity-scores.csv", stringsAsFactors = FALSE)
scores <- scores[scores$kind == "scale", ]
lmer_sd <- function(factors) {
  out <- list()
  for (s in unique(scores$scale)) {
    ds <- scores[scores$scale == s, ]
    formula <- as.formula(paste("score ~ 1 +", paste0("(1 | ", factors, ")", collapse = " + ")))
    fit <- lmer(formula, data = ds, REML = TRUE,
                control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e6),
                                      check.conv.singular = "ignore"))
    vc <- as.data.frame(VarCorr(fit))
    sds <- setNames(as.list(vc$sdcor), ifelse(vc$grp == "Residual", "residual", vc$grp))
    out[[length(out) + 1]] <- list(scale = s, boundary = isSingular(fit, tol = 1e-6), sds = sds)
  }
  list(factors = factors, rows = out)
}
golden$lmer_sd <- list(lmer_sd(c("option_order", "template", "persona", "wording")),
                       lmer_sd(c("option_order", "persona")))

writeLines(toJSON(golden, auto_unbox = TRUE, digits = NA, pretty = TRUE), "golden/units.json")
