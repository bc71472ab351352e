# Reference values for psychometrics/behavior/signal_detection.py (over-claiming as signal detection).
#
#   cd tests/reference && Rscript signal_detection.R      # writes golden/signal_detection.json
#
# Log-linear correction (Hautus, 1995): H = (hits + .5) / (n_signal + 1), F = (fa + .5) / (n_noise + 1);
# d' = qnorm(H) - qnorm(F), c = -(qnorm(H) + qnorm(F)) / 2 (Macmillan & Creelman, 2005), with R's qnorm.
# The cases cover rates of 0 and 1 (where the uncorrected z is infinite) and unequal list lengths.
suppressPackageStartupMessages(library(jsonlite))
args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
if (length(script) == 1) setwd(dirname(normalizePath(script)))

cases <- data.frame(hits = c(5, 0, 5, 3, 4, 2, 1),
                    n_signal = c(5, 5, 5, 5, 5, 4, 6),
                    false_alarms = c(0, 0, 3, 3, 1, 2, 0),
                    n_noise = c(3, 3, 3, 3, 3, 3, 2))
H <- (cases$hits + 0.5) / (cases$n_signal + 1)
F <- (cases$false_alarms + 0.5) / (cases$n_noise + 1)
cases$hit_rate <- H
cases$false_alarm_rate <- F
cases$d_prime <- qnorm(H) - qnorm(F)
cases$c <- -(qnorm(H) + qnorm(F)) / 2
writeLines(toJSON(list(cases = cases), digits = NA, pretty = TRUE), "golden/signal_detection.json")
