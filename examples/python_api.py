"""Using psytest from Python: administer, analyse, and look at the tables as DataFrames.

Run: python examples/python_api.py   (uses a simulated respondent, so it needs no model and takes seconds)
"""

from pathlib import Path

from psychometrics.analysis.tables import analyze_run
from psychometrics.design.plan import Design
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models import resolve_model
from psychometrics.run.directory import administer

run_dir = Path("runs/python-api-example")
# Swap in resolve_model("local/qwen2.5-0.5b") or resolve_model("openai/gpt-4o-mini") for a real model.
model = resolve_model("sim/extraversion=1,agreeableness=-0.5,acquiescence=0.4,position_first=0.8,seed=7")
design = Design(option_orders=["original", "reversed"], templates=["numbered", "lettered"], samples=3,
                temperature=0.7, modes=["text", "probs"])

result = administer(model, [resolve_inventory("bfi-44")], design, run_dir)
print(f"sent {result.stats.sent} requests, {result.stats.already_answered} were already answered")

tables = analyze_run(run_dir)
summary = tables["score_summary"]
print(summary[summary["kind"] == "scale"][["mode", "scale", "mean", "ci_low", "ci_high"]].to_string(index=False))
print(tables["variance_decomposition"][["mode", "scale", "source", "share"]].head(12).to_string(index=False))
print(tables["acquiescence"][["mode", "balanced_acquiescence", "agree_both_rate"]].to_string(index=False))
