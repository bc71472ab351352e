# Golden values for psychometrics/statistics/{efa,omega,rotation,congruence}.py: psych::fa, psych::omega, psych::factor.congruence.
# Run from tests/reference:  Rscript factor_analysis.R   (writes golden/factor_analysis.json)
# psych 2.2.9, GPArotation 2022.10.2 (Debian packages r-cran-psych r-cran-gparotation).
suppressPackageStartupMessages({library(psych); library(GPArotation); library(jsonlite)})

bfi <- read.csv("data/bfi25.csv")
reverse <- c("A1", "C4", "C5", "E1", "E2", "O2", "O5")  # psychTools::bfi.keys
for (v in reverse) bfi[[v]] <- 7 - bfi[[v]]            # responses 1..6: keyed = 7 - x
sim <- read.csv("data/sim-4factor.csv")
datasets <- list(bfi25 = bfi, sim4 = sim)

# bfi with missing values at fixed cells (every 97th cell in column-major order) for pairwise correlations.
bfi_missing <- as.matrix(bfi)
bfi_missing[seq(1, length(bfi_missing), by = 97)] <- NA
datasets$bfi25_missing <- as.data.frame(bfi_missing)

nz <- function(x) if (is.null(x)) NA else x
mat <- function(x) {
  x <- if (is.data.frame(x)) as.matrix(x) else as.matrix(unclass(x))
  list(rows = rownames(x), cols = colnames(x), values = unname(x))
}
fa_stats <- function(f) list(
  dof = f$dof, objective = nz(f$objective), STATISTIC = nz(f$STATISTIC), PVAL = nz(f$PVAL),
  RMSEA = if (is.null(f$RMSEA)) c(NA, NA, NA) else unname(f$RMSEA[1:3]), TLI = nz(f$TLI), BIC = nz(f$BIC),
  null.chisq = nz(f$null.chisq), null.dof = f$null.dof, null.model = nz(f$null.model), rms = f$rms,
  crms = nz(f$crms), chi = nz(f$chi), EPVAL = nz(f$EPVAL), fit = f$fit, fit.off = f$fit.off, n.obs = nz(f$n.obs)
)

fa_cases <- list(
  list(name = "bfi25_minres_oblimin", data = "bfi25", nfactors = 5, fm = "minres", rotate = "oblimin"),
  list(name = "bfi25_ml_oblimin", data = "bfi25", nfactors = 5, fm = "ml", rotate = "oblimin"),
  list(name = "bfi25_minres_varimax", data = "bfi25", nfactors = 5, fm = "minres", rotate = "varimax"),
  list(name = "bfi25_minres_promax", data = "bfi25", nfactors = 5, fm = "minres", rotate = "promax"),
  list(name = "bfi25_minres_none", data = "bfi25", nfactors = 5, fm = "minres", rotate = "none"),
  list(name = "bfi25_ml_varimax", data = "bfi25", nfactors = 5, fm = "ml", rotate = "varimax"),
  list(name = "bfi25_A_minres_1", data = "bfi25", items = paste0("A", 1:5), nfactors = 1, fm = "minres",
       rotate = "oblimin"),
  list(name = "bfi25_ml_oblimin_corr", data = "bfi25", corr = TRUE, nfactors = 5, fm = "ml", rotate = "oblimin"),
  list(name = "bfi25_missing_minres_oblimin", data = "bfi25_missing", nfactors = 5, fm = "minres",
       rotate = "oblimin"),
  list(name = "sim4_minres_oblimin", data = "sim4", nfactors = 4, fm = "minres", rotate = "oblimin"),
  list(name = "sim4_ml_oblimin", data = "sim4", nfactors = 4, fm = "ml", rotate = "oblimin"),
  list(name = "sim4_minres_varimax", data = "sim4", nfactors = 4, fm = "minres", rotate = "varimax"),
  list(name = "sim4_ml_promax", data = "sim4", nfactors = 4, fm = "ml", rotate = "promax"),
  # Heywood cases: uniquenesses at psych's lower bound of 0.005.
  list(name = "sim4_ml_oblimin_7", data = "sim4", nfactors = 7, fm = "ml", rotate = "oblimin"),
  list(name = "sim4_minres_oblimin_7", data = "sim4", nfactors = 7, fm = "minres", rotate = "oblimin"),
  list(name = "bfi25_minres_oblimin_10", data = "bfi25", nfactors = 10, fm = "minres", rotate = "oblimin"),
  # Fewer respondents than items: a singular correlation matrix (psych smooths it for the fit statistics).
  list(name = "bfi25_first20_minres_oblimin", data = "bfi25", rows = 20, nfactors = 2, fm = "minres",
       rotate = "oblimin")
)

