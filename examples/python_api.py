"""Using psytest from Python: administer, re-score, compare, and look at the tables as DataFrames.

Run: python examples/python_api.py   (uses simulated respondents, so it needs no model and takes seconds)

Each call is the psytest command of the same name, with the command's options as parameters; nothing
is printed by psytest itself, everything comes back as objects.
"""

from pathlib import Path

import psychometrics as pm
import psychometrics.api

runs = Path("runs/python-api-example")
# Swap in "local/qwen2.5-0.5b" or "openai/gpt-4o-mini" for a real model.
respondent = "sim/extraversion=1,agreeableness=-0.5,acquiescence=0.4,position_first=0.8,seed=7"
design = dict(option_orders="original,reversed", templates=["numbered", "lettered"], samples=3, temperature=0.7,
              mode="both")

plan = pm.administer(respondent, inventory="bfi-44", out=runs / "a", dry_run=True, **design)
print(f"would send {plan['to_send']} requests (about {plan['estimated_input_tokens']:,} input tokens)")

run = pm.administer(respondent, inventory="bfi-44", out=runs / "a", **design)
print(f"sent {run.stats.sent} requests, {run.stats.already_answered} were already answered, {run.stats.failed} failed")
print(run.summary[["mode", "scale", "mean", "ci_low", "ci_high"]].to_string(index=False))

tables = run.tables  # every table `psytest administer` wrote to runs/python-api-example/a/analysis
print(tables["variance_decomposition"][["mode", "scale", "source", "share"]].head(12).to_string(index=False))
print(tables["acquiescence"][["mode", "balanced_acquiescence", "agree_both_rate"]].to_string(index=False))

# Re-score with one respondent per option order (as `psytest score RUN --by option_order --out DIR`).
by_order = pm.score(run.run_dir, by="option_order", out=runs / "a-by-order")
print(by_order.tables["score_summary"].query("kind == 'scale'")[["mode", "scale", "mean", "n"]].to_string(index=False))

# A second respondent without the biases, compared with the first, and a drift check against a baseline.
other = pm.administer("sim/extraversion=1,agreeableness=-0.5,seed=7", inventory="bfi-44", out=runs / "b", **design)
comparison = pm.compare([run.run_dir, other.run_dir])
print(comparison.verdict)
reference = pm.baseline(run.run_dir)
# The design answers in probs mode too, whose repeated samples are identical (no run-to-run spread), so the
# check allows 0.5 score points (unit="raw"); unit="sd" would refuse that baseline, naming the scale.
drift = pm.check(other.run_dir, baseline=reference.path, unit="raw", tolerance=0.5)
print(f"drift check: {'passed' if drift.passed else 'failed'} ({drift.verdict})")

report = psychometrics.api.report(run.run_dir)  # `report` is psychometrics.api.report (psychometrics.report is a package)
print(f"report: {report.html}")
