# Reference values for psychometrics/validity/statistics.py (self-report vs behaviour), computed in R.
#
#   cd tests/reference && Rscript validity.R      # writes data/validity-*.csv and golden/validity.json
#
# The data set is simulated here (seeded): 5 models x 20 personas; two inventories (inv-a measures
# agreeableness, extraversion and, reversed, neuroticism; inv-b agreeableness and extraversion) answered
# in 4 design cells; 4 behavioural tasks x 10 variants x 2 samples, 5% of conversations unreadable.
# Irregularities the analysis must handle: respondents with self-report only (p21, p22) and behaviour
# only (m1 p23), which enter nothing; m1 p01 has two extra dictator-game variants (v11, v12) and m2 p05
# lacks setback-writing v10 (the split-half uses the variants every respondent has, the variant-centred
# scores and alpha every variant); m3 p07's setback-writing replies are all unreadable (pairwise deletion).
# Everything below is computed independently of the Python code, with R's own functions where one
# exists (cor, cor.test, lm, p.adjust, psych::alpha, lme4::lmer, boot::boot.ci).
suppressPackageStartupMessages({library(lme4); library(psych); library(jsonlite); library(boot)})

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
if (length(script) == 1) setwd(dirname(normalizePath(script)))

# --- data ----------------------------------------------------------------------------------------
set.seed(20240611)
models <- c("m1", "m2", "m3", "m4", "m5")
personas <- sprintf("p%02d", 1:20)
traits <- c("agreeableness", "extraversion", "neuroticism")
targets <- data.frame(persona = personas, trait = rep(rep(traits, each = 5), length.out = 20),
                      level = rep(c(-2, -1, 0, 1, 2), 4))
targets <- targets[targets$level != 0, ]
level_of <- function(p, t) {
  v <- targets$level[targets$persona == p & targets$trait == t]
  if (length(v)) v else 0
}
theta <- array(0, c(5, 20, 3), dimnames = list(models, personas, traits))
for (m in 1:5) for (p in 1:20) for (t in 1:3)
  theta[m, p, t] <- 0.6 * level_of(personas[p], traits[t]) + rnorm(1, 0, 0.6) + c(-0.4, 0, 0.5, 0.2, -0.3)[m] * (t == 1)

scales <- data.frame(inventory = c("inv-a", "inv-a", "inv-a", "inv-b", "inv-b"),
                     scale = c("agree", "extra", "stable", "A", "E"),
                     trait = c("agreeableness", "extraversion", "neuroticism", "agreeableness", "extraversion"),
                     trait_sign = c(1, 1, -1, 1, 1), n_items = c(4, 4, 4, 3, 3))
self_rows <- list(); item_rows <- list()
for (m in 1:5) for (p in 1:20) for (s in seq_len(nrow(scales))) {
  sc <- scales[s, ]
  shift <- seq(-0.5, 0.5, length.out = sc$n_items)
  values <- matrix(NA, 4, sc$n_items)
  for (cell in 1:4) {
    latent <- 3 + 0.7 * sc$trait_sign * theta[m, p, sc$trait] + 0.2 * m + shift
    values[cell, ] <- pmin(5, pmax(1, round(latent + rnorm(sc$n_items, 0, 0.9))))
    self_rows[[length(self_rows) + 1]] <- data.frame(
      model = models[m], persona = personas[p], inventory = sc$inventory, scale = sc$scale, trait = sc$trait,
      trait_sign = sc$trait_sign, score = mean(values[cell, ]), cell = paste0("c", cell))
  }
  item_rows[[length(item_rows) + 1]] <- data.frame(
    model = models[m], persona = personas[p], inventory = sc$inventory, scale = sc$scale, trait = sc$trait,
    item = paste0(sc$scale, seq_len(sc$n_items)), value = colMeans(values))
}
selfreport <- do.call(rbind, self_rows)
items <- do.call(rbind, item_rows)

