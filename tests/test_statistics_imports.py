"""The statistics are a layer of their own: importing any of them loads no planner, prompts, models,
pydantic, yaml or CLI error type, and the design cell they group by (psychometrics.conditions) loads
nothing heavy at all. Each import runs in a fresh interpreter, so one module cannot hide another's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import psychometrics.statistics

STATISTICS = sorted(p.stem for p in Path(psychometrics.statistics.__file__).parent.glob("*.py") if p.stem != "__init__")
# Loading any of these from a statistic would tie the statistics to the planner, the backends or the CLI.
FORBIDDEN = ("pydantic", "yaml", "psychometrics.design", "psychometrics.models", "psychometrics.errors",
             "psychometrics.inventories", "psychometrics.cli", "psychometrics.engine")


def loaded_after(module: str) -> set[str]:
    code = f"import sys, json; import {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


def test_every_statistics_module_is_listed():
    assert {"efa", "lbfgsb", "rotation", "omega", "congruence", "design_effects", "response_styles"} <= set(STATISTICS)


@pytest.mark.parametrize("name", STATISTICS)
def test_a_statistic_loads_no_planner_models_or_cli_errors(name):
    loaded = loaded_after(f"psychometrics.statistics.{name}")
    assert not [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]


def test_conditions_load_nothing_heavy():
    loaded = loaded_after("psychometrics.conditions")
    assert not {"numpy", "pandas", "scipy", "pydantic", "yaml"} & loaded
    assert not [m for m in loaded if m.startswith("psychometrics.") and m != "psychometrics.conditions"]
