"""A hostile OpenAI-compatible server: every fault at a 20% rate, alone and mixed, through both backends
that speak to it (litellm, and the direct aiohttp one that ``--model openai/NAME --api-base`` uses), in
text mode and, mixed, in probability (logprobs) mode.

The loopback server answers from a deterministic simulated respondent and logs every request it
receives (a key per request: messages, mode, seed) with the fault it injected. So the tests can check,
request by request: each ends valid or with a stored error naming the last fault it met; valid answers
equal a fault-free run's (text, value, log-probabilities); 429s were retried no sooner than Retry-After
and other faults after the short backoff only; the retry count is what the server saw, and retries
after a timeout are counted as such; and a second run re-sends only what failed, never what was
committed. A stalled request is never answered while the test runs, so only the client's timeout ends it.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import statistics
import time
from collections import Counter, defaultdict

import pytest

from psychometrics.engine.pool import RetryPolicy
from psychometrics.design.plan import Design
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models.base import Message, ModelRequest
from psychometrics.models.openai_http import OpenAIHTTPBackend
from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.run.directory import administer
from psychometrics.testing.openai_server import FAULT_KINDS, model_request_key, start_server
from psychometrics.testing.waiting import HANG_GUARD_S

SIM = "sim/e=1,a=-0.5,acquiescence=0.3,noise=0.5,seed=1"
MODEL = "openai/psytest-sim"
DESIGN = Design(option_orders=["original", "reversed"], samples=2, temperature=0.7)  # bfi-44: 176 requests
PROBS = Design(option_orders=["original", "reversed"], samples=2, modes=["probs"])
# Stalls alone: each costs a whole client timeout of silence (the client gives up one waiting request per timeout
# when nothing progresses), so ~49 stalls in 176 requests took 100 s. The first sample of one option order
# (44 requests, a subset of DESIGN's: the same fault-free answers) still meets stalls that are retried and
# answered, and requests stalled twice that fail and are re-sent by the second run.
STALL_DESIGN = Design(option_orders=["original"], samples=1, temperature=0.7)
RATE = 0.2
RETRY_AFTER_S = 0.3
# The client's timeout where stalls are injected: a stall costs this much, and a request that is not stalled
# must see some answer arrive within it even on a loaded machine (litellm spends far more CPU per request than
# the direct backend: at load average 12, 2 s was once too short for it). Without stalls nothing should time
# out at all, so those runs get a timeout no answer comes near.
TIMEOUT_S = {"aiohttp": 2.0, "litellm": 4.0}
NO_STALL_TIMEOUT_S = 120.0
RETRY = RetryPolicy(max_retries=1, base_s=0.01)  # few retries, so some requests do end as failures
CONCURRENCY = 8
# What the stored error must say for the last fault a failed request met.
REASONS = {
    "rate_limit": r"rate limited \(HTTP 429\); retry after 0\.3 s",
    "server_error": r"\(HTTP 500\): The server had an error",
    "stall": r"timed out after {t:g} s|no answer within {t:g} s",
    "reset": r"connection reset",
    "truncated": r"truncated response",
    "malformed": r"malformed response: the body is not JSON",
    "empty_choices": r"response without choices",
}
FIGURES: dict[str, dict] = {}


@pytest.fixture(scope="module", autouse=True)
def dummy_key():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENAI_API_KEY", "sk-psytest-dummy-key")
        yield


def make_backend(kind: str, server, timeout_s: float | None):
    if kind == "litellm":
        from psychometrics.models.litellm_backend import LiteLLMBackend

        return LiteLLMBackend(MODEL, api_base=server.base_url, timeout_s=timeout_s)
    return OpenAIHTTPBackend(MODEL, api_base=server.base_url, timeout_s=timeout_s)


def run(server, out, kind: str = "aiohttp", design: Design = DESIGN, timeout_s: float = NO_STALL_TIMEOUT_S):
    return administer(make_backend(kind, server, timeout_s), [resolve_inventory("bfi-44")], design, out,
                      concurrency=CONCURRENCY, timeout_s=timeout_s, retry=RETRY)


def stored(out) -> dict[str, dict]:
    """request id -> its stored row (one item per request here)."""
    connection = sqlite3.connect(out / "responses.sqlite")
    connection.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in connection.execute("SELECT * FROM responses")]
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        connection.close()
    by_id = {r["request_id"]: r for r in rows}
    assert len(by_id) == len(rows)  # one row per request
    return by_id


@pytest.fixture(scope="module")
def respondent():
    """One simulated respondent for every server here (its answers depend on the request only), warmed
    up: its first answer loads the shipped behaviour tasks, seconds on a loaded machine, during which
    the server would answer nothing and the first requests would time out as if stalled."""
    sim = SimulatedRespondent(SIM)
    asyncio.run(sim.complete(ModelRequest((Message("user", "Warm-up\n1. Yes\n2. No"),), ("1", "2"))))
    return sim


@pytest.fixture(params=["aiohttp", "litellm"])
def backend_kind(request, respondent):
    if request.param == "litellm":
        pytest.importorskip("litellm")
        with start_server(respondent) as server:
            warm_up(server)
    return request.param


def warm_up(server) -> None:
    """litellm's first call in a process imports for about a second; that must not count as a stall."""
    backend = make_backend("litellm", server, timeout_s=None)
    backend.prepare([])

    async def once():
        try:
            await backend.complete(ModelRequest((Message("user", "Warm-up\n1. Yes\n2. No"),), ("1", "2")))
        finally:
            await backend.aclose()

    asyncio.run(once())
    server.request_log.clear()
    server.requests_served = 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory, respondent):
    """Answers of fault-free runs (text and probability mode), by request key: the same respondent, the
    same requests, whichever backend sends them."""
    answers = {}
    with start_server(respondent) as server:
        for design in (DESIGN, PROBS):
            out = tmp_path_factory.mktemp("clean") / "run"
            server.requests_served = 0
            result = run(server, out, design=design)
            assert server.faults_injected == Counter() and server.requests_served == len(result.planned)
            assert result.stats.failed == 0 and result.stats.retries == 0
            rows = stored(out)
            answers.update({model_request_key(p.request): rows[p.request_id] for p in result.planned})
    assert all(r["outcome"] == "valid" for r in answers.values()) and len(answers) == 2 * 176
    return answers