tasks <- data.frame(task = c("dictator-game", "insult-reply", "social-choice", "setback-writing"),
                    trait = c("agreeableness", "agreeableness", "extraversion", "neuroticism"),
                    direction = c(1, -1, 1, 1), rho = c(0.7, 0.5, 0.15, 0.6))
variants <- sprintf("v%02d", 1:10)
beh_rows <- list()
for (m in 1:5) for (p in 1:20) for (k in 1:4) {
  tk <- tasks[k, ]
  tendency <- tk$direction * (tk$rho * theta[m, p, tk$trait] + sqrt(1 - tk$rho^2) * rnorm(1)) + c(0.8, -0.5, 0.1, 0.4, -0.6)[m]
  for (v in 1:10) for (sample in 0:1) {
    noise <- rnorm(1, 0, 0.8) + (v - 5.5) / 10
    score <- if (tk$task == "social-choice") as.numeric(tendency + noise > 0) else 0.5 + 0.2 * (tendency + noise)
    outcome <- if (runif(1) < 0.05) "unparseable" else "valid"
    beh_rows[[length(beh_rows) + 1]] <- data.frame(
      model = models[m], persona = personas[p], sample = sample, task = tk$task, variant = variants[v],
      trait = tk$trait, direction = tk$direction, outcome = outcome, score = if (outcome == "valid") score else NA)
  }
}
behavior <- do.call(rbind, beh_rows)
# respondents with one measure only: copies of m*/p01-p02 self-report (p21, p22), of m1 p02 behaviour (p23)
copy_as <- function(d, from, to) { d <- d[d$persona == from, ]; d$persona <- rep(to, nrow(d)); d }
selfreport <- rbind(selfreport, copy_as(selfreport, "p01", "p21"), copy_as(selfreport, "p02", "p22"))
items <- rbind(items, copy_as(items, "p01", "p21"), copy_as(items, "p02", "p22"))
behavior <- rbind(behavior, copy_as(behavior[behavior$model == "m1", ], "p02", "p23"))
# variant sets that differ: two extra variants for one respondent, one missing for another
extra <- behavior[behavior$model == "m1" & behavior$persona == "p01" & behavior$task == "dictator-game" &
                  behavior$variant %in% c("v01", "v02"), ]
extra$variant <- ifelse(extra$variant == "v01", "v11", "v12")
extra$score <- extra$score + 0.3
behavior <- rbind(behavior, extra)
behavior <- behavior[!(behavior$model == "m2" & behavior$persona == "p05" & behavior$task == "setback-writing" &
                       behavior$variant == "v10"), ]
unreadable <- behavior$model == "m3" & behavior$persona == "p07" & behavior$task == "setback-writing"
behavior$outcome[unreadable] <- "unparseable"
behavior$score[unreadable] <- NA
write.csv(selfreport, "data/validity-selfreport.csv", row.names = FALSE)
write.csv(items, "data/validity-items.csv", row.names = FALSE)
write.csv(behavior, "data/validity-behavior.csv", row.names = FALSE)
write.csv(targets, "data/validity-targets.csv", row.names = FALSE)

# --- respondent-level scores ----------------------------------------------------------------------
# Only respondents with both self-report and behaviour enter any statistic.
key <- function(d) paste(d$model, d$persona)
respondents <- unique(selfreport[, c("model", "persona")])
respondents$key <- key(respondents)
respondents <- respondents[respondents$key %in% key(behavior), ]
respondents <- respondents[order(respondents$model, respondents$persona), ]
selfreport <- selfreport[key(selfreport) %in% respondents$key, ]
items <- items[key(items) %in% respondents$key, ]
behavior <- behavior[key(behavior) %in% respondents$key, ]
centre <- function(x, g) x - ave(x, g, FUN = function(v) mean(v))

