"""A common cause is not validity: simulated respondents under 84 multi-trait personas, through
``psytest administer``, ``behave`` and ``validity``.

When the self-report and the behaviour both follow only the persona's target levels (``persona_spread=0``:
every respondent's traits are its targets), the plain r across personas "confirms" nearly every declared
pair, and beyond the target levels (incremental validity) at most 2 of them (one per shipped task) are confirmed. When the traits
vary beyond the targets (``persona_spread=1``) and behaviour follows the traits (``behavior_link``), the
built-in links are recovered beyond the persona. Measured when this test was written, on the 19 tasks
then shipped (84 personas, 2 variants): 19 of 19 by r and 1 of 19 beyond the persona (1 explained by persona,
17 inconclusive: 84 personas rarely show equivalence); with spread, 19 of 19 beyond the persona. The repaired
battery of issue 16 has 26 tasks; the bounds are stated per task count.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from psychometrics.behavior.task import shipped_tasks

N_TASKS = len(shipped_tasks())  # one declared pair per shipped task

PSYTEST = [sys.executable, "-m", "psychometrics"]
TRAITS = ("extraversion", "agreeableness", "conscientiousness", "neuroticism", "openness", "machiavellianism",
          "narcissism", "psychopathy")
N_PERSONAS = 84


def run_cli(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([*PSYTEST, *args], capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def personas(tmp_path_factory) -> Path:
    """Every persona sets all 8 traits; each trait's levels -3..3 are balanced over the personas and
    shuffled independently of the other traits' (the shipped multi-trait set is not in main yet)."""
    rng = np.random.default_rng(7)
    levels = {t: rng.permutation(np.resize(np.arange(-3, 4), N_PERSONAS)) for t in TRAITS}
    entries = [{"id": f"profile-{i:03d}",
                "text": f"For the following task, respond as the person described in profile {i:03d}.",
                "targets": {t: int(levels[t][i]) for t in TRAITS}} for i in range(N_PERSONAS)]
    path = tmp_path_factory.mktemp("personas") / "multi-trait.yaml"
    path.write_text(yaml.safe_dump({"id": "multi-trait-test", "name": "Multi-trait test profiles",
                                    "personas": entries}, sort_keys=False), encoding="utf-8")
    return path


def _validity(root: Path, model: str, personas: Path) -> dict:
    questionnaire, behavior, out = root / "q", root / "b", root / "v"
    run_cli("administer", "--model", model, "-i", "mini-ipip", "-i", "sd3", "--personas", str(personas),
            "--mode", "probs", "--out", str(questionnaire), "--json")
    run_cli("behave", "--model", model, "--tasks", "all", "--personas", str(personas), "--variants", "2",
            "--out", str(behavior), "--json")
    return json.loads(run_cli("validity", "-s", str(questionnaire), "-b", str(behavior), "--out", str(out),
                              "--bootstrap", "200", "--json").stdout)


def _counts(payload: dict) -> tuple[int, int, int, dict]:
    pairs = payload["declared_pairs"]
    conclusions = payload["conclusions"][0]
    return len(pairs), sum(p["confirmed"] for p in pairs), sum(bool(p["incremental_confirmed"]) for p in pairs), \
        conclusions


def test_a_common_cause_confirms_by_r_but_not_beyond_the_persona(personas, tmp_path):
    # noise: the questionnaire answers have noise of their own, so the self-report is not the target itself
    payload = _validity(tmp_path, "sim/seed=11,behavior_link=0.85,noise=0.7", personas)
    declared, by_r, beyond, conclusions = _counts(payload)
    assert declared == N_TASKS and by_r >= 0.75 * N_TASKS  # the plain r "confirms" many pairs...
    assert beyond <= 2  # ...beyond the persona's target levels at most 2
    assert conclusions["predicts beyond persona"] == beyond and conclusions["reversed"] == 0
    # the rest is explained by the persona (equivalent to 0 beyond it) or, at 84 personas mostly, inconclusive
    assert conclusions["explained by persona"] + conclusions["inconclusive"] == declared - beyond
    # validity.json leads with the conclusions and carries their rules
    written = json.loads((tmp_path / "v" / "validity.json").read_text(encoding="utf-8"))
    assert list(written)[:3] == ["conclusions", "conclusion_rules", "declared_pairs"]
    assert len(written["conclusion_rules"]) == 8
    assert all(p["basis"] == "partial r given target levels" for p in payload["declared_pairs"])
    ratios = payload["persona_effect"]
    assert len(ratios) == N_TASKS and all(r["d_selfreport"] > 0 for r in ratios)


def test_traits_beyond_the_target_recover_the_built_in_links(personas, tmp_path):
    payload = _validity(tmp_path, "sim/seed=12,behavior_link=0.85,persona_spread=1", personas)
    declared, by_r, beyond, conclusions = _counts(payload)
    assert declared == N_TASKS and beyond >= N_TASKS - 2
    assert conclusions["reversed"] == 0 and conclusions["not interpretable"] == 0
    overall = payload["dissociation"][0]
    assert overall["confirmed_incremental"] == beyond and overall["dissociation_incremental"] <= 2 / N_TASKS
