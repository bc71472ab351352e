"""End to end on real embedded models (llama.cpp): SmolLM2 for mechanics, Qwen 0.5B for answer quality."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import subprocess
import sys

import pytest

from psychometrics.design.plan import Design
from psychometrics.errors import ModelSpecError, PsytestError
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models import local
from psychometrics.models.base import ModelRequest
from psychometrics.models.local import LocalModel, embedded_model_path
from psychometrics.design.prompts import TEMPLATES, render_item
from psychometrics.run.directory import administer
from psychometrics.run.store import RunStore
from psychometrics.testing.waiting import HANG_GUARD_S

pytest.importorskip("llama_cpp", reason="needs the [local] extra")
pytestmark = pytest.mark.slow

# One prompt-evaluation thread: llama.cpp's threads spin while they wait for each other, many times slower
# when the cores are shared (20 probability requests: 162 s with two threads, 22 s with one, on a loaded
# 2-core machine). Thread counts do not change results.
ONE_THREAD = {"threads": 1, "threads_batch": 1}


@pytest.fixture(scope="module")
def smollm2():
    return LocalModel("local/smollm2-135m", **ONE_THREAD)


@pytest.fixture(scope="module")
def qwen():
    return LocalModel("local/qwen2.5-0.5b", **ONE_THREAD)


def test_smollm2_administers_mini_ipip_in_both_modes_and_resumes_for_free(tmp_path):
    design = Design(option_orders=["original", "reversed"], templates=["numbered", "lettered"], modes=["text", "probs"])
    inventories = [resolve_inventory("mini-ipip")]
    first = administer(LocalModel("local/smollm2-135m", **ONE_THREAD), inventories, design, tmp_path)
    assert first.stats.sent == 20 * 2 * 2 * 2 and first.stats.failed == 0
    with RunStore(tmp_path / "responses.sqlite") as store:
        rows = list(store.rows())
    assert len(rows) == 160
    probs = [r for r in rows if r.mode == "probs"]
    text = [r for r in rows if r.mode == "text"]
    assert all(r.outcome == "valid" and 0 < r.option_mass < 1 for r in probs)
    assert all(1 <= r.expected_value <= 5 for r in probs)
    assert all(r.raw_reply is not None and r.outcome in ("valid", "refusal", "out_of_range", "multiple", "unparseable", "truncated")
               for r in text)
    for r in rows:  # every valid answer is mapped from its displayed position back to the semantic value
        if r.outcome == "valid" and r.mode == "text":
            assert r.value == r.position_values[r.position]
    reversed_rows = [r for r in probs if r.condition["option_order"] == "reversed"]
    assert all(r.position_values == [5, 4, 3, 2, 1] for r in reversed_rows)
    second = administer(LocalModel("local/smollm2-135m", **ONE_THREAD), inventories, design, tmp_path)
    assert second.stats.sent == 0 and second.stats.already_answered == 160


def test_option_probabilities_are_reproducible_across_model_instances():
    inventory = resolve_inventory("bfi-44")
    prompts = [render_item(inventory, item, template=TEMPLATES["numbered"]) for item in inventory.items[:6]]

    def score(model):
        return [asyncio.run(model.complete(ModelRequest(p.messages, p.choices, mode="probs"))).choice_logprobs
                for p in prompts]

    first, second = (LocalModel("local/smollm2-135m", **ONE_THREAD) for _ in range(2))
    assert score(first) == score(second)


def test_qwen_follows_the_answer_format(qwen):
    inventory = resolve_inventory("bfi-44")
    valid = 0
    for item in inventory.items[:10]:
        prompt = render_item(inventory, item, template=TEMPLATES["numbered"])
        reply = asyncio.run(qwen.complete(ModelRequest(prompt.messages, prompt.choices, temperature=0.0, seed=1)))
        valid += reply.text.strip() in prompt.choices
    assert valid >= 9
    prompt = render_item(inventory, inventory.items[0], template=TEMPLATES["lettered"])
    reply = asyncio.run(qwen.complete(ModelRequest(prompt.messages, prompt.choices, mode="probs")))
    assert sum(math.exp(v) for v in reply.choice_logprobs.values()) > 0.9


def test_word_labels_are_scored_as_whole_sequences(qwen):
    """'Very accurate' and 'Very inaccurate' share a first token: each label is scored in full."""
    inventory = resolve_inventory("mini-ipip")
    prompt = render_item(inventory, inventory.items[0], template=TEMPLATES["worded"])
    reply = asyncio.run(qwen.complete(ModelRequest(prompt.messages, prompt.choices, mode="probs")))
    probabilities = {k: math.exp(v) for k, v in reply.choice_logprobs.items()}
    assert set(probabilities) == set(prompt.choices)
    assert 0.2 < sum(probabilities.values()) <= 1.0 + 1e-9
    assert len({round(p, 6) for p in probabilities.values()}) == 5


def test_gguf_path_backend_and_its_identity(tmp_path):
    source = embedded_model_path("smollm2-135m")
    copy = tmp_path / "my-model.gguf"
    shutil.copyfile(source, copy)
    backend = LocalModel(f"gguf:{copy}", **ONE_THREAD)
    assert backend.params["file_sha256"] == local.EMBEDDED["smollm2-135m"].sha256
    inventory = resolve_inventory("sd3")
    prompt = render_item(inventory, inventory.items[0], template=TEMPLATES["numbered"])
    reply = asyncio.run(backend.complete(ModelRequest(prompt.messages, prompt.choices, mode="probs")))
    assert set(reply.choice_logprobs) == {"1", "2", "3", "4", "5"}


def test_bad_gguf_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ModelSpecError, match="no such GGUF file"):
        LocalModel(f"gguf:{tmp_path / 'missing.gguf'}")
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a model at all")
    with pytest.raises(ModelSpecError, match="is not a GGUF file"):
        LocalModel(f"gguf:{fake}")
    with pytest.raises(ModelSpecError, match="unknown embedded model"):
        LocalModel("local/gpt-7")


def test_a_model_file_with_the_wrong_checksum_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("PSYTEST_CACHE_DIR", str(tmp_path))
    spec = local.EMBEDDED["smollm2-135m"]
    monkeypatch.setitem(local.EMBEDDED, "smollm2-135m", local.EmbeddedModel(spec.description, spec.parts, "0" * 64))
    with pytest.raises(PsytestError, match="expected 0000000000000000"):
        embedded_model_path("smollm2-135m")


def test_split_model_is_assembled_into_the_cache_once(monkeypatch, tmp_path):
    monkeypatch.setenv("PSYTEST_CACHE_DIR", str(tmp_path))
    first = embedded_model_path("qwen2.5-0.5b")
    assert first.parent == tmp_path / "models" and first.stat().st_size > 400_000_000
    mtime = first.stat().st_mtime_ns
    assert embedded_model_path("qwen2.5-0.5b") == first and first.stat().st_mtime_ns == mtime


def test_cli_default_model_is_qwen(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "psychometrics", "administer", "-i", "mini-ipip", "--mode", "probs",
         "--threads-batch", "1", "--out", str(tmp_path / "run"), "--json"],
        capture_output=True, text=True, timeout=HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["model"] == "local/qwen2.5-0.5b" and payload["outcomes"] == {"valid": 20}