selfreport$signed <- selfreport$score * selfreport$trait_sign
by_inventory <- aggregate(signed ~ model + persona + inventory + trait, selfreport, mean)
by_inventory$key <- key(by_inventory)
component <- function(inv, t) {
  part <- by_inventory[by_inventory$inventory == inv & by_inventory$trait == t, ]
  part$signed[match(respondents$key, part$key)]
}
inventories_of <- function(t) unique(scales$inventory[scales$trait == t])
self_score <- sapply(traits, function(t) {
  invs <- inventories_of(t)
  if (length(invs) == 1) return(component(invs, t))
  rowMeans(sapply(invs, function(inv) as.vector(scale(component(inv, t)))))
})

# The variants every respondent of a task has; per respondent, how many it has.
variant_sets <- lapply(setNames(tasks$task, tasks$task), function(k) {
  part <- behavior[behavior$task == k, ]
  lapply(split(part$variant, key(part)), unique)
})
common <- lapply(variant_sets, function(sets) sort(Reduce(intersect, sets)))
variant_counts <- lapply(variant_sets, function(sets) sapply(sets, length))
used <- behavior[mapply(function(k, v) v %in% common[[k]], behavior$task, behavior$variant), ]
variant_means <- aggregate(score ~ model + persona + task + variant, used, mean)  # NA scores dropped (split-half)
# Variant-centred scores over every variant: per model and task, the respondent coefficients of
# lm(cell mean ~ 0 + respondent + variant) with sum contrasts on the variants (behavior_scores.py).
all_means <- aggregate(score ~ model + persona + task + variant, behavior, mean)
all_means$key <- key(all_means)
beh_score <- sapply(tasks$task, function(k) {
  out <- rep(NA_real_, nrow(respondents))
  for (m in models) {
    d <- all_means[all_means$task == k & all_means$model == m, ]
    d$respondent <- factor(d$key); d$variant <- factor(d$variant)
    fit <- lm(score ~ 0 + respondent + variant, d, contrasts = list(variant = "contr.sum"))
    a <- coef(fit)[paste0("respondent", levels(d$respondent))]
    at <- match(levels(d$respondent), respondents$key)
    out[at] <- a
  }
  out
})

scopes <- c(models, "pooled")
in_scope <- function(scope) if (scope == "pooled") rep(TRUE, nrow(respondents)) else respondents$model == scope

# --- reliability ---------------------------------------------------------------------------------
alpha_of <- function(inv, sc, scope) {
  part <- items[items$inventory == inv & items$scale == sc, ]
  part$key <- key(part)
  wide <- reshape(part[, c("key", "model", "item", "value")], idvar = c("key", "model"), timevar = "item",
                  direction = "wide")
  if (scope == "pooled") {
    for (j in 3:ncol(wide)) wide[[j]] <- centre(wide[[j]], wide$model)
  } else {
    wide <- wide[wide$model == scope, ]
  }
  suppressWarnings(suppressMessages(psych::alpha(wide[, -(1:2)], check.keys = FALSE)$total$raw_alpha))
}
self_reliability <- list()
for (scope in scopes) for (t in traits) {
  rows <- in_scope(scope)
  invs <- inventories_of(t)
  rels <- sapply(invs, function(inv) alpha_of(inv, scales$scale[scales$inventory == inv & scales$trait == t], scope))
  if (length(invs) == 1) {
    rel <- rels[[1]]
  } else {
    comps <- sapply(invs, function(inv) as.vector(scale(component(inv, t))))[rows, ]
    comp <- rowMeans(comps)
    g <- respondents$model[rows]
    if (scope == "pooled") { comps <- apply(comps, 2, centre, g = g); comp <- centre(comp, g) }
    k <- length(invs)
    rel <- 1 - sum(apply(comps, 2, var) * (1 - rels)) / (k^2 * var(comp))
  }
  self_reliability[[length(self_reliability) + 1]] <- list(scope = scope, trait = t, reliability = rel,
                                                           components = as.list(rels))
}
rel_self <- function(scope, t) {
  for (r in self_reliability) if (r$scope == scope && r$trait == t) return(r$reliability)
}

