"""CLI start-up: ``psytest --help`` against a bare ``python -c pass``, each in a fresh process.

Usage: python benchmarks/cli_startup.py [--runs 21]

Both commands run alternately ``--runs`` times as subprocesses of the venv's interpreter (the
``psytest`` entry point is what users type); the medians of their wall times and the ratio are
printed, with psytest's own cost (the difference) and the modules behind it (``-X importtime``, top
five by cumulative time). ``psytest --help`` must not import numpy, pandas, litellm or llama.cpp
(tests/test_packaging_and_cli.py checks that), so this is the price of Python, typer and the command
definitions only.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def wall_s(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


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
    args = parser.parse_args()
    entry = shutil.which("psytest", path=str(Path(sys.executable).parent)) or shutil.which("psytest")
    psytest = [entry, "--help"] if entry else [sys.executable, "-m", "psychometrics", "--help"]
    bare = [sys.executable, "-c", "pass"]
    wall_s(psytest), wall_s(bare)  # warm the file cache
    times: dict[str, list[float]] = {"psytest": [], "bare": []}
    for _ in range(args.runs):
        times["psytest"].append(wall_s(psytest))
        times["bare"].append(wall_s(bare))
    cli, python = statistics.median(times["psytest"]), statistics.median(times["bare"])
    print(f"{' '.join(Path(psytest[0]).name if i == 0 else a for i, a in enumerate(psytest))}: "
          f"median {cli * 1e3:.0f} ms of {args.runs} runs (min {min(times['psytest']) * 1e3:.0f} ms)")
    print(f"python -c pass: median {python * 1e3:.0f} ms (min {min(times['bare']) * 1e3:.0f} ms)")
    print(f"ratio {cli / python:.1f}; psytest's own start-up {1e3 * (cli - python):.0f} ms")
    print("slowest imports of psychometrics.cli (cumulative ms): "
          + ", ".join(f"{name} {ms:.0f}" for name, ms in slowest_imports()))


if __name__ == "__main__":
    main()
