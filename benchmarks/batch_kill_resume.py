"""A ``--batch`` run killed with SIGKILL at each step and resumed: what the batch server counted.

BFI-44 (44 requests) in batches of 16 (three batches) against the loopback batch server
(:mod:`psychometrics.testing.batch_server`), one fresh run per kill point: the run is started as a
subprocess, killed with SIGKILL when the server reaches the step (or, mid-results, once 7 answers are
committed), the held request is dropped as a dead client's would be, and the same command is run again
to the end. Printed per kill point: answers committed at the kill, input files uploaded, batches created,
request lines submitted (over all batches), request ids submitted more than once, answers committed
after the resume, requests the resumed run committed, and its exit code.

Run: ``python benchmarks/batch_kill_resume.py`` (about a minute).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from psychometrics.testing.batch_server import start_batch_server
from psychometrics.testing.waiting import HANG_GUARD_S, wait_for

STEPS = [
    ("upload", "after the upload (its answer lost)"),
    ("create", "create sent, not carried out"),
    ("created", "batch created, its id not heard"),
    ("poll", "while polling"),
    ("results", "mid-results (7 lines committed)"),
]


def answered(db: Path) -> int:
    if not db.exists():
        return 0
    connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return connection.execute("SELECT count(DISTINCT request_id) FROM responses WHERE error IS NULL").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        connection.close()


def start(url: str, out: Path, model: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "psychometrics", "administer", "--model", model, "--api-base", url, "-i", "bfi-44",
         "--out", str(out), "--batch", "--batch-poll", "0.01", "--batch-size", "16", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def main() -> None:
    os.environ.setdefault("ANTHROPIC_API_KEY", "sk-ant-loopback")
    print("| provider | killed | answers at kill | uploads | batches created | lines submitted | ids submitted twice "
          "| answers after resume | committed by the resume | exit |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for provider, model in (("openai", "openai/sim"), ("anthropic", "anthropic/claude-loopback")):
        for step, label in STEPS:
            if provider == "anthropic" and step == "upload":
                continue  # message batches have no upload
            out = Path(tempfile.mkdtemp()) / "run"
            db = out / "responses.sqlite"
            with start_batch_server(hold={step}, hold_results_after=7, polls_to_finish=2) as server:
                url = server.base_url if provider == "openai" else server.root_url
                first = start(url, out, model)
                if step == "results":
                    wait_for(lambda: answered(db) >= 7 and server.reached("results"), "7 answers committed")
                else:
                    wait_for(lambda: server.reached(step), f"the {step} step")
                os.kill(first.pid, signal.SIGKILL)
                first.wait(timeout=HANG_GUARD_S)
                at_kill = answered(db)
                server.release(drop=True)
                resumed = start(url, out, model)
                stdout, _ = resumed.communicate(timeout=HANG_GUARD_S)
                sent = json.loads(stdout)["sent"] if resumed.returncode == 0 else None
                print(f"| {provider} | {step}: {label} | {at_kill} | {server.uploads} | {server.batches_created} | "
                      f"{sum(server.submissions.values())} | {len(server.submitted_twice())} | {answered(db)} | "
                      f"{sent} | {resumed.returncode} |")


if __name__ == "__main__":
    main()