half_means <- function(k, positions) {
  part <- variant_means[variant_means$task == k & variant_means$variant %in% common[[k]][positions], ]
  agg <- aggregate(score ~ model + persona, part, mean)
  agg$score[match(respondents$key, key(agg))]
}
behavior_reliability <- list()
for (scope in scopes) for (k in tasks$task) {
  nv <- length(common[[k]])
  a <- half_means(k, seq(1, nv, 2)); b <- half_means(k, seq(2, nv, 2))
  ok <- in_scope(scope) & !is.na(a) & !is.na(b)
  a <- a[ok]; b <- b[ok]
  if (scope == "pooled") { a <- centre(a, respondents$model[ok]); b <- centre(b, respondents$model[ok]) }
  r <- cor(a, b)
  conv <- used[used$task == k & (scope == "pooled" | used$model == scope), ]
  counts <- variant_counts[[k]]
  counts <- counts[scope == "pooled" | startsWith(names(counts), paste0(scope, " "))]
  behavior_reliability[[length(behavior_reliability) + 1]] <- list(
    scope = scope, task = k, n = sum(ok), n_variants = nv, n_variants_min = min(counts),
    n_variants_max = max(counts), r_half = r, spearman_brown = 2 * r / (1 + r),
    missing_rate = mean(is.na(conv$score)))
  # Cronbach's alpha across every variant with 3+ respondents (pairwise covariances) and Feldt's CI.
  d <- all_means[all_means$task == k & (scope == "pooled" | all_means$model == scope), ]
  wide <- reshape(d[, c("key", "model", "variant", "score")], idvar = c("key", "model"), timevar = "variant",
                  direction = "wide")
  x <- as.matrix(wide[, -(1:2)])
  if (scope == "pooled") x <- apply(x, 2, function(v) {
    v[ave(!is.na(v), wide$model, FUN = sum) < 2] <- NA  # alone in its model: would centre to 0
    v - ave(v, wide$model, FUN = function(u) mean(u, na.rm = TRUE))
  })
  x <- x[, colSums(!is.na(x)) >= 3 & apply(x, 2, var, na.rm = TRUE) > 0]
  x <- x[rowSums(!is.na(x)) > 0, ]
  fit <- suppressWarnings(suppressMessages(psych::alpha(x, check.keys = FALSE, use = "pairwise")))
  behavior_reliability[[length(behavior_reliability)]][c("reliability", "reliability_low", "reliability_high",
                                                          "n_alpha", "k_alpha")] <-
    list(fit$total$raw_alpha, as.numeric(fit$feldt$lower.ci), as.numeric(fit$feldt$upper.ci), nrow(x), ncol(x))
}
rel_beh <- function(scope, k) {
  for (r in behavior_reliability) if (r$scope == scope && r$task == k) return(r$reliability)
}

# --- missingness per respondent -------------------------------------------------------------------
# Share of a respondent's conversations without a valid score; Pearson's chi-square of equal shares
# (summed over models when pooled); its correlation with the self-report of the task's trait and with
# the score (cor.test; pooled: the lm slope test given the model).
counted <- data.frame(model = behavior$model, persona = behavior$persona, task = behavior$task,
                      missing = as.numeric(is.na(behavior$score)), total = 1)
