"""CLI start-up: ``psytest --help`` against a bare ``python -c pass``, each in a fresh process.

Usage: python benchmarks/cli_startup.py [--runs 21] [--compare-with PATH]

Both commands run alternately ``--runs`` times as subprocesses of the venv's interpreter (the
``psytest`` entry point is what users type); the medians of their wall times and the ratio are
printed, with psytest's own cost (the difference) and the modules behind it (``-X importtime``, top
five by cumulative time). ``psytest --help`` must not import numpy, pandas, litellm or llama.cpp
(tests/test_packaging_and_cli.py checks that), so this is the price of Python, typer and the command
definitions only.

``--compare-with PATH`` (e.g. a checkout of an earlier commit) times ``python -m psychometrics --help``
with ``PYTHONPATH=PATH`` (before) and with this tree (after), alternating with the bare interpreter,
and prints both, their ratios to ``python -c pass`` and after / before.

Bytecode is cached as in an installed package (in a directory of its own, :func:`installed_env`): an
environment with ``PYTHONDONTWRITEBYTECODE`` would otherwise compile every psytest module at each start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent  # this tree: the "after" side of --compare-with


def installed_env() -> dict:
    """The environment with bytecode cached, as in an installed package: PYTHONDONTWRITEBYTECODE dropped and
    the cache kept apart (PYTHONPYCACHEPREFIX in the temporary directory), so no checkout is written to."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "psytest-cli-startup-pycache")
    return env


def wall_s(command: list[str], env: dict | None = None, cwd: str | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env, cwd=cwd)
    return time.perf_counter() - started


def compare(before: str, runs: int) -> None:
    """``python -m psychometrics --help`` from ``before`` and from this tree, alternating with ``python -c pass``."""
    command = [sys.executable, "-m", "psychometrics", "--help"]
    bare = [sys.executable, "-c", "pass"]
    envs = {"before": {**installed_env(), "PYTHONPATH": os.path.realpath(before)},
            "after": {**installed_env(), "PYTHONPATH": str(ROOT)}}
    neutral = tempfile.gettempdir()  # python -m puts the working directory first on sys.path: not a checkout
    for env in envs.values():
        wall_s(command, env, neutral)  # warm the file cache (and the bytecode)
    times: dict[str, list[float]] = {"before": [], "after": [], "bare": []}
    for run in range(runs):
        for side in ("before", "after") if run % 2 == 0 else ("after", "before"):
            times[side].append(wall_s(command, envs[side], neutral))
        times["bare"].append(wall_s(bare, installed_env(), neutral))
    median = {side: statistics.median(found) for side, found in times.items()}
    print(f"python -m psychometrics --help, median of {runs} runs each, alternating; python -c pass "
          f"{median['bare'] * 1e3:.0f} ms")
    for side in ("before", "after"):
        print(f"{side:>6} (PYTHONPATH={envs[side]['PYTHONPATH']}): {median[side] * 1e3:.0f} ms, "
              f"{median[side] / median['bare']:.1f}x python -c pass")
    print(f"after / before: {median['after'] / median['before']:.2f}")


def slowest_imports(top: int = 5) -> list[tuple[str, float]]:
    """(module, cumulative import ms) of the slowest modules ``psychometrics.cli`` imports directly."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import psychometrics.cli"],
                            capture_output=True, text=True, check=True)
    children: list[tuple[str, float]] = []
    for line in result.stderr.splitlines():  # children are listed before their parent, indented by 2
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name, depth = parts[2].strip(), (len(parts[2]) - len(parts[2].lstrip()) - 1) // 2
        if depth == 1:
            children.append((name, int(parts[1]) / 1e3))
        elif depth == 0:
            if name == "psychometrics.cli":
                return sorted(children, key=lambda row: row[1], reverse=True)[:top]
            children = []
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--compare-with", default=None, metavar="PATH",
                        help="also time psytest imported from PATH (before), alternating with this tree (after)")
    args = parser.parse_args()
    if args.compare_with:
        compare(args.compare_with, args.runs)
        return
    entry = shutil.which("psytest", path=str(Path(sys.executable).parent)) or shutil.which("psytest")
    psytest = [entry, "--help"] if entry else [sys.executable, "-m", "psychometrics", "--help"]
    bare = [sys.executable, "-c", "pass"]
    env = installed_env()
    wall_s(psytest, env), wall_s(bare, env)  # warm the file cache and the bytecode cache
    times: dict[str, list[float]] = {"psytest": [], "bare": []}
    for _ in range(args.runs):
        times["psytest"].append(wall_s(psytest, env))
        times["bare"].append(wall_s(bare, env))
    cli, python = statistics.median(times["psytest"]), statistics.median(times["bare"])
    print(f"{' '.join(Path(psytest[0]).name if i == 0 else a for i, a in enumerate(psytest))}: "
          f"median {cli * 1e3:.0f} ms of {args.runs} runs (min {min(times['psytest']) * 1e3:.0f} ms)")
    print(f"python -c pass: median {python * 1e3:.0f} ms (min {min(times['bare']) * 1e3:.0f} ms)")
    print(f"ratio {cli / python:.1f}; psytest's own start-up {1e3 * (cli - python):.0f} ms")
    print("slowest imports of psychometrics.cli (cumulative ms): "
          + ", ".join(f"{name} {ms:.0f}" for name, ms in slowest_imports()))


if __name__ == "__main__":
    main()
