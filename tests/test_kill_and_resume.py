"""A run killed with SIGKILL mid-way resumes without losing or re-sending any committed answer."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "psychometrics", "administer", *args, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def committed(db: Path) -> dict[str, float]:
    """request id -> answered_at of every committed answer (read while the writer may be live)."""
    if not db.exists():
        return {}
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return dict(connection.execute("SELECT request_id, answered_at FROM responses WHERE error IS NULL"))
    except sqlite3.OperationalError:
        return {}
    finally:
        connection.close()


def kill_when(db: Path, process: subprocess.Popen, at_least: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while len(committed(db)) < at_least:
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the run did not get far enough to be killed"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize(
    "model, extra, kill_after",
    [
        ("sim/latency=0.01,seed=1", ["-i", "ipip-neo-120", "--option-orders", "original,reversed",
                                      "--concurrency", "8"], 60),
        pytest.param("local/smollm2-135m", ["-i", "mini-ipip", "--option-orders", "rotations", "--mode", "probs"], 30,
                     marks=pytest.mark.slow),
    ],
    ids=["simulated", "smollm2"],
)
def test_sigkill_then_resume_loses_nothing_and_resends_nothing(tmp_path, model, extra, kill_after):
    if model.startswith("local/"):
        pytest.importorskip("llama_cpp")
    out = tmp_path / "run"
    args = ["--model", model, *extra, "--out", str(out)]
    db = out / "responses.sqlite"
    process = start(args)
    kill_when(db, process, kill_after)
    before = committed(db)
    planned = json.loads((out / "manifest.json").read_text())["requests_planned"]
    assert kill_after <= len(before) < planned

    resumed = start(args)
    stdout, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr
    summary = json.loads(stdout)
    after = committed(db)
    assert summary["already_answered"] == len(before)
    assert summary["sent"] == planned - len(before)  # only the missing ones were sent
    assert len(after) == planned  # nothing lost
    assert {rid: after[rid] for rid in before} == before  # committed answers were not re-sent or rewritten
