"""Peak memory and time of ``psytest score`` on a run of a million stored responses.

Usage: python benchmarks/store_memory.py [--cells 3334] [--store DIR] [--budget-gb 2] [--no-structure]

Builds a run directory as ``psytest administer`` would leave it for IPIP-NEO-300 answered in 3,334
design cells (2 option orders x 1,667 samples: 1,000,200 responses, one item per request): the real
manifest and prompts, and per response a row written with :meth:`RunStore.write` (inside one outer
transaction per 50,000 requests instead of one per request, so building takes a minute, not an hour).
Answers come from five latent traits per cell with graded 1..5 responses, keyed as the inventory says;
5% of cells have three unparseable text replies. Then ``psytest score RUN`` runs end to end (every table, EFA and
CFA included unless ``--no-structure``) in a subprocess; its peak resident memory is read from
``getrusage(RUSAGE_CHILDREN)`` and printed against the budget and the store's size.

Budget: 2 GB. The analysis should fit with room to spare on an 8 GB laptop or a 7 GB CI runner next to
a browser or a test suite; the store itself is a few hundred megabytes, so 2 GB leaves the tables a
few times the raw data. ``--store DIR`` keeps the built run there and reuses it on the next call.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

INVENTORY = "ipip-neo-300"
COMMIT_EVERY = 50_000


def build_run(run_dir: Path, cells: int, seed: int = 7) -> int:
    """Write the manifest and ``cells`` x 300 responses; returns the number of rows."""
    from psychometrics.design.plan import Design, messages_hash, plan_requests
    from psychometrics.inventories.library import resolve_inventory
    from psychometrics.models.simulated import SimulatedRespondent
    from psychometrics.run.manifest import ContentRef, QuestionnaireManifest, write_manifest
    from psychometrics.run.owner import RESPONSES
    from psychometrics.run.store import ResponseRow, RunStore

    inventory = resolve_inventory(INVENTORY)
    samples = (cells + 1) // 2
    design = Design(option_orders=["original", "reversed"], samples=samples, temperature=0.7, seed=seed)
    backend = SimulatedRespondent("sim/seed=1")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(run_dir, QuestionnaireManifest(
        model=backend.name, backend_params=backend.params, design=design,
        inventories=[ContentRef(id=inventory.id, content_hash=inventory.content_hash)],
        requests_planned=2 * samples * len(inventory.items), inventory_sources={inventory.id: inventory.id},
    ), replace=True)
    # One planned request per (option order, item) gives the real prompts, labels and conditions;
    # the samples differ only in their sample number and answer.
    planned = plan_requests([inventory], design.model_copy(update={"samples": 1}), backend.name, backend.params)
    by_order: dict[str, list] = {}
    for request in planned:
        by_order.setdefault(request.condition.option_order, []).append(request)
    blocks = list(by_order.values())
    scale_of = {item.id: inventory.scale_of_item[item.id] for item in inventory.items}
    scales = sorted(set(scale_of.values()))
    rng = np.random.default_rng(seed)
    rows_written = 0
    with RunStore(run_dir / RESPONSES) as store:
        store._transaction = contextlib.nullcontext  # one outer transaction per batch, not one per request
        store.conn.execute("BEGIN")
        hashes = {request.request_id: messages_hash(request.prompt) for request in planned}
        for request in planned:
            store.save_prompt(hashes[request.request_id], [[m.role, m.content] for m in request.prompt.messages])
        for cell in range(cells):
            block = blocks[cell % len(blocks)]
            theta = dict(zip(scales, rng.standard_normal(len(scales))))
            noise = rng.standard_normal(len(block))
            # 5% of cells have a few unparseable replies; the rest are complete questionnaires (EFA and
            # CFA use complete cells only)
            invalid = np.zeros(len(block), dtype=bool)
            if rng.random() < 0.05:
                invalid[rng.choice(len(block), size=3, replace=False)] = True
            for index, request in enumerate(block):
                item = request.items[0]
                sign = -1.0 if item.reverse_keyed else 1.0
                value = int(np.digitize(1.2 * sign * theta[scale_of[item.id]] + noise[index], [-1.5, -0.5, 0.5, 1.5]) + 1)
                prompt = request.prompt
                position = list(prompt.position_values).index(value)
                condition = {**request.condition.as_dict(), "sample": cell // len(blocks)}
                bad = bool(invalid[index])
                row = ResponseRow(
                    request_id=hashlib.sha256(f"{request.request_id}:{cell}".encode()).hexdigest(),
                    inventory=inventory.id, item_id=item.id, item_index=0, condition=condition,
                    messages_hash=hashes[request.request_id], choices=list(prompt.choices),
                    position_values=list(prompt.position_values), mode="text",
                    raw_reply="I would rather not rate myself." if bad else prompt.choices[position],
                    choice_logprobs=None, outcome="unparseable" if bad else "valid",
                    parse_method=None if bad else "strict", position=None if bad else position,
                    value=None if bad else float(value), latency_s=0.4, input_tokens=80, output_tokens=2,
                )
                store.write([row])
                rows_written += 1
                if rows_written % COMMIT_EVERY == 0:
                    store.conn.execute("COMMIT")
                    store.conn.execute("BEGIN")
        store.conn.execute("COMMIT")
    return rows_written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=3334, help="design cells (x 300 responses each)")
    parser.add_argument("--store", type=Path, help="keep the run directory here (reused if it exists)")
    parser.add_argument("--budget-gb", type=float, default=2.0)
    parser.add_argument("--no-structure", action="store_true", help="skip EFA and CFA in psytest score")
    args = parser.parse_args()

    temporary = None
    if args.store is None:
        temporary = tempfile.mkdtemp(prefix="psytest-memory-")
        run_dir = Path(temporary) / "run"
    else:
        run_dir = args.store
    try:
        database = run_dir / "responses.sqlite"
        if database.exists():
            rows = _count(database)
            print(f"reusing {run_dir}: {rows:,} responses")
        else:
            started = time.perf_counter()
            rows = build_run(run_dir, args.cells)
            print(f"built {run_dir}: {rows:,} responses in {time.perf_counter() - started:.0f} s")
        size_mb = sum(p.stat().st_size for p in run_dir.glob("responses.sqlite*")) / 1e6

        entry = shutil.which("psytest", path=str(Path(sys.executable).parent))
        command = [entry] if entry else [sys.executable, "-m", "psychometrics"]
        command += ["score", str(run_dir), "--out", str(run_dir / "analysis")]
        if args.no_structure:
            command.append("--no-structure")
        limit = int(max(3 * args.budget_gb, 6.0) * 2**30)  # fail with MemoryError rather than swamp the machine

        def cap_memory() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        started = time.perf_counter()
        result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=cap_memory)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"psytest score failed (exit {result.returncode}, address space capped at "
                             f"{limit / 2**30:.0f} GB): {result.stderr.strip()[-2000:]}")
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kilobytes on Linux
        budget_mb = args.budget_gb * 1024
        print(f"psytest score{' --no-structure' if args.no_structure else ''} on {rows:,} responses "
              f"(store {size_mb:.0f} MB): {elapsed:.1f} s, peak RSS {peak_mb:.0f} MB")
        print(f"  ratio to the {args.budget_gb:g} GB budget: {peak_mb / budget_mb:.2f} (< 1 is within budget); "
              f"peak RSS / store size: {peak_mb / size_mb:.1f}")
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def _count(database: Path) -> int:
    import sqlite3

    with contextlib.closing(sqlite3.connect(database)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])


if __name__ == "__main__":
    main()