fa_out <- list()
fits <- list()
for (case in fa_cases) {
  x <- datasets[[case$data]]
  if (!is.null(case$items)) x <- x[, case$items]
  if (!is.null(case$rows)) x <- x[seq_len(case$rows), ]
  f <- suppressWarnings(suppressMessages(
    if (isTRUE(case$corr)) fa(cor(x), case$nfactors, n.obs = nrow(x), fm = case$fm, rotate = case$rotate)
    else fa(x, case$nfactors, fm = case$fm, rotate = case$rotate)))
  fits[[case$name]] <- f
  fa_out[[length(fa_out) + 1]] <- c(case, list(
    loadings = mat(f$loadings), Phi = if (is.null(f$Phi)) NA else mat(f$Phi), Structure = mat(f$Structure),
    communality = unname(f$communality), communalities = unname(f$communalities),
    uniquenesses = unname(f$uniquenesses), complexity = unname(f$complexity), Vaccounted = mat(f$Vaccounted),
    e.values = f$e.values, stats = fa_stats(f)))
}

omega_cases <- list(
  list(name = "bfi25_AC_3", data = "bfi25", items = c(paste0("A", 1:5), paste0("C", 1:5)), nfactors = 3),
  list(name = "sim4_4", data = "sim4", nfactors = 4),
  list(name = "bfi25_5", data = "bfi25", nfactors = 5),
  list(name = "bfi25_AC_2", data = "bfi25", items = c(paste0("A", 1:5), paste0("C", 1:5)), nfactors = 2),
  list(name = "bfi25_AC_1", data = "bfi25", items = c(paste0("A", 1:5), paste0("C", 1:5)), nfactors = 1)
)
omega_out <- list()
for (case in omega_cases) {
  x <- datasets[[case$data]]
  if (!is.null(case$items)) x <- x[, case$items]
  # The data are already reverse keyed: key = all +1 (no flipping), as psytest's omega().
  om <- suppressWarnings(suppressMessages(
    omega(x, nfactors = case$nfactors, fm = "minres", rotate = "oblimin", key = rep(1, ncol(x)), plot = FALSE)))
  sl <- om$schmid$sl
  omega_out[[length(omega_out) + 1]] <- c(case, list(
    omega_h = om$omega_h, omega.tot = om$omega.tot, omega.lim = om$omega.lim, alpha = om$alpha, G6 = om$G6,
    ECV = unname(om$ECV), sl = mat(sl), omega.group = mat(om$omega.group),
    gloading = unname(as.vector(om$schmid$gloading)),
    phi = if (case$nfactors > 1) mat(om$schmid$phi) else NA,
    oblique = mat(om$schmid$oblique)))
}

# Tucker's congruence (unrounded: digits = 20 leaves the values as computed).
true_sim <- matrix(0, 20, 4)
for (f in 1:4) true_sim[(f - 1) * 5 + 1:5, f] <- c(.75, .7, .65, .6, .55)
congruence_out <- list(
  list(name = "bfi25_minres_vs_ml", a = "bfi25_minres_oblimin", b = "bfi25_ml_oblimin",
       values = unname(factor.congruence(fits$bfi25_minres_oblimin, fits$bfi25_ml_oblimin, digits = 20))),
  list(name = "bfi25_oblimin_vs_varimax", a = "bfi25_minres_oblimin", b = "bfi25_minres_varimax",
       values = unname(factor.congruence(fits$bfi25_minres_oblimin, fits$bfi25_minres_varimax, digits = 20))),
  list(name = "sim4_true_vs_minres", a = "true_sim_loadings", b = "sim4_minres_oblimin",
       values = unname(factor.congruence(true_sim, fits$sim4_minres_oblimin, digits = 20)))
)

out <- list(
  r_version = R.version.string, psych = as.character(packageVersion("psych")),
  GPArotation = as.character(packageVersion("GPArotation")), jsonlite = as.character(packageVersion("jsonlite")),
  reverse_keyed = reverse, missing_every = 97, true_sim_loadings = true_sim,
  fa = fa_out, omega = omega_out, congruence = congruence_out
)
# auto_unbox writes every length-1 vector as a scalar (e.g. the column names of a one-factor solution).
write_json(out, "golden/factor_analysis.json", digits = NA, auto_unbox = TRUE, pretty = TRUE, na = "null")