missing_counts <- aggregate(cbind(missing, total) ~ model + persona + task, counted, sum)
missing_counts$key <- key(missing_counts)
missing_counts$share <- missing_counts$missing / missing_counts$total
tested <- function(x, y, g, pooled) {
  ok <- !is.na(x) & !is.na(y)
  if (pooled) {
    fit <- summary(lm(y[ok] ~ x[ok] + factor(g[ok])))$coefficients
    list(r = cor(centre(x[ok], g[ok]), centre(y[ok], g[ok])), p = fit[2, 4])
  } else {
    test <- cor.test(x[ok], y[ok]); list(r = unname(test$estimate), p = test$p.value)
  }
}
missingness <- list()
for (scope in scopes) for (k in seq_len(nrow(tasks))) {
  d <- missing_counts[missing_counts$task == tasks$task[k] & (scope == "pooled" | missing_counts$model == scope), ]
  chi2 <- 0; df <- 0
  for (m in unique(d$model)) {
    part <- d[d$model == m, ]
    table <- cbind(part$missing, part$total - part$missing)
    if (all(colSums(table) > 0)) {
      test <- suppressWarnings(chisq.test(table, correct = FALSE))
      chi2 <- chi2 + unname(test$statistic); df <- df + unname(test$parameter)
    }
  }
  at <- match(d$key, respondents$key)
  s <- tested(d$share, self_score[at, tasks$trait[k]], d$model, scope == "pooled")
  b <- tested(d$share, beh_score[at, tasks$task[k]], d$model, scope == "pooled")
  missingness[[length(missingness) + 1]] <- list(
    scope = scope, task = tasks$task[k], n = nrow(d), missing_rate = sum(d$missing) / sum(d$total),
    missing_min = min(d$share), missing_max = max(d$share), chi2 = if (df > 0) chi2 else NA,
    chi2_df = if (df > 0) df else NA, chi2_p = if (df > 0) pchisq(chi2, df, lower.tail = FALSE) else NA,
    r_self = s$r, p_self = s$p, r_score = b$r, p_score = b$p)
}

# --- validity pairs ------------------------------------------------------------------------------
# Power of the two-sided test of r = 0 (alpha .05) when rho = .3, with n' = df + 2: the formula of
# pwr::pwr.r.test (Cohen, 1988), written out (pwr is not a dependency); checked by simulation below.
power_r <- function(df, rho = 0.3, alpha = 0.05) {
  n <- df + 2
  ttt <- qt(alpha / 2, df = n - 2, lower.tail = FALSE)
  rc <- sqrt(ttt^2 / (ttt^2 + n - 2))
  zr <- atanh(rho) + rho / (2 * (n - 1))
  zrc <- atanh(rc)
  pnorm((zr - zrc) * sqrt(n - 3)) + pnorm((-zr - zrc) * sqrt(n - 3))
}
pair_rows <- list()
for (scope in scopes) {
  block <- list()
  for (t in traits) for (k in seq_len(nrow(tasks))) {
    s <- self_score[, t]; b <- beh_score[, tasks$task[k]]
    ok <- in_scope(scope) & !is.na(s) & !is.na(b)
    s <- s[ok]; b <- b[ok]; g <- respondents$model[ok]
    if (scope == "pooled") {
      r <- cor(centre(s, g), centre(b, g))
      fit <- summary(lm(b ~ s + factor(g)))
      p <- fit$coefficients["s", 4]
      df <- fit$df[2]
      ci <- psych::r.con(r, df + 2)  # Fisher z with 1 / sqrt(n - k - 2): a partial r given k - 1 indicators
    } else {
      r <- cor(s, b)
      test <- cor.test(s, b)
      p <- test$p.value
      df <- unname(test$parameter)
      ci <- as.vector(test$conf.int)
    }
    declared <- tasks$trait[k] == t
    rs <- rel_self(scope, t); rb <- rel_beh(scope, tasks$task[k])
    block[[length(block) + 1]] <- list(scope = scope, trait = t, task = tasks$task[k], declared = declared,
                                       expected_sign = if (declared) tasks$direction[k] else NA,
                                       n = sum(ok), r = r, p = p, df = df, ci_low = ci[1], ci_high = ci[2],
                                       power_r30 = power_r(df),
                                       rel_self = rs, rel_behavior = rb,
                                       # no correction below the reliability floor (.5); the corrected
                                       # interval is Fisher's divided by the same factor (Hunter & Schmidt)
                                       r_corrected = if (rs >= 0.5 && rb >= 0.5) r / sqrt(rs * rb) else NA,
                                       r_corrected_low = if (rs >= 0.5 && rb >= 0.5) ci[1] / sqrt(rs * rb) else NA,
                                       r_corrected_high = if (rs >= 0.5 && rb >= 0.5) ci[2] / sqrt(rs * rb) else NA)
  }
  ps <- sapply(block, `[[`, "p")
  declared <- sapply(block, `[[`, "declared")
  p_all <- p.adjust(ps, method = "BH")
  p_declared <- rep(NA, length(ps)); p_declared[declared] <- p.adjust(ps[declared], method = "BH")
  for (i in seq_along(block)) {
    row <- block[[i]]
    row$p_bh_all <- p_all[i]
    row$p_bh_declared <- p_declared[i]
    row$confirmed <- row$declared && sign(row$r) == row$expected_sign && p_declared[i] < 0.05
    pair_rows[[length(pair_rows) + 1]] <- row
  }
}
dissociation <- list()
for (scope in scopes) {
  rows <- Filter(function(r) r$scope == scope && r$declared, pair_rows)
  for (t in c("all", traits)) {
    sel <- if (t == "all") rows else Filter(function(r) r$trait == t, rows)
    confirmed <- sum(sapply(sel, `[[`, "confirmed"))
    signed <- sapply(sel, function(r) r$r * r$expected_sign)
    dissociation[[length(dissociation) + 1]] <- list(scope = scope, trait = t, declared = length(sel),
                                                     confirmed = confirmed,
                                                     share_confirmed = confirmed / length(sel),
                                                     share_expected_sign = mean(signed > 0),
                                                     mean_signed_r = mean(signed),
                                                     mean_power_r30 = mean(sapply(sel, `[[`, "power_r30")))
  }
}

