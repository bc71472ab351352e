# Golden values for psychometrics/statistics/norms.py and psychometrics/statistics/mtmm.py.
# Run from tests/reference: Rscript norms_mtmm.R   (writes golden/norms_mtmm.json)
suppressPackageStartupMessages({library(effectsize); library(jsonlite)})
set.seed(7)
model <- round(rnorm(12, 3.5, 0.4), 3)       # a model's scale scores over 12 design cells
human <- round(rnorm(300, 3.2, 0.8), 3)      # a human sample
g <- hedges_g(model, human)
mu <- 3.64; sigma <- 0.72                     # a norm with unknown n: the model's CI on the norm-SD metric
tt <- t.test(model, mu = mu)

# MTMM: two methods x three traits over 40 respondents; R's cor and cor.test.
n <- 40
traits <- matrix(rnorm(n * 3), n, 3)
m1 <- traits + matrix(rnorm(n * 3, 0, 0.6), n, 3)
m2 <- traits %*% matrix(c(1, .2, 0, 0, 1, .1, .3, 0, 1), 3, 3) + matrix(rnorm(n * 3, 0, 0.8), n, 3)
scores <- cbind(m1, m2)
colnames(scores) <- c("a_t1", "a_t2", "a_t3", "b_t1", "b_t2", "b_t3")
convergent_p <- sapply(1:3, function(k) cor.test(m1[, k], m2[, k], alternative = "greater")$p.value)

out <- list(
  r_version = R.version.string, effectsize = as.character(packageVersion("effectsize")),
  model = model, human = human,
  hedges_g = g$Hedges_g, hedges_ci_low = g$CI_low, hedges_ci_high = g$CI_high,
  norm_mean = mu, norm_sd = sigma,
  d_ci_low = (tt$conf.int[1] - mu) / sigma, d_ci_high = (tt$conf.int[2] - mu) / sigma,
  mtmm_scores = as.data.frame(scores), mtmm_cor = cor(scores), convergent_p = convergent_p
)
write_json(out, "golden/norms_mtmm.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
