"""Local path throughput: psytest's local backend against llama.cpp's own batched rates on this machine.

Usage: python benchmarks/local_throughput.py [--model local/qwen2.5-0.5b] [--inventory bfi-44]
       [--mode probs|text] [--concurrency 1,4,16] [--repeats 2] [--compare-with /work/wt/base]

psytest answers every item of the inventory once (numbered template, original order) through the real
pipeline (:func:`psychometrics.run.directory.administer`: plan, worker pool, the backend, a committed SQLite
write per answer) into a fresh run directory, at each ``--concurrency`` (requests in flight).

* probability mode: the work is the tokens each prompt adds to the one before it (what one-at-a-time
  evaluation with prefix reuse must evaluate: 12.6 per BFI-44 item); psytest's rate is those tokens over
  its wall time, and the limit is llama.cpp's prompt-processing rate in one batch of 64 to 512 tokens (the
  best of them), measured here through the low-level API (:mod:`benchmarks.llama_limits`);
* text mode: the work is the reply tokens (greedy, ``--max-tokens``); the limit is llama.cpp's batched
  decoding rate with as many sequences as requests in flight.

``--compare-with PATH`` runs the same psytest measurement with ``PYTHONPATH=PATH`` (e.g. the checkout before
a change) in a subprocess, alternating with this checkout, and prints both and their ratio. Figures are the
best of ``--repeats`` (noise only slows a run); the machine's load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def unique_tokens(backend, planned) -> int:
    """Tokens one-at-a-time evaluation with prefix reuse evaluates for ``planned`` in order."""
    previous: list[int] = []
    total = 0
    for p in planned:
        tokens = backend.prompt_tokens(p.request)
        common = 0
        for a, b in zip(previous, tokens):
            if a != b:
                break
            common += 1
        total += len(tokens) - min(common, len(tokens) - 1)
        previous = tokens
    return total


def psytest_rates(model: str, inventory_id: str, mode: str, concurrencies: list[int], repeats: int,
                  max_tokens: int, threads: int | None, threads_batch: int | None) -> dict:
    """{concurrency: (items/s, work tokens/s)} of psytest's administer, best of ``repeats``."""
    from psychometrics.design.plan import Design, plan_requests
    from psychometrics.inventories.library import resolve_inventory
    from psychometrics.models import resolve_model
    from psychometrics.run.directory import administer
    from psychometrics.run.store import RunStore

    inventory = resolve_inventory(inventory_id)
    design = Design(modes=[mode], templates=["numbered"], option_orders=["original"],
                    max_tokens=max_tokens) if mode == "text" else Design(modes=[mode], templates=["numbered"],
                                                                         option_orders=["original"])
    out = {}
    for concurrency in concurrencies:
        best = None
        for _ in range(repeats):
            backend = resolve_model(model, threads=threads, threads_batch=threads_batch)
            planned = plan_requests([inventory], design, backend.name, backend.params)
            work = unique_tokens(backend, planned) if mode == "probs" else None
            with tempfile.TemporaryDirectory() as tmp:
                result = administer(backend, [inventory], design, Path(tmp) / "run", concurrency=concurrency)
                if mode == "text":
                    with RunStore(Path(tmp) / "run" / "responses.sqlite") as store:
                        work = sum(r.output_tokens or 0 for r in store.rows())
            assert result.stats.failed == 0 and result.stats.items_answered == len(planned)
            rate = (len(planned) / result.stats.elapsed_s, work / result.stats.elapsed_s)
            best = rate if best is None or rate[1] > best[1] else best
        out[concurrency] = best
    return out