# --- mixed model: within- and between-model association (declared pairs) -------------------------
mixed <- list()
for (k in seq_len(nrow(tasks))) {
  t <- tasks$trait[k]
  s <- self_score[, t]; b <- beh_score[, tasks$task[k]]
  ok <- !is.na(s) & !is.na(b)
  d <- data.frame(zs = as.vector(scale(s[ok])), zb = as.vector(scale(b[ok])), model = respondents$model[ok])
  d$between <- ave(d$zs, d$model)
  d$within <- d$zs - d$between
  fit <- lmer(zb ~ within + between + (1 | model), data = d, REML = TRUE,
              control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e6),
                                    check.conv.singular = "ignore"))
  co <- summary(fit)$coefficients
  vc <- as.data.frame(VarCorr(fit))
  mixed[[length(mixed) + 1]] <- list(
    trait = t, task = tasks$task[k], n = nrow(d),
    within = co["within", "Estimate"], within_se = co["within", "Std. Error"],
    between = co["between", "Estimate"], between_se = co["between", "Std. Error"],
    intercept = co["(Intercept)", "Estimate"],
    model_variance = vc$vcov[vc$grp == "model"], residual_variance = vc$vcov[vc$grp == "Residual"],
    reml = as.numeric(REMLcrit(fit)))
}

# The same model at the boundary: behaviour centred within model, so the model variance is 0.
d <- data.frame(s = self_score[, "agreeableness"], b = beh_score[, "dictator-game"], model = respondents$model)
d <- d[!is.na(d$s) & !is.na(d$b), ]
d$zs <- as.vector(scale(d$s)); d$zb <- as.vector(scale(centre(d$b, d$model)))
d$between <- ave(d$zs, d$model); d$within <- d$zs - d$between
fit <- lmer(zb ~ within + between + (1 | model), data = d, REML = TRUE,
            control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhobeg = 0.2, rhoend = 1e-12, maxfun = 1e6),
                                  check.conv.singular = "ignore"))
