"""Items per second of the embedded models in each answer mode, and how many answers are valid.

Usage: python benchmarks/local_models.py [--inventory bfi-44] [--models local/qwen2.5-0.5b,local/smollm2-135m]

Each model answers every item once per mode (one option order, the numbered template, greedy decoding)
through the real pipeline into a temporary run directory. Printed per model and mode: items/s (wall time
of the sending loop, model load excluded), valid answers, and for probability mode the mean share of
probability the model put on the options at all.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from psychometrics.design.plan import Design
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models import resolve_model
from psychometrics.run.directory import administer
from psychometrics.run.store import RunStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", default="bfi-44")
    parser.add_argument("--models", default="local/qwen2.5-0.5b,local/smollm2-135m")
    args = parser.parse_args()
    inventory = resolve_inventory(args.inventory)
    print(f"{'model':24} {'mode':5} {'items':>5} {'items/s':>8} {'valid':>6} {'option mass':>11}")
    for model in args.models.split(","):
        for mode in ("text", "probs"):
            backend = resolve_model(model)
            t0 = time.perf_counter()
            backend._load() if hasattr(backend, "_load") else None
            load_s = time.perf_counter() - t0
            with tempfile.TemporaryDirectory() as tmp:
                result = administer(backend, [inventory], Design(modes=[mode]), Path(tmp))
                with RunStore(Path(tmp) / "responses.sqlite") as store:
                    rows = list(store.rows())
            valid = sum(r.outcome == "valid" for r in rows)
            mass = statistics.mean(r.option_mass for r in rows) if mode == "probs" else float("nan")
            print(f"{model:24} {mode:5} {len(rows):5d} {result.stats.per_second:8.2f} {valid:6d} {mass:11.3f}"
                  f"   (load {load_s:.1f} s)")


if __name__ == "__main__":
    main()
