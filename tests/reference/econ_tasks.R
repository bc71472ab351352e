# Reference values for the economic task estimators (psychometrics/behavior/kinds_trials.py,
# tests/test_econ_reference.py).
#
#   cd tests/reference && Rscript econ_tasks.R      # writes data/econ-choices.csv and golden/econ_tasks.json
#
# 1. Kirby's consistency estimate of a threshold from binary choices (Kirby, Petry & Bickel, 1999): for the
#    27 monetary choice items (k at indifference = (later / sooner - 1) / days) and for 12 mixed gambles
#    (indifference at lambda = gain / loss). Choice 1 (later / accept) is consistent with theta < value, 0 with
#    theta > value. Candidates: the smallest and largest item value and the geometric means of adjacent
#    distinct values; theta = the geometric mean of the candidates with the most consistent choices.
#    Choice patterns are drawn here (seeded): clean switches, noisy switches, all-0 and all-1.
# 2. The expected value of announcing c cards in a cold Columbia Card Task round, written as a sum over the
#    position of the first loss card: EV(c) = P(no loss in c) * gain * c + sum_j P(first loss at j) *
#    (gain * (j - 1) - loss), and the c in 0..deck that maximises it (the smallest at ties).
suppressPackageStartupMessages({library(jsonlite)})

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
if (length(script) == 1) setwd(dirname(normalizePath(script)))

kirby <- data.frame(
  sooner = c(54, 55, 19, 31, 14, 47, 15, 25, 78, 40, 11, 67, 34, 27, 69, 49, 80, 24, 33, 28, 34, 25, 41, 54, 54, 22, 20),
  later = c(55, 75, 25, 85, 25, 50, 35, 60, 80, 55, 30, 75, 35, 50, 85, 60, 85, 35, 80, 30, 50, 30, 75, 60, 80, 25, 55),
  days = c(117, 61, 53, 7, 19, 160, 13, 14, 192, 62, 7, 119, 186, 21, 91, 89, 157, 29, 14, 179, 30, 80, 20, 111, 30, 136, 7))
kirby_values <- (kirby$later / kirby$sooner - 1) / kirby$days
gambles <- data.frame(gain = c(10, 12, 16, 15, 20, 15, 18, 24, 20, 30, 25, 30), loss = c(20, 16, 20, 15, 20, 12, 12, 16, 10, 15, 10, 10))
gamble_values <- gambles$gain / gambles$loss

estimate <- function(values, choices) {
  v <- sort(unique(values))
  candidates <- c(v[1], sqrt(head(v, -1) * tail(v, -1)), v[length(v)])
  fits <- sapply(candidates, function(t) sum((choices == 1 & t < values) | (choices == 0 & t > values) | t == values))
  best <- candidates[fits == max(fits)]
  list(theta = exp(mean(log(best))), consistency = max(fits) / length(choices))
}

set.seed(16)
patterns <- list()
make <- function(values, measure) {
  out <- list()
  for (i in 1:12) {
    cut <- exp(runif(1, log(min(values)) - 0.5, log(max(values)) + 0.5))
    noise <- c(0, 0, 0, 0.1, 0.2, 0.35)[(i - 1) %% 6 + 1]
    choices <- as.integer(values > cut)
    flip <- runif(length(values)) < noise
    choices[flip] <- 1L - choices[flip]
    out[[i]] <- choices
  }
  out[[13]] <- rep(0L, length(values))
  out[[14]] <- rep(1L, length(values))
  rows <- lapply(seq_along(out), function(i) {
    e <- estimate(values, out[[i]])
    data.frame(measure = measure, pattern = i, choices = paste(out[[i]], collapse = ""), theta = e$theta,
               log_theta = log(e$theta), consistency = e$consistency)
  })
  do.call(rbind, rows)
}
est <- rbind(make(kirby_values, "kirby"), make(gamble_values, "gambles"))
write.csv(est[, c("measure", "pattern", "choices")], "data/econ-choices.csv", row.names = FALSE)

ev <- function(cards, deck, n, gain, loss) {
  if (cards == 0) return(0)
  p_none <- choose(deck - n, cards) / choose(deck, cards)
  first <- sapply(seq_len(cards), function(j) choose(deck - n, j - 1) / choose(deck, j - 1) * n / (deck - j + 1))
  p_none * gain * cards + sum(first * (gain * (seq_len(cards) - 1) - loss))
}
rounds <- expand.grid(gain = c(10, 30), loss = c(250, 750), n = c(1, 3))
rounds$optimum <- NA
rounds$ev_optimum <- NA
rounds$ev_10 <- NA
for (r in seq_len(nrow(rounds))) {
  evs <- sapply(0:32, function(c) ev(c, 32, rounds$n[r], rounds$gain[r], rounds$loss[r]))
  rounds$optimum[r] <- which(evs >= max(evs) - 1e-9 * max(1, abs(max(evs))))[1] - 1  # ties (EV(4) = EV(5)): the smallest
  rounds$ev_optimum[r] <- max(evs)
  rounds$ev_10[r] <- evs[11]
}

golden <- list(
  meta = list(r_version = R.version.string, generated_by = "tests/reference/econ_tasks.R"),
  thresholds = est, cct = rounds)
write(toJSON(golden, digits = NA, pretty = TRUE, auto_unbox = TRUE), "golden/econ_tasks.json")
