"""The committed reference runs under reports/ reproduce from their stores (run in CI on every change)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from psychometrics.analysis.reproduce import reproduce
from psychometrics.analysis.reproduce_study import reproduce_study

ROOT = Path(__file__).resolve().parents[1]
RUNS = sorted(p for p in (ROOT / "reports").iterdir() if (p / "manifest.json").is_file())
#: The committed studies (``psytest study``): every study directory under reports/, and its questionnaire runs.
STUDIES = sorted(p.parent for p in (ROOT / "reports").rglob("study.json"))
STUDY_RUNS = sorted(run.parent for study in STUDIES for run in (study / "runs").glob("*/manifest.json")
                    if (run.parent / "analysis").is_dir() and not run.parent.name.endswith("-behavior"))
FIVE_MODELS = ROOT / "reports" / "five-models" / "study"
#: The committed self-report vs behaviour study on Qwen 0.5B (issue 16): its runs and its validity set.
QWEN_VALIDITY = ROOT / "reports" / "qwen2.5-0.5b-validity"
VALIDITY_RUNS = sorted(run.parent for run in (QWEN_VALIDITY / "runs").glob("*/manifest.json")
                       if (run.parent / "analysis").is_dir())
VALIDITY_QUESTIONNAIRES = [run for run in VALIDITY_RUNS if not run.name.startswith("behavior")]


def test_the_qwen_reference_run_is_committed_with_its_design():
    manifest = json.loads((ROOT / "reports" / "qwen2.5-0.5b" / "manifest.json").read_text())
    assert manifest["model"] == "local/qwen2.5-0.5b"
    assert {i["id"] for i in manifest["inventories"]} == {"bfi-44", "ipip-neo-120", "sd3"}
    assert manifest["design"]["option_orders"] == ["original", "reversed"]
    assert manifest["design"]["templates"] == ["numbered", "lettered"]
    assert (ROOT / "reports" / "qwen2.5-0.5b" / "report" / "report.html").is_file()


def test_the_five_model_study_is_committed_complete_with_its_report():
    """Issue 15: five models (three simulated respondents, Qwen 0.5B, SmolLM2 135M), two inventories, personas,
    one command (examples/five-models.yaml); its combined report is committed and reproduced below."""
    manifest = json.loads((FIVE_MODELS / "study.json").read_text(encoding="utf-8"))
    assert manifest["state"] == "complete" and manifest["failed_models"] == []
    models = [m["model"] for m in manifest["models"]]
    assert len(models) >= 5 and {"local/qwen2.5-0.5b", "local/smollm2-135m"} <= set(models)
    assert sum(m.startswith("sim/") for m in models) >= 3
    assert all(run["status"] == "complete" for run in manifest["runs"])
    assert FIVE_MODELS in STUDIES and (FIVE_MODELS / "report" / "report.html").is_file()
    verdict = (FIVE_MODELS / "report" / "verdict.csv").read_text(encoding="utf-8")
    assert all(model in verdict for model in models)


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.relative_to(ROOT / "reports").as_posix())
def test_reference_study_reproduces(study):
    """The study's report, comparison and validity tables recomputed from its runs match what is committed."""
    result = reproduce_study(study)
    assert result.passed, result.summary()
    assert {"report/verdict.csv", "report/model_variance.csv", "comparison/differences.csv"} <= set(result.files_checked)