def by_key(log, start: int = 0) -> dict[str, list[tuple[float, str | None]]]:
    sends = defaultdict(list)
    for when, key, fault in log[start:]:
        sends[key].append((when, fault))
    return sends


def check_run(result, rows, sends, reference, timeout_s: float) -> dict:
    """Every planned request ends valid (equal to the fault-free answer) or failed naming its last fault."""
    keys = {p.request_id: model_request_key(p.request) for p in result.planned}
    failed = 0
    for request_id, key in keys.items():
        row = rows[request_id]
        attempts = sends[key]
        if row["outcome"] == "valid":
            assert attempts[-1][1] is None  # the answer came from the one attempt that was not faulted
            clean = reference[key]
            fields = ("raw_reply", "value", "position", "choice_logprobs", "expected_value")
            assert [row[f] for f in fields] == [clean[f] for f in fields]
        else:
            failed += 1
            assert row["outcome"] == "error" and row["value"] is None
            assert len(attempts) == RETRY.max_retries + 1 and all(fault for _, fault in attempts)
            last_fault = attempts[-1][1]
            assert re.search(REASONS[last_fault].format(t=timeout_s), row["error"]), (last_fault, row["error"])
    return {"failed": failed}


def timed_out_then_retried(sends) -> int:
    """Attempts that met a stall (the client timed out) and were followed by another attempt."""
    return sum(fault == "stall" for attempts in sends.values() for _, fault in attempts[:-1])


def retry_gaps(sends) -> dict[str, list[float]]:
    """Seconds between a faulted attempt and the next attempt of the same request, by fault."""
    gaps = defaultdict(list)
    for attempts in sends.values():
        for (when, fault), (again, _) in zip(attempts, attempts[1:]):
            gaps[fault].append(again - when)
    return gaps


CASES = [([kind], STALL_DESIGN if kind == "stall" else DESIGN) for kind in FAULT_KINDS] + [(list(FAULT_KINDS), DESIGN), (list(FAULT_KINDS), PROBS)]


