"""The committed reference runs under reports/ reproduce from their stores (run in CI on every change)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from psychometrics.analysis.reproduce import reproduce

ROOT = Path(__file__).resolve().parents[1]
RUNS = sorted(p for p in (ROOT / "reports").iterdir() if (p / "manifest.json").is_file())


def test_the_qwen_reference_run_is_committed_with_its_design():
    manifest = json.loads((ROOT / "reports" / "qwen2.5-0.5b" / "manifest.json").read_text())
    assert manifest["model"] == "local/qwen2.5-0.5b"
    assert {i["id"] for i in manifest["inventories"]} == {"bfi-44", "ipip-neo-120", "sd3"}
    assert manifest["design"]["option_orders"] == ["original", "reversed"]
    assert manifest["design"]["templates"] == ["numbered", "lettered"]
    assert (ROOT / "reports" / "qwen2.5-0.5b" / "report" / "report.html").is_file()


@pytest.mark.parametrize("run", RUNS, ids=lambda p: p.name)
def test_reference_run_reproduces(run):
    result = reproduce(run)
    assert result.passed, result.summary()
    assert len(result.files_checked) >= 16


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
