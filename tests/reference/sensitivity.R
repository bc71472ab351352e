# Reference values for psychometrics/statistics/design_effects.py and response_styles.py, computed in R from the same data.
#
#   cd tests/reference && Rscript sensitivity.R      # writes golden/sensitivity.json
#
# Input (written once by `python tests/test_sensitivity.py`, a simulated respondent run through psytest):
#   data/sensitivity-scores.csv     scale scores per design cell (psychometrics.statistics.scoring.scale_scores)
#   data/sensitivity-responses.csv  one row per item answer, with the item's scale and reverse keying
#
# Everything is computed here independently of the Python code: R's own functions where one exists
# (aov, lmer, t.test, effectsize::cohens_d, p.adjust, chisq.test), otherwise directly from the answers.
suppressPackageStartupMessages({library(lme4); library(jsonlite); library(effectsize)})

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
if (length(script) == 1) setwd(dirname(normalizePath(script)))

scores <- read.csv("data/sensitivity-scores.csv", stringsAsFactors = FALSE)
responses <- read.csv("data/sensitivity-responses.csv", stringsAsFactors = FALSE)
scores <- scores[scores$kind == "scale", ]
scale_ids <- unique(scores$scale)
conditions <- c("option_order", "template", "persona", "wording", "item_order", "sample")
golden <- list(
  meta = list(
    r_version = R.version.string,
    lme4 = as.character(packageVersion("lme4")),
    effectsize = as.character(packageVersion("effectsize")),
    generated_by = "tests/reference/sensitivity.R"
  )
)

# --- 1. sequential ANOVA (aov) -------------------------------------------------------------------
# Balanced: the whole design. Unbalanced: a deterministic subset removed (the same rule is applied in
# the Python test), so that Type I sums of squares depend on the order of the terms.
unbalanced_drop <- function(d) (d$sample == 1 & d$template == "worded") |
  (d$persona == "bio02" & d$wording == "original" & d$option_order == "reversed")

aov_table <- function(d, factors) {
  rows <- list()
  for (s in scale_ids) {
    ds <- d[d$scale == s, ]
    for (f in factors) ds[[f]] <- factor(ds[[f]])
    fit <- aov(reformulate(factors, "score"), data = ds)
    tab <- summary(fit)[[1]]
    sources <- trimws(rownames(tab))
    for (i in seq_along(sources)) {
      rows[[length(rows) + 1]] <- list(
        scale = s, source = ifelse(sources[i] == "Residuals", "residual", sources[i]),
        df = tab[i, "Df"], sum_sq = tab[i, "Sum Sq"], mean_sq = tab[i, "Mean Sq"],
        F = tab[i, "F value"], p = tab[i, "Pr(>F)"]
      )
    }
  }
  rows
}
default_factors <- c("option_order", "template", "persona", "wording")
golden$aov <- list(
  balanced = list(factors = default_factors, rows = aov_table(scores, default_factors)),
  unbalanced = list(factors = default_factors, rows = aov_table(scores[!unbalanced_drop(scores), ], default_factors)),
  unbalanced_reordered = list(factors = rev(default_factors),
                              rows = aov_table(scores[!unbalanced_drop(scores), ], rev(default_factors)))
)

# --- 2. REML variance components (lmer, crossed random intercepts) ---------------------------------
lmer_components <- function(factors) {
  rows <- list()
  for (s in scale_ids) {
    ds <- scores[scores$scale == s, ]
    formula <- as.formula(paste("score ~ 1 +", paste0("(1 | ", factors, ")", collapse = " + ")))
    fit <- lmer(formula, data = ds, REML = TRUE,
                control = lmerControl(optimizer = "bobyqa",
                                      optCtrl = list(rhoend = 1e-12, maxfun = 1e6),
                                      check.conv.singular = "ignore"))
    vc <- as.data.frame(VarCorr(fit))
    components <- setNames(as.list(vc$vcov), ifelse(vc$grp == "Residual", "residual", vc$grp))
    rows[[length(rows) + 1]] <- list(scale = s, boundary = isSingular(fit, tol = 1e-6),
                                     components = components)
  }
  list(factors = factors, rows = rows)
}
golden$lmer <- list(lmer_components(default_factors), lmer_components(c("option_order", "persona")))

