"""Many requests per llama.cpp batch: parallel sequences over shared prompt prefixes in one KV cache.

:class:`BatchRunner` owns a llama.cpp context with many sequence ids over one unified KV cache, and a
thread that evaluates whatever jobs are waiting together, one ``llama_decode`` per step:

* a *scoring* job (probability mode) is one or more *queries* (prompt tokens and the positions whose next
  token log-probabilities are wanted); it is done after the step that evaluates it;
* a *generation* job (text mode) is a prompt and a sampler; its prompt is evaluated in one step, then it
  adds one token to every following step until the reply is complete. New jobs join a step while others
  are generating (continuous batching), so several conversations decode in one batch.

Prefix sharing: every live sequence (in use, or kept after its job finished) has its evaluated tokens
recorded. A new query starts from the live sequence sharing its longest prefix: a finished one is taken
over (its cells past the shared prefix removed), a busy one has its prefix cells copied into a fresh
sequence (``llama_memory_seq_cp``; in a unified cache that adds the sequence id to the cells, nothing is
recomputed). The tokens a step evaluates form a trie: a token shared by several queries of the step (a
common item prefix, the prompt all of one item's multi-token labels extend) is evaluated once, with every
sequence that needs it. At least one token of every query is evaluated, since its logits are the answer.

Numbers: a request evaluated alone (one job waiting) runs exactly the computation llama-cpp-python's
``Llama.eval`` ran for it (its new tokens after the cached prefix, in one sequence, in batches of 512), and
gives the same bits (tested). Evaluated together with others, its tokens are rows of a larger matrix
product, and llama.cpp's CPU kernels depend on the batch: repacked weights go through a 4-row kernel
except for the last rows of a batch, and attention sums its cells in SIMD lanes set by where they sit in
the cache; with 8-bit activations a last-bit change can move a rounding step. Measured against the same
requests at ``--concurrency 1`` (one at a time), 8 in flight, on the portable (AVX2) build and the runtime
dispatch build's AVX-512 kernels: Qwen 0.5B on BFI-44 moved label probabilities by up to 0.014 and
log-probabilities (labels of probability >= 0.05) by up to 0.072 nats, the most probable label changing on
0-1 of 44 items; SmolLM2 135M moves more: up to 0.034 in probability and 0.28 nats (Mini-IPIP, BFI-44).
:data:`BATCH_PROB_TOL` and :data:`BATCH_LOGPROB_TOL` are the tested bounds, about twice the largest
measured. Greedy replies are the same tokens
unless two candidates are that close. Which requests share a batch depends on timing, so runs at a
concurrency above 1 reproduce within that tolerance, not bit for bit; at ``--concurrency 1`` every
request is evaluated alone, bit for bit as before.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

#: Largest difference between a label's probability scored in a batch with other requests and the same
#: request scored alone: about twice the largest measured (0.014 with Qwen 0.5B on BFI-44, 0.034 with
#: SmolLM2 135M on Mini-IPIP, either build), since which requests share a batch varies from run to run.
BATCH_PROB_TOL = 0.07
#: ... and between their log-probabilities (nats), for labels of probability at least BATCH_PROB_TOL
#: (measured up to 0.072 with Qwen, 0.28 with SmolLM2 on the AVX-512 kernels). Improbable labels, far in
#: the tail, move more in log terms for a probability change under 0.002.
BATCH_LOGPROB_TOL = 0.5


@dataclass
class Query:
    """Tokens to evaluate in one sequence, and at which positions the next-token log-probabilities of
    which tokens are wanted: ``wanted`` is ``[(position, [token ids])]``."""

    tokens: list[int]
    wanted: list[tuple[int, list[int]]]


@dataclass
class ScoreJob:
    """Probability mode: the log-probabilities asked for by every query (same shape as ``wanted``)."""

    queries: list[Query]
    result: list[list[list[float]]] | None = None


@dataclass
class GenerateJob:
    """Text mode: a prompt, the sampler's settings and the reply's stopping rules (as llama-cpp-python's
    ``create_completion`` applies them)."""

    tokens: list[int]
    max_tokens: int
    temperature: float
    seed: int
    stop: list[bytes]
    result: tuple[str, int, int, str] | None = None  # text, prompt tokens, reply tokens, finish reason


class _Waiting:
    """A submitted job: ``done`` is set (and ``callback(self)`` called, on the runner's thread) when its
    result or ``error`` is there."""

    def __init__(self, job, callback=None):
        self.job, self.callback, self.error = job, callback, None
        self._event = threading.Event()

    def finish(self, error: BaseException | None = None) -> None:
        self.error = error
        self._event.set()
        if self.callback is not None:
            self.callback(self)

    def wait(self) -> None:
        self._event.wait()


@dataclass
class _Sequence:
    """A live sequence of the KV cache: its evaluated tokens, and the job using it (None: kept for reuse)."""

    seq_id: int
    tokens: list[int]
    owner: Any = None
    last_used: int = 0


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    # Compare in blocks first (list slices compare in C), then token by token.
    step = 64
    while i + step <= n and a[i:i + step] == b[i:i + step]:
        i += step
    while i < n and a[i] == b[i]:
        i += 1
    return i


def log_softmax(logits):
    """log-softmax of float32 logits in float64 (as the one-at-a-time path always computed it)."""
    import numpy as np

    values = logits.astype(np.float64)
    top = values.max()
    return values - (top + math.log(float(np.exp(values - top).sum())))


class _Generation:
    """One text reply being decoded: the sampler chain and ``create_completion``'s stopping rules."""

    def __init__(self, runner: "BatchRunner", job: GenerateJob):
        import llama_cpp as lc

        self.job, self.runner = job, runner
        self.completion: list[int] = []
        self.multibyte_fix = 0
        max_tokens = job.max_tokens
        if max_tokens is None or max_tokens <= 0:
            max_tokens = runner.n_ctx - len(job.tokens)
        self.max_tokens = max_tokens if max_tokens + len(job.tokens) < runner.n_ctx else runner.n_ctx - len(job.tokens)
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        add = lambda s: lc.llama_sampler_chain_add(chain, s)  # noqa: E731
        add(lc.llama_sampler_init_penalties(runner.n_vocab, 64, 1.0, 0.0, 0.0))
        t = job.temperature
        if t < 0.0:
            add(lc.llama_sampler_init_dist(job.seed))
        elif t == 0.0:
            add(lc.llama_sampler_init_greedy())
        else:
            add(lc.llama_sampler_init_top_k(40))
            add(lc.llama_sampler_init_typical(1.0, 1))
            add(lc.llama_sampler_init_top_p(0.95, 1))
            add(lc.llama_sampler_init_min_p(0.05, 1))
            add(lc.llama_sampler_init_temp(t))
            add(lc.llama_sampler_init_dist(job.seed))
        self.chain = chain

    def close(self) -> None:
        import llama_cpp as lc

        if self.chain is not None:
            lc.llama_sampler_free(self.chain)
            self.chain = None

    def accept(self, token: int) -> bool:
        """Take a sampled token; True when the reply is complete (``job.result`` set)."""
        import llama_cpp as lc

        runner, job = self.runner, self.job
        detok = runner.detokenize
        if lc.llama_vocab_is_eog(runner.vocab, token):
            return self._finish(detok(self.completion), "stop")
        self.completion.append(token)
        all_text = detok(self.completion)
        for k, char in enumerate(all_text[-3:]):
            k = 3 - k
            for num, pattern in ((2, 192), (3, 224), (4, 240)):
                if num > k and pattern & char == pattern:
                    self.multibyte_fix = num - k
        if self.multibyte_fix > 0:
            self.multibyte_fix -= 1
            return False
        stops = [s for s in job.stop if s in all_text]
        if stops:
            return self._finish(all_text[: all_text.index(stops[0])], "stop")
        if len(self.completion) >= self.max_tokens:
            return self._finish(all_text, "length")
        return False

    def _finish(self, text: bytes, reason: str) -> bool:
        self.job.result = (text.decode("utf-8", errors="ignore"), len(self.job.tokens), len(self.completion), reason)
        self.close()
        return True


class BatchRunner:
    """A llama.cpp context with ``n_seq`` sequences over one KV cache of ``n_ctx * cache_factor`` cells,
    evaluating waiting jobs together on its own thread (module docstring)."""

    def __init__(self, llm, model, *, n_ctx: int, n_seq: int = 32, cache_factor: int = 2, n_batch: int = 512,
                 threads: int = 1, threads_batch: int = 2, max_waiting_tokens: int = 4096):
        import llama_cpp as lc

        self.llm, self.n_ctx, self.n_batch = llm, n_ctx, n_batch
        self.n_seq = max(1, min(n_seq, int(lc.llama_max_parallel_sequences())))
        self.max_step_tokens = max_waiting_tokens
        # llama-cpp-python's own context settings (as Llama.eval ran with), with many sequences
        params = lc.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_ctx = n_ctx * max(1, cache_factor)
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = self.n_seq
        params.kv_unified = True
        params.n_threads, params.n_threads_batch = threads, threads_batch
        self.cells = params.n_ctx
        ctx = lc.llama_init_from_model(model, params)
        if not ctx:
            from psychometrics.errors import PsytestError

            raise PsytestError(f"llama.cpp could not create a context of {params.n_ctx} tokens for "
                               f"{self.n_seq} sequences (out of memory?)")
        self.ctx = ctx
        self.mem = lc.llama_get_memory(ctx)
        self.vocab = lc.llama_model_get_vocab(model)
        self.n_vocab = llm.n_vocab()
        self.batch = lc.llama_batch_init(n_batch, 0, self.n_seq)
        self.detokenize: Callable[[list[int]], bytes] = llm.detokenize
        self._live: dict[int, _Sequence] = {}
        self._free = list(range(self.n_seq - 1, -1, -1))
        self._clock = 0
        self._generating: list[tuple[_Sequence, _Generation, _Waiting]] = []
        self._pending_token: dict[int, int] = {}
        self._queue: "queue.SimpleQueue[_Waiting | None]" = queue.SimpleQueue()
        self._backlog: list[_Waiting] = []
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._last_jobs, self._last_step_s = 0, 0.0  # jobs answered by the last step, and its time
        #: counters for benchmarks: decode steps, tokens evaluated, jobs per step
        self.stats = {"steps": 0, "tokens": 0, "jobs": 0, "decode_s": 0.0}

    # -- public -----------------------------------------------------------------------------------------
    def submit(self, job, callback=None) -> _Waiting:
        """Queue ``job`` (ScoreJob or GenerateJob); ``callback(handle)`` is called on the runner's thread
        when it is done (or wait on the returned handle)."""
        waiting = _Waiting(job, callback)
        with self._lock:
            if self._closed:
                raise RuntimeError("the batch runner is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="llama-batch", daemon=True)
                self._thread.start()
        self._queue.put(waiting)
        return waiting

    def run(self, job):
        """Submit ``job`` and wait for it (from any thread but the runner's own)."""
        waiting = self.submit(job)
        waiting.wait()
        if waiting.error is not None:
            raise waiting.error
        return job.result

    def evaluate(self, tokens: list[int]) -> None:
        """Evaluate ``tokens`` (reusing the longest cached prefix) and keep them cached: for timing."""
        self.run(ScoreJob([Query(list(tokens), [(len(tokens) - 1, [0])])]))

    def forget(self) -> None:
        """Drop every cached sequence (the runner must be idle): the next job starts from an empty cache."""
        import llama_cpp as lc

        for seq_id in list(self._live):
            lc.llama_memory_seq_rm(self.mem, seq_id, -1, -1)
        self._reset_cache()

    def close(self) -> None:
        import llama_cpp as lc

        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join()
        if self.ctx is not None:
            lc.llama_batch_free(self.batch)
            lc.llama_free(self.ctx)
            self.ctx = None

    # -- the loop ---------------------------------------------------------------------------------------
    def _loop(self) -> None:
        stop = False
        while True:
            if not self._generating and not self._backlog:
                if stop:
                    return
                item = self._queue.get()  # idle: block for work
                if item is None:
                    stop = True
                    continue
                self._backlog.append(item)
            # Everything waiting joins this step. When fewer requests wait than the last step answered, the
            # rest are probably on their way (their callers storing the answers just given): wait for them
            # a little, at most a tenth of the last step's time, so steps stay full instead of alternating
            # between one request and the others.
            deadline = time.perf_counter() + min(0.05, 0.1 * self._last_step_s)
            while True:
                try:
                    if len(self._backlog) >= self._last_jobs or self._generating or stop:
                        item = self._queue.get_nowait()
                    else:
                        item = self._queue.get(timeout=max(0.0, deadline - time.perf_counter()))
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                else:
                    self._backlog.append(item)
            try:
                self._step()
            except BaseException as exc:  # a bug in a step fails the jobs in hand, never the thread
                for _seq, gen, waiting in self._generating:
                    gen.close()
                    waiting.finish(exc)
                self._generating = []
                for waiting in self._backlog:
                    waiting.finish(exc)
                self._backlog = []
                self._reset_cache()

    def _reset_cache(self) -> None:
        import llama_cpp as lc

        lc.llama_memory_clear(self.mem, True)
        self._live.clear()
        self._pending_token.clear()
        self._free = list(range(self.n_seq - 1, -1, -1))

    # -- sequences --------------------------------------------------------------------------------------
    def _release(self, seq: _Sequence) -> None:
        """The job using ``seq`` is done: keep its cells for prefix reuse."""
        seq.owner = None
        self._clock += 1
        seq.last_used = self._clock

    def _evict_one(self, keep: set[int]) -> bool:
        import llama_cpp as lc

        idle = [s for s in self._live.values() if s.owner is None and s.seq_id not in keep]
        if not idle:
            return False
        victim = min(idle, key=lambda s: s.last_used)
        lc.llama_memory_seq_rm(self.mem, victim.seq_id, -1, -1)
        del self._live[victim.seq_id]
        self._free.append(victim.seq_id)
        return True

    def _start_sequence(self, tokens: list[int], owner, claimed: set[int]) -> tuple[_Sequence, int] | None:
        """A sequence for ``tokens`` holding their longest cached prefix, and that prefix's length (at
        most ``len(tokens) - 1``); None when every sequence id is busy. An idle sequence with the longest
        prefix is taken over (its other cells dropped); a busy one has its prefix cells copied."""
        import llama_cpp as lc

        best, best_key = None, (0, False)
        for seq in self._live.values():
            key = (_common_prefix(seq.tokens, tokens), seq.owner is None and seq.seq_id not in claimed)
            if key > best_key:
                best, best_key = seq, key
        keep = min(best_key[0], len(tokens) - 1)
        if best is not None and keep > 0 and best_key[1]:
            lc.llama_memory_seq_rm(self.mem, best.seq_id, keep, -1)
            best.tokens = best.tokens[:keep]
            best.owner = owner
            return best, keep
        if not self._free and not self._evict_one(claimed | ({best.seq_id} if best is not None else set())):
            return None
        seq_id = self._free.pop()
        if best is not None and keep > 0 and best.seq_id in self._live:
            lc.llama_memory_seq_cp(self.mem, best.seq_id, seq_id, 0, keep)
        else:
            keep = 0
        seq = _Sequence(seq_id, list(tokens[:keep]), owner)
        self._live[seq_id] = seq
        return seq, keep

    # -- one step ---------------------------------------------------------------------------------------
    def _step(self) -> None:
        # (token, position, seq ids, outputs), in an order where every token's prefix in its sequences
        # comes first. Sequences' token lists change only after the step's decode succeeded, so a query
        # started in this step copies only cells that exist.
        entries: list[list] = []
        grown: list[tuple[_Sequence, list[int]]] = []
        for seq, gen, waiting in self._generating:
            token = self._pending_token.pop(seq.seq_id)
            entries.append([token, len(seq.tokens), [seq.seq_id], [("gen", seq, gen, waiting)]])
            grown.append((seq, seq.tokens + [token]))
        claimed = {seq.seq_id for seq, _, _ in self._generating}
        admitted: list[_Waiting] = []
        scoring: list[tuple[_Waiting, list[_Sequence]]] = []
        budget = self.max_step_tokens - len(entries)
        trie: dict[tuple[int, int], list] = {}  # (parent entry's index or -1, token) -> entry
        while self._backlog:
            waiting = self._backlog[0]
            job = waiting.job
            queries = job.queries if isinstance(job, ScoreJob) else [Query(job.tokens, [])]
            if len(claimed) + len(queries) > self.n_seq and (claimed or admitted):
                break
            starts = []
            new_tokens = 0
            for query in queries:
                start = self._start_sequence(query.tokens, waiting, claimed)
                if start is None:
                    break
                starts.append(start)
                claimed.add(start[0].seq_id)
                new_tokens += len(query.tokens) - start[1]
            if len(starts) < len(queries) or (new_tokens > budget and (admitted or entries)):
                for seq, _ in starts:  # not in this step: the sequences are idle again (their prefix stays)
                    claimed.discard(seq.seq_id)
                    self._release(seq)
                if len(starts) < len(queries) and not admitted and not entries:
                    self._backlog.pop(0)
                    waiting.finish(RuntimeError(f"a request needs {len(queries)} sequences at once; "
                                                f"at most {self.n_seq}"))
                    continue
                break
            self._backlog.pop(0)
            admitted.append(waiting)
            budget -= new_tokens
            seqs = []
            for number, (query, (seq, keep)) in enumerate(zip(queries, starts)):
                seqs.append(seq)
                outputs: dict[int, tuple]
                if isinstance(job, GenerateJob):
                    outputs = {len(query.tokens) - 1: ("gen", seq, None, waiting)}
                else:
                    outputs = {pos: ("score", seq, (number, w), waiting) for w, (pos, _) in enumerate(query.wanted)}
                parent = -1
                for pos, token in enumerate(query.tokens):
                    entry = trie.get((parent, token))
                    if entry is None:
                        entry = [token, pos, [], [], len(entries)]
                        entries.append(entry)
                        trie[(parent, token)] = entry
                    parent = entry[4]
                    if pos >= keep:
                        entry[2].append(seq.seq_id)
                    if pos in outputs:
                        entry[3].append(outputs[pos])
                grown.append((seq, list(query.tokens)))
            if isinstance(job, ScoreJob):
                job.result = [[[] for _ in q.wanted] for q in job.queries]
                scoring.append((waiting, seqs))
        entries = [e for e in entries if e[2]]
        if not entries:
            return
        started = time.perf_counter()
        try:
            self._decode(entries)
        except BaseException as exc:
            for _seq, gen, waiting in self._generating:
                gen.close()
                waiting.finish(exc)
            self._generating = []
            for waiting in admitted:
                waiting.finish(exc)
            self._reset_cache()
            return
        for seq, tokens in grown:
            seq.tokens = tokens
        self._last_step_s = time.perf_counter() - started
        self.stats["steps"] += 1
        self.stats["tokens"] += len(entries)
        self.stats["jobs"] += len(admitted)
        self._last_jobs = len(scoring)
        for waiting, seqs in scoring:
            for seq in seqs:
                self._release(seq)
            waiting.finish()
        still = []
        for seq, gen, waiting in self._generating:
            if gen.job.result is not None:
                self._last_jobs += 1
                self._release(seq)
                waiting.finish()
            else:
                still.append((seq, gen, waiting))
        self._generating = still

    def _decode(self, entries: list[list]) -> None:
        """Evaluate ``entries`` in chunks of ``n_batch`` tokens, handling each chunk's outputs at once."""
        import time

        import llama_cpp as lc
        import numpy as np

        batch = self.batch
        for start in range(0, len(entries), self.n_batch):
            chunk = entries[start:start + self.n_batch]
            outputs = []
            for i, (token, pos, seq_ids, wanted, *_) in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = pos
                batch.n_seq_id[i] = len(seq_ids)
                for j, seq_id in enumerate(seq_ids):
                    batch.seq_id[i][j] = seq_id
                batch.logits[i] = 1 if wanted else 0
                if wanted:
                    outputs.append((i, wanted))
            batch.n_tokens = len(chunk)
            started = time.perf_counter()
            code = lc.llama_decode(self.ctx, batch)
            while code == 1 and self._evict_one({s for e in chunk for s in e[2]}):
                code = lc.llama_decode(self.ctx, batch)
            self.stats["decode_s"] += time.perf_counter() - started
            if code != 0:
                from psychometrics.errors import PsytestError

                raise PsytestError(f"llama.cpp could not evaluate a batch of {len(chunk)} tokens (llama_decode "
                                   f"returned {code}; the KV cache of {self.cells} tokens is full?)")
            for i, wanted in outputs:
                log_p = None
                for kind, seq, where, waiting in wanted:
                    if kind == "score":
                        if log_p is None:
                            row = lc.llama_get_logits_ith(self.ctx, i)
                            log_p = log_softmax(np.ctypeslib.as_array(row, shape=(self.n_vocab,)))
                        q, w = where
                        ids = waiting.job.queries[q].wanted[w][1]
                        waiting.job.result[q][w] = [float(log_p[t]) for t in ids]
                    else:
                        gen = where
                        if gen is None:  # a prompt just evaluated: its reply starts
                            gen = _Generation(self, waiting.job)
                            self._generating.append((seq, gen, waiting))
                        token = lc.llama_sampler_sample(gen.chain, self.ctx, i)
                        if not gen.accept(token):
                            self._pending_token[seq.seq_id] = token
