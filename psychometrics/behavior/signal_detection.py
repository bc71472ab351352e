"""Signal-detection indices of a yes/no recognition list (the over-claiming technique).

Hit rate :math:`H` over the real items, false-alarm rate :math:`F` over the foils, both with the
log-linear correction (Hautus, 1995): :math:`H = (h + 0.5) / (n_s + 1)`, :math:`F = (f + 0.5) / (n_n + 1)`,
which keeps the z-transform finite at rates of 0 and 1 and biases d' least of the usual corrections.
Sensitivity :math:`d' = z(H) - z(F)`; criterion :math:`c = -(z(H) + z(F)) / 2` (Macmillan & Creelman,
2005), negative for a liberal (yes-saying) respondent. The over-claiming score is the claiming tendency
:math:`-c`, independent of knowledge (d') as Paulhus et al. (2003) separate accuracy from bias.

Hautus, M. J. (1995). Corrections for extreme proportions and their biasing effects on estimated values
of d'. Behavior Research Methods, Instruments, & Computers, 27(1), 46-51.
Macmillan, N. A., & Creelman, C. D. (2005). Detection theory: A user's guide (2nd ed.). Erlbaum.
"""

from __future__ import annotations

from statistics import NormalDist


def signal_detection(hits: int, n_signal: int, false_alarms: int, n_noise: int) -> dict[str, float]:
    """``{"hit_rate", "false_alarm_rate", "d_prime", "c"}`` with the log-linear correction (rates are
    the corrected ones)."""
    if n_signal < 1 or n_noise < 1 or not 0 <= hits <= n_signal or not 0 <= false_alarms <= n_noise:
        raise ValueError("signal_detection needs 0 <= hits <= n_signal, 0 <= false_alarms <= n_noise, both n >= 1")
    hit_rate = (hits + 0.5) / (n_signal + 1)
    false_alarm_rate = (false_alarms + 0.5) / (n_noise + 1)
    z = NormalDist().inv_cdf
    return {"hit_rate": hit_rate, "false_alarm_rate": false_alarm_rate,
            "d_prime": z(hit_rate) - z(false_alarm_rate), "c": -(z(hit_rate) + z(false_alarm_rate)) / 2}
