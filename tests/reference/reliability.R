# Reference values for psychometrics/statistics/reliability.py, computed with psych on the same data.
#
#   cd tests/reference && Rscript reliability.R      # writes golden/reliability.json
#
# Input (committed): data/bfi25.csv (psychTools::bfi, 25 items, complete cases), data/sim-4factor.csv,
# data/sim-retest.csv. The bfi items are reverse keyed here (7 - x for A1 C4 C5 E1 E2 O2 O5), so every
# scale is passed already keyed, as the Python functions expect.
#
# Split-half: psych::splitHalf (brute = TRUE, raw = TRUE) enumerates choose(k, k %/% 2) / 2 splits in
# lexicographic order. For an even k these are exactly all distinct splits. For an odd k they are only part
# of them (the choose(k, (k - 1) / 2) subsets of size (k - 1) / 2 are all distinct splits), so for odd k this
# script also enumerates every split itself with combn, using psych's own coefficient 4 * C_AB / sum(R).
suppressPackageStartupMessages({library(psych); library(jsonlite)})

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
if (length(script) == 1) setwd(dirname(normalizePath(script)))

bfi <- read.csv("data/bfi25.csv")
reversed <- c("A1", "C4", "C5", "E1", "E2", "O2", "O5")
bfi[reversed] <- 7 - bfi[reversed]
sim <- read.csv("data/sim-4factor.csv")
retest <- read.csv("data/sim-retest.csv")

alpha_values <- function(x) {
  a <- psych::alpha(x, check.keys = FALSE, warnings = FALSE)
  list(
    items = colnames(x), n = nrow(x), k = ncol(x),
    raw_alpha = a$total$raw_alpha, std_alpha = a$total$std.alpha, g6 = a$total[["G6(smc)"]],
    average_r = a$total$average_r, median_r = a$total$median_r,
    feldt_lower = a$feldt$lower.ci[[1]], feldt_upper = a$feldt$upper.ci[[1]],
    r_drop = a$item.stats$r.drop, r_cor = a$item.stats$r.cor,
    alpha_if_dropped = a$alpha.drop$raw_alpha
  )
}

# Every split of the columns of r into halves of size k %/% 2 and k - k %/% 2, with psych's coefficient.
all_splits <- function(x) {
  r <- cor(x)
  k <- ncol(r)
  m <- k %/% 2
  subsets <- combn(k, m)
  if (k %% 2 == 0) subsets <- subsets[, subsets[1, ] == 1, drop = FALSE]  # A and its complement are one split
  total <- sum(r)
  rab <- apply(subsets, 2, function(a) {
    b <- setdiff(seq_len(k), a)
    4 * sum(r[a, b]) / total
  })
  list(n_splits = length(rab), max = max(rab), min = min(rab), mean = mean(rab), median = median(rab),
       q025 = unname(quantile(rab, 0.025)), q975 = unname(quantile(rab, 0.975)))
}

split_values <- function(x) {
  s <- psych::splitHalf(x, brute = TRUE, raw = TRUE, check.keys = FALSE)
  out <- list(
    items = colnames(x), k = ncol(x),
    psych = list(n_splits = length(s$raw), max = s$maxrb, min = s$minrb, mean = s$meanr,
                 median = unname(s$ci[2]), q025 = unname(s$ci[1]), q975 = unname(s$ci[3]),
                 alpha = s$alpha, lambda2 = s$lambda2, lambda6 = s$lambda6, av_r = s$av.r)
  )
  out$all <- all_splits(x)
  out
}

icc_values <- function(x) {
  one <- function(fit) {
    res <- fit$results
    list(type = res$type, icc = res$ICC, f = res$F, df1 = res$df1, df2 = res$df2, p = res$p,
         lower = res[["lower bound"]], upper = res[["upper bound"]])
  }
  list(n = nrow(x), k = ncol(x),
       anova = one(psych::ICC(x, lmer = FALSE)),
       lmer = one(suppressMessages(psych::ICC(x, lmer = TRUE))))
}

scales <- list(A = paste0("A", 1:5), C = paste0("C", 1:5), E = paste0("E", 1:5),
               N = paste0("N", 1:5), O = paste0("O", 1:5))
sim_scales <- list(F1 = paste0("x", 1:5), F2 = paste0("x", 6:10), F3 = paste0("x", 11:15),
                   F4 = paste0("x", 16:20))

alpha_sets <- c(
  lapply(scales, function(s) alpha_values(bfi[, s])),
  list(bfi_all25 = alpha_values(bfi)),
  setNames(lapply(sim_scales, function(s) alpha_values(sim[, s])), paste0("sim_", names(sim_scales))),
  # a small sample: 30 respondents, so the Feldt interval is wide and the df small
  list(bfi_A_first30 = alpha_values(bfi[1:30, scales$A]))
)

split_sets <- list(
  bfi_A = split_values(bfi[, scales$A]),                        # k = 5 (odd)
  bfi_AC = split_values(bfi[, c(scales$A, scales$C)]),          # k = 10
  bfi_ACE = split_values(bfi[, c(scales$A, scales$C, scales$E)]),  # k = 15 (odd)
  sim_16 = split_values(sim[, paste0("x", 1:16)]),             # k = 16, 6,435 splits
  sim_6 = split_values(sim[, paste0("x", c(1, 2, 3, 6, 7, 8))]),  # k = 6
  sim_20 = split_values(sim)                                    # k = 20, 92,378 splits (forced brute)
)

icc_sets <- list(
  retest = icc_values(retest),
  retest_first10_3 = icc_values(retest[1:10, 1:3])
)

golden <- list(
  meta = list(
    r_version = R.version.string,
    psych = as.character(packageVersion("psych")),
    generated_by = "tests/reference/reliability.R",
    bfi_reversed = reversed
  ),
  alpha = alpha_sets,
  split_half = split_sets,
  icc = icc_sets
)
dir.create("golden", showWarnings = FALSE)
write_json(golden, "golden/reliability.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
