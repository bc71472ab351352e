"""The litellm path against a third-party OpenAI-compatible server: llama.cpp's own, serving SmolLM2."""

from __future__ import annotations

import asyncio
import math

import pytest

from psychometrics.design.plan import Design
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models.base import ModelRequest
from psychometrics.design.prompts import TEMPLATES, render_item
from psychometrics.run.directory import administer
from psychometrics.run.store import RunStore
from psychometrics.testing.llama_server import llama_cpp_server
from psychometrics.testing.waiting import HANG_GUARD_S

pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llama_server():
    with llama_cpp_server() as base:
        yield base


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