# --- 3. paired t-tests, d_z, Holm; repeated-measures ANOVA ------------------------------------------
cell_key <- function(d, exclude) do.call(paste, c(d[setdiff(conditions, exclude)], sep = "|"))
comparisons <- list(
  option_order = list(reference = "original", levels = "reversed"),
  template = list(reference = "numbered", levels = c("lettered", "worded")),
  persona = list(reference = "bio01", levels = "bio02"),
  wording = list(reference = "original", levels = c("paraphrase1", "paraphrase2"))
)
# effectsize finds the noncentrality parameters with optim (abstol 1e-9 on the probabilities, so about
# 1e-5 on d_z); the exact roots of pt(t, df, ncp) = 0.975 and 0.025 are computed here with uniroot too.
exact_ncp <- function(t, df, conf = 0.95) {
  root <- function(p) uniroot(function(ncp) suppressWarnings(pt(t, df, ncp)) - p, t + c(-1, 1) * (10 + abs(t)),
                              tol = 1e-13, maxiter = 1000)$root
  c(root(1 - (1 - conf) / 2), root((1 - conf) / 2))
}
paired <- list()
rm_anova <- list()
for (f in names(comparisons)) {
  ref <- comparisons[[f]]$reference
  for (s in scale_ids) {
    ds <- scores[scores$scale == s, ]
    ds$key <- cell_key(ds, f)
    x_ref <- setNames(ds$score[ds[[f]] == ref], ds$key[ds[[f]] == ref])
    rows <- list()
    for (lv in comparisons[[f]]$levels) {
      x_lv <- setNames(ds$score[ds[[f]] == lv], ds$key[ds[[f]] == lv])
      keys <- intersect(names(x_ref), names(x_lv))
      keys <- keys[!is.na(x_ref[keys]) & !is.na(x_lv[keys])]
      tt <- t.test(x_lv[keys], x_ref[keys], paired = TRUE)
      dz <- cohens_d(x_lv[keys], x_ref[keys], paired = TRUE, ci = 0.95)
      ncp <- exact_ncp(unname(tt$statistic), unname(tt$parameter))
      rows[[length(rows) + 1]] <- list(
        factor = f, scale = s, reference = ref, level = lv, n = length(keys),
        mean_diff = unname(tt$estimate), ci_low = tt$conf.int[1], ci_high = tt$conf.int[2],
        t = unname(tt$statistic), df = unname(tt$parameter), p = tt$p.value,
        d_z = dz$Cohens_d, d_z_ci_low = dz$CI_low, d_z_ci_high = dz$CI_high,
        d_z_ci_low_exact = ncp[1] / sqrt(length(keys)), d_z_ci_high_exact = ncp[2] / sqrt(length(keys))
      )
    }
    holm <- p.adjust(sapply(rows, `[[`, "p"), method = "holm")
    for (i in seq_along(rows)) rows[[i]]$p_holm <- holm[i]
    paired <- c(paired, rows)

    levels_all <- c(ref, comparisons[[f]]$levels)
    if (length(levels_all) > 2) {
      ds$block <- factor(ds$key)
      ds$level <- factor(ds[[f]], levels = levels_all)
      fit <- aov(score ~ level + Error(block / level), data = ds)
      within <- summary(fit)[["Error: block:level"]][[1]]
      ss_level <- within["level", "Sum Sq"]
      ss_error <- within["Residuals", "Sum Sq"]
      wide <- sapply(levels_all, function(lv) setNames(ds$score[ds$level == lv], ds$key[ds$level == lv])[levels(ds$block)])
      wide <- wide[complete.cases(wide), , drop = FALSE]
      k <- length(levels_all)
      contrasts <- contr.poly(k)  # orthonormal contrasts
      v <- t(contrasts) %*% cov(wide) %*% contrasts
      epsilon <- sum(diag(v))^2 / ((k - 1) * sum(v * v))
      f_value <- within["level", "F value"]
      df1 <- within["level", "Df"]
      df2 <- within["Residuals", "Df"]
      rm_anova[[length(rm_anova) + 1]] <- list(
        factor = f, scale = s, blocks = nrow(wide), F = f_value, df1 = df1, df2 = df2,
        p = within["level", "Pr(>F)"], partial_eta_sq = ss_level / (ss_level + ss_error),
        gg_epsilon = epsilon, p_gg = pf(f_value, epsilon * df1, epsilon * df2, lower.tail = FALSE)
      )
    }
  }
}
golden$paired_t <- paired
golden$rm_anova <- rm_anova

# --- 4. position bias: chisq.test against uniform -------------------------------------------------
valid <- responses[responses$outcome == "valid", ]
k <- 5
position_test <- function(d, scheme) {
  counts <- tabulate(d$position + 1, nbins = k)
  test <- chisq.test(counts)
  list(scheme = scheme, counts = counts, n = sum(counts), chi_square = unname(test$statistic),
       df = unname(test$parameter), p = test$p.value, residuals = as.numeric(test$residuals),
       first_rate = counts[1] / sum(counts), last_rate = counts[k] / sum(counts))
}
golden$chisq <- list(
  position_test(valid[valid$option_order == "original", ], "original"),
  position_test(valid[valid$option_order == "reversed", ], "reversed"),
  position_test(valid, "all")
)