co <- summary(fit)$coefficients
vc <- as.data.frame(VarCorr(fit))
mixed_boundary <- list(trait = "agreeableness", task = "dictator-game", within = co["within", "Estimate"],
                       within_se = co["within", "Std. Error"], between = co["between", "Estimate"],
                       between_se = co["between", "Std. Error"], model_variance = vc$vcov[vc$grp == "model"],
                       residual_variance = vc$vcov[vc$grp == "Residual"], reml = as.numeric(REMLcrit(fit)),
                       singular = isSingular(fit))

# --- manipulation check --------------------------------------------------------------------------
# Over the trait's own personas and the untargeted (baseline) ones; personas targeting other traits out.
levels <- sapply(traits, function(t) sapply(respondents$persona, level_of, t = t))
members_of <- function(t) respondents$persona %in% targets$persona[targets$trait == t] |
  !(respondents$persona %in% targets$persona)
manipulation <- list(); manipulation_levels <- list()
check <- function(scope, t, measure, kind, y) {
  x <- levels[, t]
  ok <- in_scope(scope) & members_of(t) & !is.na(y)
  x <- x[ok]; y <- y[ok]; g <- respondents$model[ok]
  if (scope == "pooled") {
    fit <- summary(lm(y ~ x + factor(g)))$coefficients
    r <- cor(centre(x, g), centre(y, g))
  } else {
    fit <- summary(lm(y ~ x))$coefficients
    r <- cor(x, y)
  }
  for (level in sort(unique(x)))
    manipulation_levels[[length(manipulation_levels) + 1]] <<- list(
      scope = scope, trait = t, measure = measure, kind = kind, level = level, n = sum(x == level),
      mean = mean(y[x == level]), sd = sd(y[x == level]))
  list(scope = scope, trait = t, measure = measure, kind = kind, n = sum(ok), n_levels = length(unique(x)), r = r,
       slope = fit["x", "Estimate"], p = fit["x", 4])
}
for (scope in scopes) for (t in traits) {
  manipulation[[length(manipulation) + 1]] <- check(scope, t, "self-report", "self-report", self_score[, t])
  for (k in which(tasks$trait == t))
    manipulation[[length(manipulation) + 1]] <- check(scope, t, tasks$task[k], "behavior",
                                                      tasks$direction[k] * beh_score[, tasks$task[k]])
}

# --- MTMM with behaviour as a method -------------------------------------------------------------
zwithin <- function(x, g) ave(x, g, FUN = function(v) (v - mean(v, na.rm = TRUE)) / sd(v, na.rm = TRUE))
behavior_trait <- sapply(traits, function(t) {
  ks <- which(tasks$trait == t)
  signed <- sapply(ks, function(k) tasks$direction[k] * zwithin(beh_score[, tasks$task[k]], respondents$model))
  rowMeans(as.matrix(signed), na.rm = TRUE)
})
columns <- list(); names_ <- c()
for (inv in unique(scales$inventory)) for (t in traits) if (t %in% scales$trait[scales$inventory == inv]) {
  columns[[length(columns) + 1]] <- component(inv, t)
  names_ <- c(names_, paste(inv, t, sep = "|"))
}
for (t in traits) {
  columns[[length(columns) + 1]] <- behavior_trait[, t]
  names_ <- c(names_, paste("behavior", t, sep = "|"))
}
wide <- do.call(cbind, columns)
colnames(wide) <- names_
# Each pair: its complete respondents, centred within model after the deletion; one-sided p of r > 0
# from lm(b ~ a + model), whose residual df is n - k - 1.
mtmm_pairs <- list()
for (i in seq_along(names_)) for (j in seq_along(names_)) if (i < j) {
  a <- wide[, i]; b <- wide[, j]
  ok <- !is.na(a) & !is.na(b)
  g <- factor(respondents$model[ok])
  r <- cor(centre(a[ok], g), centre(b[ok], g))
  fit <- summary(lm(b[ok] ~ a[ok] + g))
  mtmm_pairs[[length(mtmm_pairs) + 1]] <- list(
    a = names_[i], b = names_[j], n = sum(ok), r = r, df = fit$df[2],
    p = pt(fit$coefficients[2, "t value"], fit$df[2], lower.tail = FALSE))
}

