# Data sets for the reference values: written once, committed, read by both R and Python.
#   bfi25.csv     psychTools::bfi, the 25 personality items, complete cases only (2,436 people)
#   bfi25-keys    psychTools::bfi.keys (reverse-keyed items marked with "-") in the JSON golden files
#   sim-*.csv     simulated data with known structure (seeded)
suppressPackageStartupMessages({library(psych); library(psychTools)})
items <- c(paste0("A", 1:5), paste0("C", 1:5), paste0("E", 1:5), paste0("N", 1:5), paste0("O", 1:5))
bfi25 <- na.omit(psychTools::bfi[, items])
write.csv(bfi25, "data/bfi25.csv", row.names = FALSE)

set.seed(20261122)
# Four correlated factors x 5 items, 600 respondents, 1..5 Likert (a questionnaire-like simulation).
loadings <- matrix(0, 20, 4)
for (f in 1:4) loadings[(f - 1) * 5 + 1:5, f] <- c(.75, .7, .65, .6, .55)
phi <- matrix(.3, 4, 4); diag(phi) <- 1
latent <- MASS::mvrnorm(600, rep(0, 4), phi)
continuous <- latent %*% t(loadings) + matrix(rnorm(600 * 20), 600, 20) %*% diag(sqrt(1 - rowSums((loadings %*% phi) * loadings)))
likert <- apply(continuous, 2, function(x) as.integer(cut(x, c(-Inf, -1.5, -0.5, 0.5, 1.5, Inf))))
colnames(likert) <- paste0("x", 1:20)
write.csv(likert, "data/sim-4factor.csv", row.names = FALSE)

# Test-retest: 40 targets rated on 4 occasions (samples) with target and occasion effects.
target <- rnorm(40, 3, 0.8)
occasion <- c(0, 0.2, -0.1, 0.3)
retest <- sapply(occasion, function(o) target + o + rnorm(40, 0, 0.4))
colnames(retest) <- paste0("sample", 1:4)
write.csv(round(retest, 4), "data/sim-retest.csv", row.names = FALSE)
