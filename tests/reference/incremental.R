# Reference values for psychometrics/validity/incremental.py (incremental validity beyond the persona's
# target levels, TOST equivalence, the persona-effect ratio), computed in R.
#
#   cd tests/reference && Rscript incremental.R     # writes data/incremental-*.csv and golden/incremental.json
#
# Two data sets:
# * "single": the validity.R data (data/validity-*.csv; run validity.R first): 5 models x 20 personas, each
#   persona targeting one of three traits (or none), two inventories, 4 tasks with variants and samples.
# * "multi": simulated here (seeded): 3 models x 45 multi-trait profiles (every persona sets all three
#   traits at -2..2); one inventory answered in one cell, one task per trait in one variant and sample, so
#   the respondent scores are the values themselves. Theta = 0.5 * target + persona-specific N(0, 0.7);
#   self-report and behaviour follow theta with noise; extraversion's behaviour ignores it.
# For every scope (each model; pooled with model as fixed effects) and declared pair:
#   covariates = indicators of the pair's own trait's target levels (pooled: of model x level) + the other
#   traits' levels (+ model);
#   partial r by the residual method, lm0 <- lm(b ~ covariates), lm1 <- update(lm0, . ~ . + s),
#   anova(lm0, lm1) (F, p), delta R^2, p.adjust(BH) over the scope's declared pairs, TOST p from pnorm on
#   Fisher's z with se = 1 / sqrt(df - 1); the persona-effect ratio from lm coefficients on all targets.
suppressPackageStartupMessages({library(jsonlite)})

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
if (length(script) == 1) setwd(dirname(normalizePath(script)))
bound <- 0.2
key <- function(d) paste(d$model, d$persona)

# --- the multi-trait data set ------------------------------------------------------------------------
set.seed(20261206)
traits3 <- c("agreeableness", "extraversion", "neuroticism")
models3 <- c("ma", "mb", "mc")
personas45 <- sprintf("q%02d", 1:45)
multi_targets <- expand.grid(persona = personas45, trait = traits3, stringsAsFactors = FALSE)
multi_targets$level <- 0
for (t in traits3) multi_targets$level[multi_targets$trait == t] <- sample(rep(-2:2, 9))
multi_self <- list(); multi_beh <- list()
tasks3 <- data.frame(task = c("dictator-game", "social-choice", "setback-writing"), trait = traits3,
                     direction = c(1, 1, -1), link = c(0.7, 0, 0.6))
for (m in seq_along(models3)) for (p in personas45) for (k in 1:3) {
  t <- traits3[k]
  level <- multi_targets$level[multi_targets$persona == p & multi_targets$trait == t]
  theta <- 0.5 * level + rnorm(1, 0, 0.7)
  s <- 3 + 0.6 * theta + 0.3 * m + rnorm(1, 0, 0.4)
  b <- 0.5 + 0.15 * tasks3$direction[k] * (tasks3$link[k] * theta + 0.4 * (tasks3$link[k] == 0) * level) +
    0.05 * m + rnorm(1, 0, 0.12)
  multi_self[[length(multi_self) + 1]] <- data.frame(model = models3[m], persona = p, inventory = "inv-m",
                                                     scale = substr(t, 1, 4), trait = t, trait_sign = 1, score = s,
                                                     cell = "c1")
  multi_beh[[length(multi_beh) + 1]] <- data.frame(model = models3[m], persona = p, sample = 0, task = tasks3$task[k],
                                                   variant = "v01", trait = t, direction = tasks3$direction[k],
                                                   outcome = "valid", score = b)
}
multi_self <- do.call(rbind, multi_self)
multi_beh <- do.call(rbind, multi_beh)
write.csv(multi_self, "data/incremental-selfreport.csv", row.names = FALSE)
write.csv(multi_beh, "data/incremental-behavior.csv", row.names = FALSE)
write.csv(multi_targets, "data/incremental-targets.csv", row.names = FALSE)

# --- respondent scores -------------------------------------------------------------------------------
respondent_scores <- function(selfreport, behavior) {
  respondents <- unique(selfreport[, c("model", "persona")])
  respondents <- respondents[key(respondents) %in% key(behavior), ]
  respondents <- respondents[order(respondents$model, respondents$persona), ]
  selfreport <- selfreport[key(selfreport) %in% key(respondents), ]
  behavior <- behavior[key(behavior) %in% key(respondents), ]
  selfreport$signed <- selfreport$score * selfreport$trait_sign
  by_inventory <- aggregate(signed ~ model + persona + inventory + trait, selfreport, mean)
  traits <- sort(unique(by_inventory$trait))
  self <- sapply(traits, function(t) {
    invs <- unique(by_inventory$inventory[by_inventory$trait == t])
    comps <- sapply(invs, function(inv) {
      part <- by_inventory[by_inventory$inventory == inv & by_inventory$trait == t, ]
      part$signed[match(key(respondents), key(part))]
    })
    if (length(invs) == 1) as.vector(comps) else rowMeans(apply(comps, 2, function(v) as.vector(scale(v))))
  })
  tasks <- unique(behavior[, c("task", "trait", "direction")])
  tasks <- tasks[order(tasks$task), ]
  # variant-centred scores over every variant (as validity.R): per model and task, the respondent
  # coefficients of lm(cell mean ~ 0 + respondent + variant) with sum contrasts on the variants
  vm <- aggregate(score ~ model + persona + task + variant, behavior, mean)
  vm$key <- key(vm)
  beh <- sapply(tasks$task, function(k) {
    out <- rep(NA_real_, nrow(respondents))
    for (m in unique(respondents$model)) {
      d <- vm[vm$task == k & vm$model == m, ]
      d$respondent <- factor(d$key); d$variant <- factor(d$variant)
      a <- if (nlevels(d$variant) > 1) {
        fit <- lm(score ~ 0 + respondent + variant, d, contrasts = list(variant = "contr.sum"))
        coef(fit)[paste0("respondent", levels(d$respondent))]
      } else tapply(d$score, d$respondent, mean)
      out[match(levels(d$respondent), key(respondents))] <- a
    }
    out
  })
  list(respondents = respondents, self = self, beh = beh, tasks = tasks)
}