def test_the_qwen_validity_study_is_committed_with_the_repaired_battery_and_multi_trait_personas():
    """Issue 16: the Qwen 0.5B self-report vs behaviour study redone under the 100 multi-trait profiles (plus
    the baseline) with the repaired tasks, choice tasks read from label probabilities, robust scores."""
    manifests = {run.name: json.loads((run / "manifest.json").read_text(encoding="utf-8")) for run in VALIDITY_RUNS}
    assert {"selfreport-mini-ipip", "selfreport-sd3-a", "selfreport-sd3-b", "behavior-text", "behavior-probs"} \
        <= set(manifests)  # SD3 in two halves of the personas, to keep each store under 5 MB
    for manifest in manifests.values():
        assert manifest["model"] == "local/qwen2.5-0.5b" and manifest["personas"]["id"] == "multi-trait"
    sd3 = {p for name in ("selfreport-sd3-a", "selfreport-sd3-b") for p in manifests[name]["personas"]["targets"]}
    for name in ("selfreport-mini-ipip", "behavior-text", "behavior-probs"):  # every respondent's targets recorded
        assert set(manifests[name]["personas"]["targets"]) == sd3 and len(sd3) == 101
    tasks = {t["id"] for name in ("behavior-text", "behavior-probs") for t in manifests[name]["tasks"]}
    assert {"die-roll", "noise-blast", "public-goods", "prisoners-dilemma", "deception-game"} <= tasks
    assert manifests["behavior-probs"]["design"]["mode"] == "probs"
    incremental = (QWEN_VALIDITY / "validity" / "validity_incremental.csv").read_text(encoding="utf-8")
    assert "conclusion" in incremental.splitlines()[0]


def test_the_qwen_validity_set_reproduces_from_its_runs():
    """Every table of the committed validity set, recomputed from the committed runs, is what is committed."""
    from psychometrics.analysis.reproduce_validity import is_runs_validity, reproduce_runs_validity

    directory = QWEN_VALIDITY / "validity"
    assert is_runs_validity(directory)
    result = reproduce_runs_validity(directory)
    assert result.passed, result.summary()
    committed = {f"validity/{f.name}" for f in directory.glob("*.csv") if f.name != "run_info.csv"}
    assert len(committed) >= 10 and committed <= set(result.files_checked)


@pytest.mark.parametrize("run", RUNS + STUDY_RUNS + VALIDITY_QUESTIONNAIRES, ids=lambda p: p.relative_to(ROOT / "reports").as_posix())
def test_reference_run_reproduces(run):
    result = reproduce(run)
    assert result.passed, result.summary()
    committed = {f"{d.name}/{f.name}" for d in run.iterdir() if (d / "provenance.json").is_file()
                 for f in d.glob("*.csv") if f.name != "run_info.csv"}  # run_info is settings, not derived
    assert len(committed) >= 13 and committed <= set(result.files_checked)  # every committed table was checked


def test_reproduce_command_exit_codes(tmp_path):
    run = RUNS[0]
    ok = subprocess.run([sys.executable, "-m", "psychometrics", "reproduce", str(run)], capture_output=True, text=True)
    assert ok.returncode == 0 and "REPRODUCED" in ok.stdout


#: OpenBLAS kernels to reproduce under. On a CPU without a kernel's instructions OpenBLAS falls back to the
#: nearest one it can run (on an AVX-512 CPU without AMX, SapphireRapids runs SkylakeX and Zen runs Haswell),
#: which still covers four distinct kernels: AVX-512, AVX2, AVX and SSE ones.
KERNELS = ("Haswell", "SkylakeX", "SapphireRapids", "Zen", "Prescott", "Sandybridge", "Nehalem")


@pytest.mark.parametrize("run", RUNS, ids=lambda p: p.name)
def test_reference_run_reproduces_under_every_blas_kernel(run):
    """A run committed on one machine is checked on another: the verdict must not depend on the kernel
    (issue 13). Each kernel in its own process, since OpenBLAS reads OPENBLAS_CORETYPE when it loads."""
    verdicts = {}
    for kernel in KERNELS:
        env = {**os.environ, "OPENBLAS_CORETYPE": kernel}
        done = subprocess.run([sys.executable, "-m", "psychometrics", "reproduce", str(run), "--json"],
                              capture_output=True, text=True, env=env, timeout=600)
        assert done.stdout, f"{kernel}: {done.stderr}"
        result = json.loads(done.stdout)
        assert done.returncode == 0 and result["passed"], f"{kernel}: {result['verdict']}\n{result['mismatches'][:5]}"
        verdicts[kernel] = result["verdict"]
    assert len(set(verdicts.values())) == 1 and next(iter(verdicts.values())).startswith("REPRODUCED")
