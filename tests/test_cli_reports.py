"""The report, compare, baseline, check and reproduce commands as a CI user meets them (exit codes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "psychometrics", *args], capture_output=True, text=True, timeout=300)


def administer(out: Path, model: str, seed: int = 0) -> None:
    result = cli("administer", "--model", model, "-i", "mini-ipip", "--option-orders", "original,reversed",
                 "--templates", "numbered,lettered", "--samples", "3", "--temperature", "1.0", "--seed", str(seed),
                 "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    administer(root / "trusted", "sim/extraversion=1,seed=3")
    administer(root / "rerun", "sim/extraversion=1,seed=3", seed=1)  # same model, new samples
    administer(root / "drifted", "sim/extraversion=-1,agreeableness=1.5,seed=3")  # deliberately shifted
    return root


def test_check_passes_on_a_rerun_and_fails_on_a_shifted_run(runs):
    baseline = runs / "baseline.json"
    made = cli("baseline", str(runs / "trusted"), "--out", str(baseline))
    assert made.returncode == 0 and baseline.exists(), made.stderr
    passed = cli("check", str(runs / "rerun"), "--baseline", str(baseline))
    assert passed.returncode == 0, passed.stdout + passed.stderr
    failed = cli("check", str(runs / "drifted"), "--baseline", str(baseline), "--json")
    assert failed.returncode == 1
    payload = json.loads(failed.stdout)
    failing = {row["scale"] for row in payload["rows"] if not row["within"]}
    assert {"E", "A"} <= failing and payload["passed"] is False


def test_check_rejects_bad_options(runs):
    result = cli("check", str(runs / "rerun"), "--baseline", str(runs / "missing.json"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    result = cli("check", str(runs / "rerun"), "--baseline", str(runs / "baseline.json"), "--unit", "furlongs")
    assert result.returncode == 2 and "--unit must be sd or raw" in result.stderr


def test_compare_flags_the_shifted_scales(runs, tmp_path):
    result = cli("compare", str(runs / "trusted"), str(runs / "drifted"), "--out", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["differences"]
    exceeding = {row["scale"] for row in rows if row.get("exceeds_noise")}
    assert {"E", "A"} <= exceeding
    assert (tmp_path / "differences.csv").exists() and (tmp_path / "compare.html").exists()
    same = json.loads(cli("compare", str(runs / "trusted"), str(runs / "rerun"), "--json").stdout)["differences"]
    assert sum(bool(row.get("exceeds_noise")) for row in same) <= 1


def test_report_and_reproduce_commands(runs):
    report = cli("report", str(runs / "trusted"), "--json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)
    assert (runs / "trusted" / "report" / "report.html").exists()
    reproduced = cli("reproduce", str(runs / "trusted"), "--rerun")
    assert reproduced.returncode == 0, reproduced.stdout + reproduced.stderr
    csv = runs / "trusted" / "analysis" / "score_summary.csv"
    csv.write_text(csv.read_text().replace("mini-ipip,text,scale,E,", "mini-ipip,text,scale,E,9", 1))
    tampered = cli("reproduce", str(runs / "trusted"))
    assert tampered.returncode == 1