def behave_rates(model: str, tasks: str, concurrencies: list[int], variants: int, threads, threads_batch) -> dict:
    """{concurrency: (conversations/s, reply tokens/s)} of ``psytest behave`` (greedy) on ``tasks``."""
    from psychometrics.behavior.runner import BehaviorDesign, behave
    from psychometrics.behavior.task import resolve_tasks
    from psychometrics.models import resolve_model

    chosen = resolve_tasks(tasks)
    out = {}
    for concurrency in concurrencies:
        backend = resolve_model(model, threads=threads, threads_batch=threads_batch)
        complete, produced = backend.complete, [0]

        async def counted(request, complete=complete, produced=produced):
            reply = await complete(request)
            produced[0] += reply.output_tokens or 0
            return reply

        backend.complete = counted
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            result = behave(backend, chosen, BehaviorDesign(variants=variants), Path(tmp) / "run",
                            concurrency=concurrency)
            elapsed = time.perf_counter() - started
        assert result.stats.failed == 0
        out[concurrency] = (result.stats.sent / elapsed, produced[0] / elapsed)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local/qwen2.5-0.5b")
    parser.add_argument("--inventory", default="bfi-44")
    parser.add_argument("--mode", choices=["probs", "text"], default="probs")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32, help="text mode: reply tokens at most")
    parser.add_argument("--threads", type=int, help="llama.cpp generation threads (default: psytest's)")
    parser.add_argument("--threads-batch", type=int, help="llama.cpp prompt-evaluation threads (default: psytest's)")
    parser.add_argument("--behave", metavar="TASKS", help="measure psytest behave on these tasks (text generation) "
                        "instead of the inventory")
    parser.add_argument("--variants", type=int, default=1, help="--behave: variants per task")
    parser.add_argument("--compare-with", metavar="PATH", help="also measure the psytest checkout at PATH")
    parser.add_argument("--json-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    if args.behave:
        args.mode = "text"
        measure = lambda: behave_rates(args.model, args.behave, concurrencies, args.variants,  # noqa: E731
                                       args.threads, args.threads_batch)
    else:
        measure = lambda: psytest_rates(args.model, args.inventory, args.mode, concurrencies, 1,  # noqa: E731
                                        args.max_tokens, args.threads, args.threads_batch)
    if args.json_child:
        print(json.dumps(measure()))
        return

    def before() -> dict:
        env = {**os.environ, "PYTHONPATH": args.compare_with}
        child = [sys.executable, __file__, "--json-child", "--model", args.model, "--inventory", args.inventory,
                 "--mode", args.mode, "--concurrency", args.concurrency, "--max-tokens", str(args.max_tokens),
                 "--variants", str(args.variants)] + (["--behave", args.behave] if args.behave else [])
        for flag, value in (("--threads", args.threads), ("--threads-batch", args.threads_batch)):
            if value is not None:
                child += [flag, str(value)]
        done = subprocess.run(child, env=env, capture_output=True, text=True, cwd=args.compare_with)
        if done.returncode != 0:
            raise SystemExit(f"the run at {args.compare_with} failed: {done.stderr[-2000:]}")
        return {int(k): tuple(v) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}

    ours: dict = {}
    theirs: dict = {}
    for _ in range(args.repeats):  # alternate before and after
        if args.compare_with:
            for c, rate in before().items():
                theirs[c] = rate if c not in theirs or rate[1] > theirs[c][1] else theirs[c]
        for c, rate in measure().items():
            ours[c] = rate if c not in ours or rate[1] > ours[c][1] else ours[c]

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from llama_limits import measure as llama_measure
    from psychometrics.models.local import LocalModel, resolve_local

    path, _ = resolve_local(args.model)
    defaults = LocalModel.__init__.__kwdefaults__
    threads = args.threads or defaults["threads"]
    threads_batch = args.threads_batch or defaults["threads_batch"]
    limits = llama_measure(str(path), "repack", [64, 256, 512], sorted(set(concurrencies)), 32, args.repeats,
                           threads, threads_batch)
    unit = "prompt tokens" if args.mode == "probs" else "reply tokens"
    what = f"psytest behave --tasks {args.behave}" if args.behave else f"{args.inventory} in {args.mode} mode"
    print(f"{args.model}, {what}; threads {threads}/{threads_batch}; "
          f"load average {os.getloadavg()[0]:.1f}; best of {args.repeats}")
    if args.mode == "probs":
        limit = max(limits["pp"].values())
        print(f"  llama.cpp limit: prompt processing {limit:.1f} tokens/s (best of batches of 64/256/512: "
              + ", ".join(f"{v:.1f}" for v in limits["pp"].values()) + ")")
    else:
        print("  llama.cpp limit: batched decoding " + ", ".join(f"N={n} {v:.1f}" for n, v in limits["tg"].items())
              + " tokens/s")
    for c in concurrencies:
        limit = max(limits["pp"].values()) if args.mode == "probs" else limits["tg"][c]
        line = f"  concurrency {c:3d}: after {ours[c][0]:6.2f} items/s {ours[c][1]:7.1f} {unit}/s = {ours[c][1] / limit:.2f} of the limit"
        if c in theirs:
            line += (f"; before {theirs[c][0]:6.2f} items/s {theirs[c][1]:7.1f}/s = {theirs[c][1] / limit:.2f}; "
                     f"after/before {ours[c][1] / theirs[c][1]:.2f}x")
        print(line)


if __name__ == "__main__":
    main()
