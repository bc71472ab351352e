# Reference values for psychometrics/statistics/cfa.py, computed with lavaan on the same data.
#
#   cd tests/reference && Rscript cfa.R      # writes golden/cfa.json
#
# Models: simple structure, correlated factors, latent variances fixed to 1 (std.lv = TRUE), ML with
# lavaan's defaults (likelihood = "normal": the sample covariance matrix divides by N; expected information
# for the standard errors).
#   bfi5   the Big Five on data/bfi25.csv, items reverse keyed (7 - x for A1 C4 C5 E1 E2 O2 O5)
#   sim4   four factors on data/sim-4factor.csv
#   bfi2   a two-factor model on the A and C items of the first 300 bfi respondents (a small sample)
#   sim4_first21  the four-factor model on the first 21 rows of sim-4factor: a Heywood case (lavaan warns
#          "some estimated ov variances are negative"; the warning is recorded)
suppressPackageStartupMessages({library(lavaan); library(jsonlite)})

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
if (length(script) == 1) setwd(dirname(normalizePath(script)))

bfi <- read.csv("data/bfi25.csv")
reversed <- c("A1", "C4", "C5", "E1", "E2", "O2", "O5")
bfi[reversed] <- 7 - bfi[reversed]
sim <- read.csv("data/sim-4factor.csv")

syntax <- function(model) {
  paste(sprintf("%s =~ %s", names(model), sapply(model, paste, collapse = " + ")), collapse = "\n")
}

measures <- c("chisq", "df", "pvalue", "cfi", "tli", "rmsea", "rmsea.ci.lower", "rmsea.ci.upper", "srmr",
              "aic", "bic", "logl", "npar", "baseline.chisq", "baseline.df", "ntotal")

run <- function(data, model) {
  warned <- character(0)
  fit <- withCallingHandlers(cfa(syntax(model), data = data, std.lv = TRUE),
                             warning = function(w) {
                               warned <<- c(warned, conditionMessage(w))
                               invokeRestart("muffleWarning")
                             })
  fm <- fitMeasures(fit, measures)
  pe <- parameterEstimates(fit)
  std <- standardizedSolution(fit)
  load <- pe[pe$op == "=~", ]
  load_std <- std[std$op == "=~", ]
  resid <- pe[pe$op == "~~" & pe$lhs == pe$rhs & !(pe$lhs %in% names(model)), ]
  resid_std <- std[std$op == "~~" & std$lhs == std$rhs & !(std$lhs %in% names(model)), ]
  phi <- pe[pe$op == "~~" & pe$lhs != pe$rhs, ]
  list(
    model = model,
    converged = lavInspect(fit, "converged"),
    warnings = gsub("[[:space:]]+", " ", warned),
    iterations = lavInspect(fit, "iterations"),
    fit = as.list(unclass(fm)),
    loadings = list(factor = load$lhs, item = load$rhs, est = load$est, se = load$se,
                    std_all = load_std$est.std),
    residual_variances = list(item = resid$lhs, est = resid$est, se = resid$se, std_all = resid_std$est.std),
    factor_correlations = list(lhs = phi$lhs, rhs = phi$rhs, est = phi$est, se = phi$se)
  )
}

bfi5 <- list(A = paste0("A", 1:5), C = paste0("C", 1:5), E = paste0("E", 1:5),
             N = paste0("N", 1:5), O = paste0("O", 1:5))
sim4 <- list(F1 = paste0("x", 1:5), F2 = paste0("x", 6:10), F3 = paste0("x", 11:15), F4 = paste0("x", 16:20))
bfi2 <- list(A = paste0("A", 1:5), C = paste0("C", 1:5))

golden <- list(
  meta = list(
    r_version = R.version.string,
    lavaan = as.character(packageVersion("lavaan")),
    generated_by = "tests/reference/cfa.R",
    bfi_reversed = reversed
  ),
  models = list(
    bfi5 = run(bfi, bfi5),
    sim4 = run(sim, sim4),
    bfi2_first300 = run(bfi[1:300, ], bfi2),
    sim4_first21 = run(sim[1:21, ], sim4)
  )
)
dir.create("golden", showWarnings = FALSE)
write_json(golden, "golden/cfa.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