@pytest.mark.parametrize("faults, design", CASES, ids=[*FAULT_KINDS, "mixed", "mixed-probs"])
def test_hostile_server(tmp_path, reference, respondent, faults, design, backend_kind, monkeypatch):
    out = tmp_path / "run"
    started = time.perf_counter()
    waits = []  # (the server's Retry-After, the wait the client chose) of each retry
    policy_wait = RetryPolicy.wait

    def recorded_wait(policy, retry, retry_after, rng):
        waits.append((retry_after, policy_wait(policy, retry, retry_after, rng)))
        return waits[-1][1]

    monkeypatch.setattr(RetryPolicy, "wait", recorded_wait)
    with start_server(respondent, faults=faults, fault_rate=RATE, seed=11,
                      retry_after=f"{RETRY_AFTER_S:g}", stall_s=HANG_GUARD_S) as server:
        timeout_s = TIMEOUT_S[backend_kind] if "stall" in faults else NO_STALL_TIMEOUT_S
        first = run(server, out, backend_kind, design, timeout_s)
        first_waits = list(waits)
        planned = len(first.planned)
        log = list(server.request_log)
        sends = by_key(log)
        assert set(sends) == {model_request_key(p.request) for p in first.planned}  # nothing else was sent
        rows = stored(out)
        assert set(rows) == {p.request_id for p in first.planned}
        figures = check_run(first, rows, sends, reference, timeout_s)
        assert figures["failed"] >= 1  # some request met a fault on every attempt: the failure path ran too

        # the client's counts are the server's
        faulted = sum(1 for _, _, fault in log if fault)
        assert Counter(fault for _, _, fault in log if fault) == server.faults_injected
        assert set(server.faults_injected) == set(faults)  # each kind did occur
        assert first.stats.sent == planned and first.stats.failed == figures["failed"]
        assert first.stats.retries == len(log) - planned
        assert first.stats.timeouts_retried == timed_out_then_retried(sends)  # possibly billed twice
        assert 0.1 < faulted / len(log) < 0.3  # the 20% rate

        # Retry-After honoured: a 429'd request came back no sooner than the server asked
        gaps = retry_gaps(sends)
        if "rate_limit" in faults:
            assert gaps["rate_limit"] and min(gaps["rate_limit"]) >= RETRY_AFTER_S
        # others wait the short backoff only (what the client chose: the server's clock would also
        # count however long a loaded machine took to send the retry)
        assert len(first_waits) == first.stats.retries
        assert sum(after is not None for after, _ in first_waits) == len(gaps.get("rate_limit", []))
        assert all(wait < RETRY_AFTER_S for after, wait in first_waits if after is None)

        # a second run sends only what failed, and each of those once more (plus its retries)
        failed_ids = {rid for rid, r in rows.items() if r["error"] is not None}
        failed_keys = {model_request_key(p.request) for p in first.planned if p.request_id in failed_ids}
        mark = len(server.request_log)
        second = run(server, out, backend_kind, design, timeout_s)
        resent = by_key(server.request_log, mark)
    assert set(resent) == failed_keys
    assert second.stats.already_answered == planned - len(failed_ids) and second.stats.sent == len(failed_ids)
    after = stored(out)
    for request_id, row in rows.items():
        if row["error"] is None:
            assert after[request_id] == row  # committed answers untouched
    for p in second.planned:
        row = after[p.request_id]
        if p.request_id in failed_ids and row["outcome"] == "valid":
            clean = reference[model_request_key(p.request)]
            assert (row["raw_reply"], row["value"]) == (clean["raw_reply"], clean["value"])
    name = (faults[0] if len(faults) == 1 else "mixed") + ("-probs" if design is PROBS else "") + f"/{backend_kind}"
    FIGURES[name] = {
        "requests_sent": len(log), "faults": dict(Counter(f for _, _, f in log if f)), "retries": first.stats.retries,
        "failed_first_run": len(failed_ids), "resent_second_run": len(resent),
        "still_failed": sum(r["error"] is not None for r in after.values()),
        "retry_after_gap_s": [round(min(gaps["rate_limit"]), 3), round(statistics.median(gaps["rate_limit"]), 3)]
        if gaps.get("rate_limit") else None,
        "seconds": round(time.perf_counter() - started, 2),
    }
    print(json.dumps({name: FIGURES[name]}))
