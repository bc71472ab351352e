"""The litellm path against a third-party OpenAI-compatible server: llama.cpp's own, serving SmolLM2."""

from __future__ import annotations

import asyncio
import math
import socket
import subprocess
import sys
import urllib.request

import pytest

from psychometrics.design.plan import Design
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models.base import ModelRequest
from psychometrics.design.prompts import TEMPLATES, render_item
from psychometrics.run.directory import administer
from psychometrics.run.store import RunStore
from psychometrics.testing.waiting import HANG_GUARD_S, wait_for

pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server():
    from psychometrics.models.local import embedded_model_path

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_model_path("smollm2-135m")),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--logits_all", "true",
         "--n_threads", "1", "--n_threads_batch", "1"],  # threads that spin: slow on shared cores
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"

    def answering() -> bool:
        try:
            urllib.request.urlopen(f"{base}/models", timeout=60).read()
            return True
        except OSError:
            assert process.poll() is None, "llama.cpp server exited"
            return False

    try:
        wait_for(answering, "the llama.cpp server answering", poll_s=0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=HANG_GUARD_S)


@pytest.fixture()
def backend(llama_server, monkeypatch):
    from psychometrics.models.litellm_backend import LiteLLMBackend

    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-not-checked")
    return LiteLLMBackend("openai/smollm2", api_base=llama_server, timeout_s=HANG_GUARD_S)


def test_probabilities_over_http_match_the_in_process_model(backend):
    from psychometrics.models.local import LocalModel

    inventory = resolve_inventory("bfi-44")
    local = LocalModel("local/smollm2-135m", threads=1, threads_batch=1)
    for item in inventory.items[:3]:
        prompt = render_item(inventory, item, template=TEMPLATES["numbered"])
        request = ModelRequest(prompt.messages, prompt.choices, mode="probs")
        remote = asyncio.run(backend.complete(request)).choice_logprobs
        direct = asyncio.run(local.complete(request)).choice_logprobs
        common = [c for c in prompt.choices if c in remote]
        assert len(common) >= 3  # the server returns its top 20 tokens; most labels are among them
        for label in common:
            assert math.exp(remote[label]) == pytest.approx(math.exp(direct[label]), abs=0.02)


def test_administer_through_llama_cpp_server(backend, tmp_path):
    result = administer(backend, [resolve_inventory("mini-ipip")], Design(modes=["text", "probs"]), tmp_path)
    assert result.stats.failed == 0 and result.stats.sent == 40
    with RunStore(tmp_path / "responses.sqlite") as store:
        rows = list(store.rows())
    probs = [r for r in rows if r.mode == "probs"]
    assert sum(r.outcome == "valid" for r in probs) >= 18 and all(r.raw_reply is not None for r in rows)
