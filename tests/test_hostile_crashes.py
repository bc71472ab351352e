"""Hostile input that used to crash or hang psytest: log-probabilities that are not log-probabilities,
sizes that would allocate gigabytes, regular expressions that backtrack for ever.

Each case runs through the code that handles it for real (a run, the command line, a task file); the
parametrised ids are the case list counted in the README's hostile-input figures ("Crashes and hangs").
"""

from __future__ import annotations

import math

import pytest

from psychometrics.cli import main

BAD_LOGPROBS = {
    "800": 800,
    "1e308": 1e308,
    "plus-inf": math.inf,
    "nan": math.nan,
    "int-beyond-float": 10**400,
    "string": "abc",
    "object": {"logprob": -1.0},
    "list": [-1.0],
    "boolean": True,
}


def cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    return exited.value.code, out, err


# -- log-probabilities ------------------------------------------------------------------------------


class BadLogprobs:
    """A simulated respondent in probability mode whose every third reply gives its first label ``value``."""

    def __new__(cls, value, sim):
        from psychometrics.models.base import ModelBackend

        class _Backend(ModelBackend):
            name = "bad-logprobs"

            def __init__(self):
                self.count = 0

            async def complete(self, request):
                self.count += 1
                reply = await sim.complete(request)
                if request.mode == "probs" and self.count % 3 == 0:
                    reply.choice_logprobs = {**reply.choice_logprobs, request.choices[0]: value}
                return reply

        return _Backend()


def _rows(run):
    from psychometrics.store import RunStore

    with RunStore(run / "responses.sqlite", read_only=True) as store:
        return list(store.rows())


@pytest.mark.parametrize("value", BAD_LOGPROBS.values(), ids=BAD_LOGPROBS.keys())
def test_a_bad_label_logprob_fails_that_request_only(value, tmp_path):
    """From a Python backend: the request is recorded as failed with the reason; the run goes on."""
    from psychometrics.design import Design
    from psychometrics.library import resolve_inventory
    from psychometrics.models.simulated import SimulatedRespondent
    from psychometrics.run import administer

    inventory = resolve_inventory("mini-ipip")
    result = administer(BadLogprobs(value, SimulatedRespondent("sim/e=1,seed=1")), [inventory],
                        Design(modes=["probs"]), tmp_path / "run")
    rows = _rows(tmp_path / "run")
    failed = [r for r in rows if r.error is not None]
    assert len(rows) == 20 and len(failed) == 20 // 3 == result.stats.failed
    assert all("MalformedReply" in r.error and "log-probability of label '1'" in r.error for r in failed)
    assert all(r.outcome == "valid" and 0.99 < r.option_mass <= 1.0 + 1e-9 for r in rows if r.error is None), [
        (r.outcome, r.option_mass) for r in rows]


@pytest.mark.parametrize("backend_kind", ["aiohttp", "litellm"])
@pytest.mark.parametrize("value", BAD_LOGPROBS.values(), ids=BAD_LOGPROBS.keys())
def test_a_bad_logprob_from_a_server_never_ends_the_run(value, backend_kind, tmp_path, capsys, monkeypatch):
    """Through HTTP: a first token whose log-probability is not a number is left out (the label then has
    none); one that is a number but not a log-probability fails that request. Never a traceback."""
    from psychometrics.models.simulated import SimulatedRespondent
    from psychometrics.testing.openai_server import start_server

    if backend_kind == "litellm":
        pytest.importorskip("litellm")
    monkeypatch.setenv("OPENAI_API_KEY", "none")
    with start_server(SimulatedRespondent("sim/e=1,seed=1")) as server:
        plain = server.response_body
        count = iter(range(10**6))

        def response_body(model, body, request, reply):
            payload = plain(model, body, request, reply)
            if next(count) % 3 == 0:
                entries = payload["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
                entries[0]["logprob"] = value  # the most probable label's
            return payload

        server.response_body = response_body
        args = ["administer", "--model", "openai/psytest-sim", "--api-base", server.base_url, "-i", "mini-ipip",
                "--mode", "probs", "--max-retries", "0", "--out", str(tmp_path / "run"), "--json"]
        if backend_kind == "aiohttp":
            args[2] = "openai/psytest-sim"
        code, out, err = cli(capsys, *args)
    assert "Traceback" not in err and code in (0, 1), err
    rows = _rows(tmp_path / "run")
    assert len(rows) == 20
    failed = [r for r in rows if r.error is not None]
    if value in (800, 1e308):  # numbers, but not log-probabilities (NaN and inf are left out like "abc")
        assert code == 1 and len(failed) == 7 and all("log-probability" in r.error for r in failed)
        assert err.count("\n") == 1 and "log-probability" in err
    else:
        assert code == 0 and not failed
    assert all(r.outcome == "valid" and 0 <= r.option_mass <= 1.0 + 1e-9 for r in rows if r.error is None)


def test_label_logprobs_checks_every_value_and_keeps_good_ones():
    from psychometrics.models.base import MalformedReply, label_logprobs

    assert label_logprobs({"1": -0.5, 2: -math.inf, "3": None, "4": 0.00001, "5": -3}) == {
        "1": -0.5, "2": -math.inf, "4": 0.0, "5": -3.0}
    for value in BAD_LOGPROBS.values():
        with pytest.raises(MalformedReply, match="log-probability of label 'x'"):
            label_logprobs({"x": value})
    with pytest.raises(MalformedReply, match="must be a mapping"):
        label_logprobs([("1", -0.1)])


def test_distribution_is_computed_stably_far_below_zero():
    from psychometrics.administer import distribution_summary

    position, expected, entropy, mass = distribution_summary({"1": -800.0, "2": -801.0}, ("1", "2"), (1, 2))
    p2 = math.exp(-1) / (1 + math.exp(-1))
    assert position == 0 and expected == pytest.approx(1 + p2, abs=1e-12)
    assert entropy == pytest.approx(-(1 - p2) * math.log(1 - p2) - p2 * math.log(p2), abs=1e-12)
    assert mass == 0.0  # e^-800 underflows; the distribution over the options is still known
    assert distribution_summary({"1": -math.inf}, ("1", "2"), (1, 2)) == (None, None, None, 0.0)
    assert distribution_summary({"2": math.log(0.25), "1": math.log(0.5)}, ("1", "2"), (1, 2))[3] == pytest.approx(0.75)
