# Reference values for reports/personality-illusion/ (psytest validity --scores on the released data of
# Han et al., 2025), computed in R from the committed scores.csv and pairs.yaml.
#
#   cd tests/reference && Rscript personality_illusion.R     # writes golden/personality_illusion.csv
#
# Independently of the Python code: the respondent (model x respondent) means over samples with
# aggregate(); per model, cor.test() of each declared pair over the model's respondents; pooled over
# models, the within-model r (both scores centred within model) with the slope test of
# lm(behaviour ~ selfreport + model), which has n - k - 1 degrees of freedom; p.adjust(method = "BH")
# over the declared pairs of each scope; and the within/between mixed model with lme4::lmer (REML).
suppressPackageStartupMessages({library(lme4)})

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
if (length(script) == 1) setwd(dirname(normalizePath(script)))

report <- file.path("..", "..", "reports", "personality-illusion")
scores <- read.csv(file.path(report, "scores.csv"), check.names = FALSE, stringsAsFactors = FALSE)
lines <- readLines(file.path(report, "pairs.yaml"))
entries <- regmatches(lines, regexec("^- \\{selfreport: ([^,]+), behavior: ([^,]+), sign: (-?1)\\}$", lines))
entries <- do.call(rbind, lapply(entries[lengths(entries) == 4], function(m) m[2:4]))
pairs <- data.frame(trait = entries[, 1], task = entries[, 2], sign = as.integer(entries[, 3]),
                    stringsAsFactors = FALSE)

measures <- setdiff(names(scores), c("model", "respondent", "sample"))
means <- aggregate(scores[, measures], by = list(model = scores$model, respondent = scores$respondent), FUN = mean)
models <- sort(unique(means$model))

rows <- list()
for (scope in c(models, "pooled")) {
  part <- if (scope == "pooled") means else means[means$model == scope, ]
  block <- NULL
  for (i in seq_len(nrow(pairs))) {
    x <- part[[pairs$trait[i]]]; y <- part[[pairs$task[i]]]
    if (sd(x) == 0 || sd(y) == 0) {
      block <- rbind(block, data.frame(scope = scope, trait = pairs$trait[i], task = pairs$task[i], n = nrow(part),
                                       r = NA, p = NA))
      next
    }
    if (scope == "pooled") {
      xc <- x - ave(x, part$model); yc <- y - ave(y, part$model)
      fit <- summary(lm(y ~ x + factor(part$model)))
      r <- cor(xc, yc); p <- fit$coefficients["x", "Pr(>|t|)"]
    } else {
      test <- cor.test(x, y); r <- unname(test$estimate); p <- test$p.value
    }
    block <- rbind(block, data.frame(scope = scope, trait = pairs$trait[i], task = pairs$task[i], n = nrow(part),
                                     r = r, p = p))
  }
  block$p_bh_declared <- p.adjust(block$p, method = "BH")
  rows[[scope]] <- block
}
golden <- do.call(rbind, rows)

mixed <- NULL
for (i in seq_len(nrow(pairs))) {
  d <- data.frame(s = means[[pairs$trait[i]]], b = means[[pairs$task[i]]], model = means$model)
  d$zs <- (d$s - mean(d$s)) / sd(d$s); d$zb <- (d$b - mean(d$b)) / sd(d$b)
  d$between <- ave(d$zs, d$model); d$within <- d$zs - d$between
  fit <- lmer(zb ~ within + between + (1 | model), data = d, REML = TRUE)
  co <- summary(fit)$coefficients
  mixed <- rbind(mixed, data.frame(scope = "mixed", trait = pairs$trait[i], task = pairs$task[i], n = nrow(d),
                                   r = NA, p = NA, p_bh_declared = NA, within = co["within", "Estimate"],
                                   between = co["between", "Estimate"]))
}
golden$within <- NA; golden$between <- NA
write.csv(rbind(golden, mixed), file.path("golden", "personality_illusion.csv"), row.names = FALSE)
