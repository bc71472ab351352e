"""The run pipeline on simulated respondents: plan, send, store, resume, score, CLI."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from psychometrics.engine.pool import RetryPolicy
from psychometrics.conditions import expand_option_orders, williams_square
from psychometrics.design.plan import Design, design_from_mapping, plan_requests
from psychometrics.errors import PsytestError
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models.base import ModelBackend
from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.run.directory import administer
from psychometrics.run.manifest import read_manifest
from psychometrics.run.owner import open_run
from psychometrics.run.store import RunStore
from psychometrics.testing.waiting import HANG_GUARD_S


def run(model, names, design, out, **kwargs):
    backend = SimulatedRespondent(model)
    inventories = [resolve_inventory(n) for n in names]
    return administer(backend, inventories, design, out, **kwargs), inventories


# -- design ---------------------------------------------------------------------------------------


def test_williams_square_is_balanced():
    for k in (4, 5):
        rows = williams_square(k)
        assert len(rows) == (k if k % 2 == 0 else 2 * k)
        for position in range(k):  # every option once per position (per k rows)
            assert sorted(row[position] for row in rows[:k]) == list(range(k))
        successors = {}
        for row in rows:
            for a, b in zip(row, row[1:]):
                successors[(a, b)] = successors.get((a, b), 0) + 1
        assert len(successors) == k * (k - 1) and len(set(successors.values())) == 1


def test_option_order_schemes():
    values = [1, 2, 3, 4, 5]
    names = [name for name, _ in expand_option_orders(["original", "reversed", "rotations"], values, 0)]
    assert names == ["original", "reversed", "rotation1", "rotation2", "rotation3", "rotation4"]  # rotation0 = original
    randoms = expand_option_orders(["random:3"], values, 7)
    assert randoms == expand_option_orders(["random:3"], values, 7) and len(randoms) == 3
    assert expand_option_orders(["random:3"], values, 8) != randoms


def test_plan_size_and_stable_unique_ids():
    inv = resolve_inventory("mini-ipip")
    design = Design(option_orders=["original", "reversed"], templates=["numbered", "lettered"],
                    paraphrases="all", samples=3, modes=["text", "probs"])
    plan = plan_requests([inv], design, "sim/default", {})
    assert len(plan) == 20 * 2 * 2 * 3 * 3 * 2
    ids = [p.request_id for p in plan]
    assert len(set(ids)) == len(ids)
    assert ids == [p.request_id for p in plan_requests([inv], design, "sim/default", {})]
    assert {p.request.seed for p in plan if p.item.id == "q1"} != {plan[0].request.seed}
    other_model = plan_requests([inv], design, "sim/e=1", {})
    assert not set(ids) & {p.request_id for p in other_model}


@pytest.mark.parametrize(
    "mapping, message",
    [
        ({"option_orders": ["sideways"]}, "unknown option order 'sideways'"),
        ({"templates": ["fancy"]}, "unknown template 'fancy'"),
        ({"samples": 0}, "samples: Input should be greater than or equal to 1"),
        ({"colour": "red"}, "unknown design option 'colour'"),
        ({"modes": ["telepathy"]}, "modes.0: Input should be 'text' or 'probs'"),
    ],
)
def test_bad_design_is_a_one_line_error(mapping, message):
    with pytest.raises(PsytestError, match=message):
        design_from_mapping(mapping, "design.yaml")


# -- run, store, resume ----------------------------------------------------------------------------


def test_run_stores_every_answer_and_a_second_run_sends_nothing(tmp_path):
    design = Design(option_orders=["original", "reversed"], templates=["numbered", "worded"], modes=["text", "probs"])
    first, _ = run("sim/e=1,seed=1", ["mini-ipip"], design, tmp_path)
    assert first.stats.sent == 20 * 2 * 2 * 2 and first.stats.outcomes == {"valid": 160}
    second, _ = run("sim/e=1,seed=1", ["mini-ipip"], design, tmp_path)
    assert second.stats.sent == 0 and second.stats.already_answered == 160
    with RunStore(tmp_path / "responses.sqlite") as store:
        rows = list(store.rows())
    assert len(rows) == 160
    probs = [r for r in rows if r.mode == "probs"]
    assert all(r.value == pytest.approx(r.expected_value) and 0 <= r.entropy <= np.log(5) for r in probs)
    assert all(r.option_mass == pytest.approx(1.0) for r in probs)


def test_resume_sends_exactly_what_is_missing(tmp_path):
    design = Design(samples=2, temperature=1.0)
    run("sim/seed=2", ["mini-ipip"], design, tmp_path)
    db = sqlite3.connect(tmp_path / "responses.sqlite")
    removed = [r[0] for r in db.execute("SELECT request_id FROM responses ORDER BY rowid LIMIT 7")]
    before = dict(db.execute("SELECT request_id, raw_reply FROM responses"))
    db.execute(f"DELETE FROM responses WHERE request_id IN ({','.join('?' * 7)})", removed)
    db.commit()
    db.close()
    result, _ = run("sim/seed=2", ["mini-ipip"], design, tmp_path)
    assert result.stats.sent == 7
    with RunStore(tmp_path / "responses.sqlite") as store:
        after = {r.request_id: r.raw_reply for r in store.rows()}
    assert after == before  # deterministic per-request seeds: the resent answers are the same


class FlakyBackend(ModelBackend):
    """Fails every third call, to check failures are stored and retried."""

    def __init__(self):
        self.inner = SimulatedRespondent("sim/seed=3")
        self.name = self.inner.name
        self.calls = 0

    @property
    def params(self):
        return self.inner.params

    async def complete(self, request):
        self.calls += 1
        if self.calls % 3 == 0:
            raise ConnectionError("connection reset by peer")
        return await self.inner.complete(request)


def test_failures_are_recorded_with_their_reason_and_retried(tmp_path):
    inventories = [resolve_inventory("mini-ipip")]
    flaky = FlakyBackend()
    first = administer(flaky, inventories, Design(), tmp_path)
    assert first.stats.failed == 6 and first.stats.sent == 20
    with RunStore(tmp_path / "responses.sqlite") as store:
        errors = [r for r in store.rows() if r.outcome == "error"]
    assert len(errors) == 6 and errors[0].error == "ConnectionError: connection reset by peer"
    second = administer(FlakyBackend(), inventories, Design(), tmp_path)
    assert second.stats.sent == 6 and second.stats.failed == 2  # the retried six, every third fails again
    with RunStore(tmp_path / "responses.sqlite") as store:
        attempts = {r.request_id: r.attempts for r in store.rows()}
    assert sorted(attempts.values()).count(2) == 6


def test_manifest_records_the_run_and_refuses_a_different_study(tmp_path):
    run("sim/e=1,seed=1", ["mini-ipip", "sd3"], Design(seed=5), tmp_path)
    manifest = read_manifest(tmp_path)
    assert manifest.model == "sim/e=1,seed=1"
    assert manifest.backend_params["traits"] == {"extraversion": 1.0}
    assert manifest.design.seed == 5
    assert [i.id for i in manifest.inventories] == ["mini-ipip", "sd3"]
    assert manifest.inventories[0].content_hash == resolve_inventory("mini-ipip").content_hash
    assert manifest.requests_planned == 47 and "psytest" in manifest.packages
    assert manifest.prompts.requests == 47 and set(manifest.prompts.templates) == {"numbered"}
    with pytest.raises(PsytestError, match="holds a run with a different model"):
        run("sim/e=2,seed=1", ["mini-ipip", "sd3"], Design(seed=5), tmp_path)
    with pytest.raises(PsytestError, match=r"a different seed \(the run used 5, this command 6\)"):
        run("sim/e=1,seed=1", ["mini-ipip", "sd3"], Design(seed=6), tmp_path)


# -- scoring ---------------------------------------------------------------------------------------


def test_scale_scores_match_a_hand_computation(tmp_path):
    (result, inventories) = run("sim/e=1,a=-1,seed=4,noise=0.8", ["ipip-neo-120"], Design(temperature=1.0), tmp_path)
    scores = open_run(tmp_path).scores()
    inv = inventories[0]
    with RunStore(tmp_path / "responses.sqlite") as store:
        value = {r.item_id: r.value for r in store.rows()}
    for scale in inv.scales:
        keyed = [6 - value[i] if inv.item_by_id[i].reverse_keyed else value[i] for i in scale.items]
        row = scores[(scores["kind"] == "scale") & (scores["scale"] == scale.id)]
        assert row["score"].item() == pytest.approx(sum(keyed))  # IPIP-NEO domains are sums
    facet = inv.facets[0]
    keyed = [6 - value[i] if inv.item_by_id[i].reverse_keyed else value[i] for i in facet.items]
    assert scores[scores["scale"] == facet.id]["score"].item() == pytest.approx(sum(keyed))


def test_scales_with_too_few_valid_answers_are_missing_not_zero(tmp_path):
    (result, inventories) = run("sim/seed=5,refusal=0.6", ["mini-ipip"], Design(samples=4, temperature=1.0), tmp_path)
    scores = open_run(tmp_path).scores()
    answered = scores["items_answered"]
    assert scores["score"].isna().equals(answered < 2)
    assert scores["score"].isna().any() and not (scores["score"] == 0).any()


def test_recovered_scores_track_true_traits_across_simulated_people(tmp_path):
    truth, recovered = [], []
    inventories = [resolve_inventory("ipip-50")]
    for seed in range(30):
        backend = SimulatedRespondent(f"sim/traits=random,seed={seed},noise=0.3")
        administer(backend, inventories, Design(temperature=1.0), tmp_path / str(seed))
        scores = open_run(tmp_path / str(seed)).scores()
        truth.append(backend.trait_level("conscientiousness"))
        recovered.append(scores[scores["scale"] == "C"]["score"].item())
    assert np.corrcoef(truth, recovered)[0, 1] > 0.85


# -- CLI -------------------------------------------------------------------------------------------


def cli(*args):
    return subprocess.run([sys.executable, "-m", "psychometrics", *args], capture_output=True, text=True,
                          timeout=HANG_GUARD_S)


def test_cli_administer_json_and_resume(tmp_path):
    out = tmp_path / "run"
    args = ("administer", "--model", "sim/e=2,seed=1", "-i", "mini-ipip", "--option-orders", "original,reversed",
            "--templates", "numbered,lettered", "--mode", "both", "--out", str(out), "--json")
    first = json.loads(cli(*args).stdout)
    assert first["sent"] == 160 and first["outcomes"] == {"valid": 160}
    extraversion = [s for s in first["scales"] if s["scale"] == "E"]
    assert {s["mode"] for s in extraversion} == {"text", "probs"} and all(s["mean"] > 3.8 for s in extraversion)
    second = json.loads(cli(*args).stdout)
    assert second["sent"] == 0 and second["already_answered"] == 160
    assert (out / "manifest.json").exists() and (out / "analysis" / "scores.csv").exists()
    assert (out / "analysis" / "reliability.csv").exists() and (out / "analysis" / "position_bias.csv").exists()


def test_cli_dry_run_sends_nothing(tmp_path):
    result = cli("administer", "-i", "bfi-44", "--option-orders", "latin-square", "--samples", "2",
                 "--out", str(tmp_path / "r"), "--dry-run", "--json")
    payload = json.loads(result.stdout)
    assert payload["requests_planned"] == 44 * 10 * 2 and payload["to_send"] == 880
    assert payload["estimated_input_tokens"] > 0
    assert not (tmp_path / "r").exists()


def test_cli_design_file_and_overrides(tmp_path):
    design = tmp_path / "design.yaml"
    design.write_text("option_orders: [original, reversed]\ntemplates: [survey]\nsamples: 2\ntemperature: 0.5\n")
    payload = json.loads(cli("administer", "-i", "sd3", "--design", str(design), "--samples", "1",
                             "--dry-run", "--json").stdout)
    assert payload["requests_planned"] == 27 * 2


@pytest.mark.parametrize(
    "args, message",
    [
        (("--option-orders", "sideways"), "unknown option order 'sideways'"),
        (("--model", "sim/refusal=2"), "refusal must be between 0 and 1"),
        (("-i", "nope"), "unknown inventory 'nope'"),
        (("--concurrency", "0"), "Invalid value for '--concurrency'"),
        (("-i", "sd3", "-i", "sd3"), "the same inventory is given twice"),
        (("--design", "missing.yaml"), "missing.yaml: no such file"),
    ],
)
def test_cli_administer_bad_input(args, message, tmp_path):
    result = cli("administer", "--out", str(tmp_path / "r"), *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr


# -- failures: what is kept, what is waited for, how a run ends --------------------------------------


class MumblesThenFails(ModelBackend):
    """Answers the first ask with no readable label; every re-ask fails for good (a context limit)."""

    name = "mumbles-then-fails"

    def __init__(self):
        self.calls = 0

    async def complete(self, request):
        from psychometrics.models.base import ModelReply
        from psychometrics.models.litellm_backend import ModelCallError

        self.calls += 1
        if any(m.role == "assistant" for m in request.messages):  # a re-ask: the reply so far is in it
            raise ModelCallError("mumbles: the prompt is longer than the model's context window")
        return ModelReply(text="Hmm, that depends on the day.", input_tokens=30, output_tokens=7)


def test_a_failed_reask_keeps_the_paid_first_reply_and_is_not_sent_again(tmp_path):
    inventories = [resolve_inventory("mini-ipip")]
    backend = MumblesThenFails()
    first = administer(backend, inventories, Design(invalid="reask:2"), tmp_path)
    assert backend.calls == 40 and first.stats.failed == 0 and first.stats.reasks_failed == 20
    with RunStore(tmp_path / "responses.sqlite") as store:
        rows = list(store.rows())
    assert len(rows) == 20
    for row in rows:
        assert row.error is None and row.outcome == "unparseable" and row.raw_reply == "Hmm, that depends on the day."
        assert row.output_tokens == 7 and row.reasks == 0 and row.reask_replies is None
        assert row.note.startswith("re-ask 1 failed, reply before it kept: ModelCallError: ")
        assert "context window" in row.note
    second = administer(backend, inventories, Design(invalid="reask:2"), tmp_path)
    assert backend.calls == 40 and second.stats.sent == 0 and second.stats.already_answered == 20


def test_retry_after_beyond_the_backoff_cap_is_waited_in_full():
    import random

    policy = RetryPolicy(base_s=1.0, cap_s=60.0)
    assert policy.wait(0, 300.0, random.Random(0)) == 300.0  # the cap bounds our own backoff only
    assert 30.0 <= policy.wait(10, None, random.Random(0)) <= 60.0


def _gaps_after(log, fault: str) -> list[float]:
    """Seconds from each ``fault``ed send of a request to its next send."""
    sends: dict[str, list] = {}
    for when, key, injected in log:
        sends.setdefault(key, []).append((when, injected))
    return [b[0] - a[0] for attempts in sends.values() for a, b in zip(attempts, attempts[1:]) if a[1] == fault]


def test_a_server_retry_after_longer_than_the_cap_is_honoured_through_http(tmp_path):
    from psychometrics.engine.pool import RetryPolicy
    from psychometrics.models import resolve_model
    from psychometrics.testing.openai_server import start_server

    with start_server(SimulatedRespondent("sim/e=1,seed=1"), faults=["rate_limit"], fault_rate=0.5, seed=3,
                      retry_after="0.6") as server:
        backend = resolve_model("openai/psytest-sim", api_base=server.base_url)
        result = administer(backend, [resolve_inventory("mini-ipip")], Design(), tmp_path, concurrency=20,
                            retry=RetryPolicy(max_retries=4, base_s=0.001, cap_s=0.05))
        gaps = _gaps_after(list(server.request_log), "rate_limit")
    assert result.stats.retries == len(gaps) > 0
    assert min(gaps) >= 0.6  # not cut to the 0.05 s cap


def test_a_retry_after_longer_than_psytest_waits_fails_at_once_saying_so(tmp_path):
    from psychometrics.engine.pool import RetryPolicy
    from psychometrics.models import resolve_model
    from psychometrics.testing.openai_server import start_server

    with start_server(SimulatedRespondent("sim/e=1,seed=1"), faults=["rate_limit"], fault_rate=1.0,
                      retry_after="7200") as server:
        backend = resolve_model("openai/psytest-sim", api_base=server.base_url)
        result = administer(backend, [resolve_inventory("mini-ipip")], Design(), tmp_path, concurrency=20,
                            retry=RetryPolicy(max_retries=3, base_s=0.001))
        assert server.requests_served == 20  # none retried early
    assert result.stats.failed == 20 and result.stats.retries == 0
    assert "asks to wait 7200 s, longer than the 3600 s psytest waits" in result.stats.first_error


def _main(capsys, *args):
    from psychometrics.cli import main

    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def test_a_run_with_failed_requests_exits_1_with_one_line_and_the_next_run_resends_them(tmp_path, capsys,
                                                                                     monkeypatch):
    from psychometrics.testing.openai_server import start_server

    out = tmp_path / "run"
    args = ("administer", "--model", "openai/psytest-sim", "-i", "mini-ipip", "--max-retries", "0", "--out", str(out))
    # every request overloaded (HTTP 500, no retries): failures of the requests, not a refusal of the endpoint
    with start_server(SimulatedRespondent("sim/e=1,seed=1"), faults=["server_error"], fault_rate=1.0) as server:
        code, stdout, err = _main(capsys, *args, "--api-base", server.base_url, "--json")
        assert code == 1 and json.loads(stdout)["failed"] == 20  # the summary is still printed
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith("psytest: 20 of 20 requests failed (TransientModelError: openai/psytest-sim: "
                                   "provider unavailable")
        assert lines[0].endswith("re-run the same command to retry them")
        code, stdout, err = _main(capsys, *args, "--api-base", server.base_url)  # the terminal summary too
        assert code == 1 and "psytest: 20 of 20 requests failed" in err
        with RunStore(out / "responses.sqlite") as store:  # failures are sent again: they were not answered
            assert {r.attempts for r in store.rows()} == {2}
    with start_server(SimulatedRespondent("sim/e=1,seed=1")) as healthy:  # another port: the same run
        code, stdout, err = _main(capsys, *args, "--api-base", healthy.base_url, "--json")
    assert code == 0 and err == "" and json.loads(stdout)["sent"] == 20 and json.loads(stdout)["failed"] == 0


def test_timed_out_requests_sent_again_are_counted_as_possibly_billed_twice(tmp_path, capsys):
    from psychometrics.testing.openai_server import start_server

    with start_server(SimulatedRespondent("sim/e=1,seed=1"), faults=["stall"], fault_rate=1.0,
                      stall_s=HANG_GUARD_S) as server:  # only the client's timeout ends a request
        code, stdout, err = _main(capsys, "administer", "--model", "openai/psytest-sim", "--api-base", server.base_url,
                                  "-i", "mini-ipip", "--timeout", "0.3", "--max-retries", "1", "--retry-base", "0.01",
                                  "--concurrency", "20", "--out", str(tmp_path / "run"), "--json")
        sent_twice = server.requests_served - 20  # a request given up and sent again: the server got both
    # nothing answers: one request given up per timeout, three in a row stop the run (exit 75), and the one
    # line says how many were sent again (possibly billed twice)
    assert code == 75 and stdout == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "timed out after 0.3 s" in lines[0] and "3 requests in a row timed out" in lines[0]
    assert sent_twice > 0 and f"{sent_twice} timed-out requests were sent again" in lines[0]


def test_behave_with_failed_conversations_exits_1_with_one_line(tmp_path, capsys, monkeypatch):
    from psychometrics.testing.openai_server import start_server

    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-for-this-test")
    with start_server(SimulatedRespondent("sim/e=1,seed=1"), api_key="sk-the-right-key") as server:
        code, stdout, err = _main(capsys, "behave", "--model", "openai/psytest-sim", "--api-base", server.base_url,
                                  "--tasks", "dictator-game", "--variants", "2", "--max-retries", "0",
                                  "--out", str(tmp_path / "b"), "--json")
    assert code == 1 and json.loads(stdout)["failed"] == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("psytest: 2 of 2 conversations failed (EndpointCallError: ")
    assert "authentication failed" in lines[0] and "sk-wrong" not in err