target_matrix <- function(targets, respondents) {
  traits <- sort(unique(targets$trait[targets$level != 0]))
  sapply(traits, function(t) {
    part <- targets[targets$trait == t, ]
    v <- part$level[match(respondents$persona, part$persona)]
    ifelse(is.na(v), 0, v)
  })
}

# --- the statistics ----------------------------------------------------------------------------------
analyse <- function(scores, targets) {
  resp <- scores$respondents
  levels <- target_matrix(targets, resp)
  scopes <- c(sort(unique(resp$model)), "pooled")
  pairs <- list(); ratios <- list()
  for (scope in scopes) {
    rows <- if (scope == "pooled") rep(TRUE, nrow(resp)) else resp$model == scope
    block <- list()
    for (k in seq_len(nrow(scores$tasks))) {
      task <- scores$tasks$task[k]; t <- scores$tasks$trait[k]; direction <- scores$tasks$direction[k]
      s <- scores$self[, t]; b <- scores$beh[, task]
      ok <- rows & !is.na(s) & !is.na(b)
      d <- data.frame(s = s[ok], b = b[ok], model = factor(resp$model[ok]), own = factor(levels[ok, t]))
      others <- setdiff(colnames(levels), t)
      for (o in others) d[[paste0("t_", o)]] <- levels[ok, o]
      # pooled: a category per model x own level (each model's own response to the level), with the model
      d$cell <- factor(paste(d$model, levels[ok, t]))
      rhs <- c(if (scope == "pooled") "cell" else "own", paste0("t_", others), if (scope == "pooled") "model")
      lm0 <- lm(reformulate(rhs, "b"), data = d)
      lm1 <- update(lm0, . ~ . + s)
      ls <- lm(reformulate(rhs, "s"), data = d)
      a <- anova(lm0, lm1)
      pr <- cor(resid(ls), resid(lm0))
      df <- lm1$df.residual
      se <- 1 / sqrt(df - 1)
      z <- atanh(pr); zb <- atanh(bound)
      tost <- max(pnorm((z + zb) / se, lower.tail = FALSE), pnorm((z - zb) / se))
      block[[length(block) + 1]] <- list(scope = scope, trait = t, task = task, n = nrow(d), partial_r = pr, df = df,
                                         f = a$F[2], p_incremental = a$`Pr(>F)`[2],
                                         delta_r2 = summary(lm1)$r.squared - summary(lm0)$r.squared,
                                         r2_targets = summary(lm0)$r.squared, p_equivalence = tost)
      # the persona-effect ratio: coefficients of the trait's level among all targets (+ model)
      d$level <- levels[ok, t]
      rhs2 <- c("level", paste0("t_", others), if (scope == "pooled") "model")
      bs <- coef(lm(reformulate(rhs2, "s"), data = d))["level"]
      bb <- coef(lm(reformulate(rhs2, "I(direction * b)"), data = d))["level"]
      within_sd <- function(v) {
        if (scope == "pooled") sqrt(sum((v - ave(v, d$model))^2) / (length(v) - nlevels(d$model))) else sd(v)
      }
      ds <- unname(bs) / within_sd(d$s); db <- unname(bb) / within_sd(direction * d$b)
      ratios[[length(ratios) + 1]] <- list(scope = scope, trait = t, task = task, n = nrow(d), d_selfreport = ds,
                                           d_behavior = db, ratio = db / ds)
    }
    adjusted <- p.adjust(sapply(block, `[[`, "p_incremental"), method = "BH")
    for (i in seq_along(block)) {
      block[[i]]$p_bh_incremental <- adjusted[i]
      pairs[[length(pairs) + 1]] <- block[[i]]
    }
  }
  list(pairs = pairs, ratios = ratios)
}

read <- function(name) read.csv(sprintf("data/%s.csv", name), stringsAsFactors = FALSE)
single_scores <- respondent_scores(read("validity-selfreport"), read("validity-behavior"))
single_scores$self <- single_scores$self  # traits measured by the self-report
multi_scores <- respondent_scores(multi_self, multi_beh)

# TOST p at fixed values (the function alone)
tost_fixed <- lapply(list(c(0.05, 118), c(-0.12, 60), c(0.3, 30), c(0, 3)), function(v) {
  se <- 1 / sqrt(v[2] - 1); z <- atanh(v[1]); zb <- atanh(bound)
  list(r = v[1], df = v[2], p = max(pnorm((z + zb) / se, lower.tail = FALSE), pnorm((z - zb) / se)))
})

golden <- list(bound = bound, single = analyse(single_scores, read("validity-targets")),
               multi = analyse(multi_scores, multi_targets), tost = tost_fixed)
write_json(golden, "golden/incremental.json", auto_unbox = TRUE, digits = NA, na = "null", pretty = TRUE)
