"""Local path throughput: option-probability scoring against llama.cpp's raw prompt evaluation.

Usage: python benchmarks/local_throughput.py [--model local/qwen2.5-0.5b] [--inventory bfi-44] [--repeats 3]

psytest scores every item of the inventory once in probability mode through the real pipeline
(:func:`psychometrics.run.directory.administer`: plan, worker pool, the model's executor thread, a committed
SQLite write per answer) into a fresh run directory. The reference is ``Llama.eval`` alone, in the same
process on the same loaded model, over exactly the tokens those prompts need: each prompt (chat
template applied, tokenized beforehand, untimed) minus the prefix it shares with the previous one,
which stays in the KV cache in both cases. Both start from an empty cache, and they alternate
``--repeats`` times; medians are printed.

ratio = raw evaluation time / psytest's time for the same items (the target is >= 0.80), printed three
ways, because this machine's speed drifts by up to 40% between consecutive 7-second runs (measured: raw
evaluation alone took 6.8 to 10.0 s for the same tokens):

* best runs: fastest raw run / fastest psytest run (as ``timeit`` does: noise only ever slows a run);
* medians: median raw run / median psytest run;
* in-run: time inside ``Llama.eval`` (timed around each call psytest makes) / psytest's wall time, in
  the same run, so drift cancels. The tokens psytest hands to ``eval`` are counted and must equal the
  reference's unique tokens, so this is llama.cpp's raw time for exactly the reference's work.

Also printed: the rest of psytest's time per item (templating, tokenizing, the softmax over the
vocabulary, storing, scheduling).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def unique_suffixes(prompts: list[list[int]]) -> list[tuple[int, list[int]]]:
    """(tokens kept from the previous prompt, tokens to evaluate) per prompt, as prefix reuse needs them.
    At least one token is always evaluated (its logits are the answer)."""
    previous: list[int] = []
    plan = []
    for tokens in prompts:
        common = 0
        for a, b in zip(previous, tokens):
            if a != b:
                break
            common += 1
        common = min(common, len(tokens) - 1)
        plan.append((common, tokens[common:]))
        previous = tokens
    return plan


def raw_eval_seconds(llm, plan: list[tuple[int, list[int]]]) -> float:
    """Wall seconds of ``Llama.eval`` over ``plan``, starting from an empty cache."""
    llm.n_tokens = 0
    started = time.perf_counter()
    for keep, tokens in plan:
        llm.n_tokens = keep
        llm.eval(tokens)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local/qwen2.5-0.5b")
    parser.add_argument("--inventory", default="bfi-44")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4, help="psytest's worker pool (the CLI default)")
    parser.add_argument("--threads", type=int, help="llama.cpp generation threads (default: psytest's)")
    parser.add_argument("--threads-batch", type=int, help="llama.cpp prompt-evaluation threads (default: psytest's)")
    args = parser.parse_args()

    from psychometrics.design.plan import Design, plan_requests
    from psychometrics.inventories.library import resolve_inventory
    from psychometrics.models import resolve_model
    from psychometrics.run.directory import administer

    inventory = resolve_inventory(args.inventory)
    design = Design(modes=["probs"])
    backend = resolve_model(args.model, threads=args.threads, threads_batch=args.threads_batch)
    started = time.perf_counter()
    llm = backend._load()
    load_s = time.perf_counter() - started
    planned = plan_requests([inventory], design, backend.name, backend.params)
    plan = unique_suffixes([backend.prompt_tokens(p.request) for p in planned])
    unique = sum(len(tokens) for _, tokens in plan)
    total = sum(keep + len(tokens) for keep, tokens in plan)

    evaluate = llm.eval
    in_eval = [0.0]
    evaluated = [0]

    def timed_eval(tokens):  # the time psytest's own run spends inside llama.cpp, and on how many tokens
        started = time.perf_counter()
        try:
            evaluate(tokens)
        finally:
            in_eval[0] += time.perf_counter() - started
            evaluated[0] += len(tokens)

    ours, raw, inside = [], [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            llm.n_tokens = 0  # an empty cache, as for the raw evaluation
            in_eval[0], evaluated[0] = 0.0, 0
            llm.eval = timed_eval
            try:
                result = administer(backend, [inventory], design, Path(tmp) / "run", concurrency=args.concurrency)
            finally:
                llm.eval = evaluate
        assert result.stats.failed == 0 and result.stats.items_answered == len(planned)
        assert evaluated[0] == unique, f"psytest evaluated {evaluated[0]} tokens, the reference {unique}"
        ours.append(result.stats.elapsed_s)
        inside.append(in_eval[0])
        raw.append(raw_eval_seconds(llm, plan))
    ours_s, raw_s = statistics.median(ours), statistics.median(raw)
    n = len(planned)
    print(f"{args.model} (load {load_s:.1f} s), {args.inventory} in probability mode: {n} items, {total} prompt tokens, "
          f"{unique} evaluated after prefix reuse ({unique / n:.1f} per item); median of {args.repeats}")
    print(f"  psytest administer:  {n / ours_s:7.2f} items/s  {unique / ours_s:8.1f} tokens/s   "
          f"(runs: {', '.join(f'{s:.2f}' for s in ours)} s)")
    print(f"  llama.cpp eval only: {n / raw_s:7.2f} items/s  {unique / raw_s:8.1f} tokens/s   "
          f"(runs: {', '.join(f'{s:.2f}' for s in raw)} s)")
    share = statistics.median(i / o for i, o in zip(inside, ours))
    print(f"  ratio (target >= 0.80): best runs {min(raw) / min(ours):.2f}, medians {raw_s / ours_s:.2f}, "
          f"in-run {share:.2f} (psytest handed llama.cpp exactly the reference's {unique} tokens)")
    print(f"  psytest's own work per item, outside llama.cpp: "
          f"{1e3 * statistics.median(o - i for o, i in zip(ours, inside)) / n:.1f} ms")


if __name__ == "__main__":
    main()
