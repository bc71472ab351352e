"""llama.cpp's own throughput on this machine, through llama-cpp-python's low-level API: the limits psytest's
local backend is measured against.

Usage: python benchmarks/llama_limits.py [--model local/qwen2.5-0.5b] [--pp 16,64,128,256,512] [--sequences 1,4,8,16]

* prompt processing (``pp``): one ``llama_decode`` of B new tokens of one sequence after a cached prefix of
  128 tokens (as a questionnaire prompt's new part follows the instructions it shares), tokens/s, B in ``--pp``;
* batched decoding (``tg``): N sequences sharing a 128-token prompt, each extended by one token per
  ``llama_decode`` of N tokens, ``--tokens`` steps, tokens/s summed over the sequences (what
  ``llama-batched-bench`` reports as S_TG), N in ``--sequences``.

Thread counts are psytest's defaults (1 for one-token decodes, 2 for batches) unless given. Kernel
configurations (``--configs``): ``repack`` (llama.cpp's default, which psytest uses: weights repacked for
the AVX2 matrix kernels, attention without flash attention) and ``invariant`` (no repacking, flash
attention: measured to give every row the same bits whatever else is in its batch, up to 63 rows per
physical batch, but not across KV-cache layouts; not used by psytest, kept for comparison). Each figure is
the best of ``--repeats`` (noise only slows a run); the machine's load is printed.
"""

from __future__ import annotations

import argparse
import os
import time

CONFIGS = {"repack": {"extra_bufts": True, "flash_attn": False}, "invariant": {"extra_bufts": False, "flash_attn": True}}


def open_context(model_path: str, *, extra_bufts: bool, flash_attn: bool, n_seq: int, n_ctx: int,
                 threads: int, threads_batch: int):
    """(model, context, batch) made with the low-level API only."""
    import llama_cpp as lc

    from psychometrics.models.llama_backends import ensure_cpu_backend

    ensure_cpu_backend()  # a build with runtime CPU dispatch loads its CPU kernels only when asked
    lc.llama_backend_init()
    mparams = lc.llama_model_default_params()
    mparams.use_extra_bufts = extra_bufts
    model = lc.llama_model_load_from_file(model_path.encode(), mparams)
    cparams = lc.llama_context_default_params()
    cparams.n_ctx, cparams.n_batch, cparams.n_ubatch = n_ctx, 512, 512
    cparams.n_seq_max, cparams.kv_unified = n_seq, True
    cparams.n_threads, cparams.n_threads_batch = threads, threads_batch
    cparams.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
    ctx = lc.llama_init_from_model(model, cparams)
    batch = lc.llama_batch_init(512, 0, n_seq)
    return model, ctx, batch


def decode(ctx, batch, entries) -> None:
    """``entries``: (token, position, seq ids, wants logits)."""
    import llama_cpp as lc

    for i, (token, pos, seqs, logits) in enumerate(entries):
        batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, pos, len(seqs), int(logits)
        for j, s in enumerate(seqs):
            batch.seq_id[i][j] = s
    batch.n_tokens = len(entries)
    code = lc.llama_decode(ctx, batch)
    if code != 0:
        raise RuntimeError(f"llama_decode returned {code}")


def measure(model_path: str, config: str, pp_sizes: list[int], sequences: list[int], tokens: int, repeats: int,
            threads: int, threads_batch: int, prefix: int = 128) -> dict:
    """{"pp": {B: tokens/s}, "tg": {N: tokens/s}} for one kernel configuration."""
    import llama_cpp as lc

    n_seq = max(sequences)
    model, ctx, batch = open_context(model_path, **CONFIGS[config], n_seq=n_seq,
                                     n_ctx=prefix + max(max(pp_sizes), n_seq * (tokens + 1)) + 64,
                                     threads=threads, threads_batch=threads_batch)
    mem = lc.llama_get_memory(ctx)
    vocab = lc.llama_model_get_vocab(model)
    n_vocab = lc.llama_vocab_n_tokens(vocab)
    token = lambda i: 1000 + (i * 7919) % (n_vocab - 2000)  # noqa: E731  any ordinary tokens
    out: dict = {"pp": {}, "tg": {}}
    try:
        decode(ctx, batch, [(token(i), i, [0], False) for i in range(prefix)])  # warm-up, and the prefix
        for size in pp_sizes:
            best = float("inf")
            for _ in range(repeats):
                lc.llama_memory_seq_rm(mem, 0, prefix, -1)
                started = time.perf_counter()
                decode(ctx, batch, [(token(prefix + i), prefix + i, [0], i == size - 1) for i in range(size)])
                best = min(best, time.perf_counter() - started)
            out["pp"][size] = size / best
        for n in sequences:
            best = float("inf")
            for _ in range(repeats):
                lc.llama_memory_seq_rm(mem, 0, prefix, -1)
                for s in range(1, n_seq):
                    lc.llama_memory_seq_rm(mem, s, -1, -1)
                for s in range(1, n):
                    lc.llama_memory_seq_cp(mem, 0, s, 0, prefix)
                started = time.perf_counter()
                for step in range(tokens):
                    decode(ctx, batch, [(token(s + step), prefix + step, [s], True) for s in range(n)])
                best = min(best, time.perf_counter() - started)
            out["tg"][n] = n * tokens / best
    finally:
        lc.llama_batch_free(batch)
        lc.llama_free(ctx)
        lc.llama_model_free(model)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local/qwen2.5-0.5b")
    parser.add_argument("--pp", default="16,64,128,256,512")
    parser.add_argument("--sequences", default="1,4,8,16")
    parser.add_argument("--tokens", type=int, default=32, help="decode steps per batched-decoding measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--threads-batch", type=int, default=2)
    parser.add_argument("--configs", default="repack")
    args = parser.parse_args()
    os.environ.setdefault("GGML_LOG_LEVEL", "error")
    from psychometrics.models.local import resolve_local

    path, _ = resolve_local(args.model)
    pp = [int(x) for x in args.pp.split(",")]
    seqs = [int(x) for x in args.sequences.split(",")]
    print(f"{args.model}, threads {args.threads}/{args.threads_batch}, load average {os.getloadavg()[0]:.1f}; "
          f"best of {args.repeats}")
    for config in args.configs.split(","):
        result = measure(str(path), config, pp, seqs, args.tokens, args.repeats, args.threads, args.threads_batch)
        print(f"  {config:9}  pp tokens/s: " + ", ".join(f"B={b} {v:.0f}" for b, v in result["pp"].items()))
        print(f"  {'':9}  tg tokens/s: " + ", ".join(f"N={n} {v:.1f}" for n, v in result["tg"].items()))


if __name__ == "__main__":
    main()