# --- 5. option-order flips --------------------------------------------------------------------------
pair_changes <- function(values, threshold) {
  if (length(values) < 2) return(c(pairs = 0, changed = 0, absdiff = 0))
  p <- combn(values, 2)
  d <- abs(p[1, ] - p[2, ])
  c(pairs = ncol(p), changed = sum(d > threshold), absdiff = sum(d))
}
unit_of <- function(d, exclude) do.call(paste, c(d[c("item_id", setdiff(conditions, exclude))], sep = "|"))
units_all <- unique(unit_of(responses, "option_order"))
by_unit <- split(valid$value, unit_of(valid, "option_order"))
by_unit <- by_unit[sapply(by_unit, length) >= 2]
spread <- sapply(by_unit, function(v) max(v) - min(v))
order_pairs <- rowSums(sapply(by_unit, pair_changes, threshold = 0))
by_sample <- split(valid$value, unit_of(valid, "sample"))
sample_pairs <- rowSums(sapply(by_sample, pair_changes, threshold = 0))
golden$flips <- list(
  units = length(by_unit), units_incomplete = length(units_all) - length(by_unit),
  flips = sum(spread > 0), flip_rate = mean(spread > 0),
  large_flips = sum(spread > 1), large_flip_rate = mean(spread > 1),
  pairs = unname(order_pairs["pairs"]), pair_flip_rate = unname(order_pairs["changed"] / order_pairs["pairs"]),
  mean_abs_diff = unname(order_pairs["absdiff"] / order_pairs["pairs"]),
  resample_pairs = unname(sample_pairs["pairs"]),
  resample_flip_rate = unname(sample_pairs["changed"] / sample_pairs["pairs"])
)

# --- 6. acquiescence ----------------------------------------------------------------------------------
midpoint <- 3
reverse <- valid$reverse_keyed %in% c(TRUE, "True")
both_directions <- names(which(tapply(reverse, valid$scale, function(r) any(r) && any(!r))))
acq <- function(d) {
  rev <- d$reverse_keyed %in% c(TRUE, "True")
  cell <- do.call(paste, c(d[conditions], sep = "|"))
  direction_means <- tapply(d$value, list(paste(cell, d$scale, sep = "#"), rev), mean)
  direction_means <- direction_means[complete.cases(direction_means), , drop = FALSE]
  per_scale <- (direction_means[, "FALSE"] + direction_means[, "TRUE"]) / 2 - midpoint
  per_cell <- tapply(per_scale, sub("#.*$", "", names(per_scale)), mean)
  tt <- t.test(per_cell)
  pos <- data.frame(cell = cell[!rev], scale = d$scale[!rev], v_pos = d$value[!rev])
  neg <- data.frame(cell = cell[rev], scale = d$scale[rev], v_rev = d$value[rev])
  pairs <- merge(pos, neg, by = c("cell", "scale"))
  list(n_answers = nrow(d), n_cells = length(unique(cell)),
       mean_raw_minus_midpoint = mean(d$value) - midpoint,
       balanced_acquiescence = mean(per_cell), ci_low = tt$conf.int[1], ci_high = tt$conf.int[2],
       t = unname(tt$statistic), df = unname(tt$parameter), p = tt$p.value,
       n_pairs = nrow(pairs), agree_both_rate = mean(pairs$v_pos > midpoint & pairs$v_rev > midpoint),
       disagree_both_rate = mean(pairs$v_pos < midpoint & pairs$v_rev < midpoint))
}
in_scope <- valid[valid$scale %in% both_directions, ]
golden$acquiescence <- c(list(c(scale = "all", acq(in_scope))),
                         lapply(both_directions, function(s) c(scale = s, acq(in_scope[in_scope$scale == s, ]))))

# --- 7. response-style rates (overall and per template) -------------------------------------------
style <- function(d, factor, level) {
  v <- d$value[d$outcome == "valid"]
  list(factor = factor, level = level, n = nrow(d), n_valid = length(v),
       midpoint_rate = mean(v == midpoint), extreme_rate = mean(v == 1 | v == 5),
       refusal_rate = mean(d$outcome == "refusal"), invalid_rate = mean(d$outcome != "valid"))
}
golden$rates <- c(list(style(responses, "all", "all")),
                  lapply(c("numbered", "lettered", "worded"),
                         function(t) style(responses[responses$template == t, ], "template", t)),
                  lapply(c("bio01", "bio02"),
                         function(p) style(responses[responses$persona == p, ], "persona", p)))

dir.create("golden", showWarnings = FALSE)
write_json(golden, "golden/sensitivity.json", auto_unbox = TRUE, digits = NA, na = "null", pretty = TRUE)
cat("wrote golden/sensitivity.json\n")