# --- BCa bootstrap interval (boot::boot.ci) on given resamples -------------------------------------
# The indices boot drew are exported so the Python BCa can be checked on exactly the same resamples;
# acceleration from jackknife influence values (empinf(type = "jack")).
bca_case <- function(name, rows, s, b, strata, R = 999) {
  d <- data.frame(s = s[rows], b = b[rows], g = as.integer(factor(strata[rows])))
  d <- d[!is.na(d$s) & !is.na(d$b), ]
  stat <- function(data, i) {
    x <- data[i, ]
    cor(centre(x$s, x$g), centre(x$b, x$g))
  }
  set.seed(42)
  fit <- boot(d, stat, R = R, strata = d$g)
  ci <- boot.ci(fit, conf = 0.95, type = "bca", L = empinf(fit, type = "jack"))
  indices <- boot.array(fit, indices = TRUE) - 1L  # 0-based rows of d, one resample per row
  list(name = name, x = d$s, y = d$b, groups = d$g, r = fit$t0, low = ci$bca[4], high = ci$bca[5],
       resamples = apply(indices, 1, paste, collapse = " "))
}
bca <- list(
  bca_case("m1 agreeableness dictator-game", respondents$model == "m1", self_score[, "agreeableness"],
           beh_score[, "dictator-game"], respondents$model),
  bca_case("m1+m2 agreeableness insult-reply (strata)", respondents$model %in% c("m1", "m2"),
           self_score[, "agreeableness"], beh_score[, "insult-reply"], respondents$model),
  bca_case("m3 extraversion social-choice", respondents$model == "m3", self_score[, "extraversion"],
           beh_score[, "social-choice"], respondents$model)
)

write.csv(do.call(rbind, lapply(bca, function(case) data.frame(case = case$name, resample = case$resamples))),
          "data/validity-bca-resamples.csv", row.names = FALSE)
bca <- lapply(bca, function(case) case[names(case) != "resamples"])

# --- the power formula against simulation ---------------------------------------------------------
set.seed(7)
power_check <- lapply(c(10, 17, 40), function(n) {
  hits <- replicate(20000, {
    x <- rnorm(n); y <- 0.3 * x + sqrt(1 - 0.09) * rnorm(n)
    r <- cor(x, y)
    abs(r * sqrt((n - 2) / (1 - r^2))) > qt(0.975, n - 2)
  })
  list(n = n, df = n - 2, formula = power_r(n - 2), simulated = mean(hits))
})

golden <- list(
  meta = list(r_version = R.version.string, lme4 = as.character(packageVersion("lme4")),
              psych = as.character(packageVersion("psych")), boot = as.character(packageVersion("boot")),
              generated_by = "tests/reference/validity.R"),
  self_reliability = self_reliability,
  behavior_reliability = behavior_reliability,
  missingness = missingness,
  scores = lapply(tasks$task, function(k) list(task = k, key = respondents$key, score = beh_score[, k])),
  pairs = pair_rows,
  dissociation = dissociation,
  mixed = mixed,
  mixed_boundary = mixed_boundary,
  manipulation = manipulation,
  manipulation_levels = manipulation_levels,
  mtmm = list(columns = names_, pairs = mtmm_pairs),
  bca = bca,
  power = power_check,
  variants = lapply(tasks$task, function(k) list(task = k, common = common[[k]],
                                                  min = min(variant_counts[[k]]), max = max(variant_counts[[k]]))),
  respondents = nrow(respondents)
)
write_json(golden, "golden/validity.json", auto_unbox = TRUE, digits = NA, na = "null", pretty = TRUE)
