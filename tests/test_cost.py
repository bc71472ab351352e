"""Cost before and after sending: prices, token counts, the plan's estimate, each answer's actual cost,
prompt caching (marking and accounting), --max-cost, and the terminal's cost table."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest

from psychometrics.cost.actual import reply_cost
from psychometrics.cost.estimate import estimate_cost, factor_costs
from psychometrics.cost.prices import load_price_file, map_price, price_for, price_map
from psychometrics.cost.tokens import CHARS_PER_TOKEN, TokenCounter
from psychometrics.design.plan import design_from_mapping, plan_requests
from psychometrics.design.personas import resolve_persona_set
from psychometrics.errors import PsytestError
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models.base import ModelReply
from psychometrics.testing.cli import cli, one_line_error

litellm_map = pytest.mark.skipif(not price_map(), reason="litellm (and its price map) is not installed")
MINI = "openai/gpt-4o-mini"
HAIKU = "anthropic/claude-haiku-4-5"


def _plan(model: str = MINI, **design):
    options = {"personas": "trait-shaping", "persona_ids": ["baseline", "extraversion-very-high"], **design}
    spec = design_from_mapping(options, "design")
    return plan_requests([resolve_inventory("mini-ipip")], spec, model, {}, resolve_persona_set("trait-shaping"))


def _write(tmp_path, text: str):
    path = tmp_path / "prices.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# -- prices ----------------------------------------------------------------------------------------

@litellm_map
def test_map_prices_are_the_map_entry_read_through_the_provider_prefix():
    entry = price_map()["gpt-4o-mini"]
    price = price_for(MINI)
    assert (price.input, price.output) == (entry["input_cost_per_token"], entry["output_cost_per_token"])
    assert price.cached_input == entry["cache_read_input_token_cost"] and price.caching == "automatic"
    assert price.for_batch().input == entry["input_cost_per_token_batches"]
    haiku = price_for(HAIKU)
    assert haiku.caching == "explicit" and haiku.cache_write == price_map()["claude-haiku-4-5"]["cache_creation_input_token_cost"]
    assert haiku.min_cached_tokens == price_map()["claude-haiku-4-5"]["prompt_cache_min_tokens"]
    # an entry of another provider is not this model's price; an unknown model is unknown, not free
    assert map_price("anthropic/gpt-4o-mini") is None
    assert price_for("openai/no-such-model-psytest") is None


def test_local_and_simulated_models_are_free_and_a_price_file_wins(tmp_path):
    for model in ("local/qwen2.5-0.5b", "gguf:/x/y.gguf", "sim/e=1,seed=2"):
        assert price_for(model).free
    prices = load_price_file(_write(tmp_path, "models:\n  openai/my-model: {input: 0.3, output: 1.2, cached_input: 0.1}\n"
                                              "  gpt-4o-mini: {input: 1, output: 2}\n"))
    mine = price_for("openai/my-model", prices)
    assert math.isclose(mine.input, 0.3e-6) and math.isclose(mine.output, 1.2e-6) and mine.caching == "automatic"
    assert math.isclose(price_for(MINI, prices).input, 1e-6)  # by the name without the provider too


@pytest.mark.parametrize("text, needles", [
    ("models:\n  m/x: {input: 1}\n", ["models.m/x.output", "missing"]),
    ("models:\n  m/x: {input: -1, output: 1}\n", ["models.m/x.input", "not a price"]),
    ("models:\n  m/x: {input: .nan, output: 1}\n", ["models.m/x.input"]),
    ("models:\n  m/x: {input: 1, output: 1, inptu_cached: 2}\n", ["models.m/x.inptu_cached", "unknown field"]),
    ("currency: EUR\nmodels:\n  m/x: {input: 1, output: 1}\n", ["currency", "USD"]),
    ("- just a list\n", ["'models'"]),
    ("models:\n  m/x: {input: 1, output: 1, min_cached_tokens: 1.5}\n", ["min_cached_tokens"]),
])
def test_a_bad_price_file_is_one_line_naming_the_file_and_field(tmp_path, text, needles):
    path = _write(tmp_path, text)
    with pytest.raises(PsytestError) as caught:
        load_price_file(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_a_bad_price_file_on_the_command_line_exits_2(tmp_path, capsys):
    path = _write(tmp_path, "models:\n  m/x: {input: 1}\n")
    code, _, err = cli(capsys, "administer", "-m", "sim/e=1", "-i", "mini-ipip", "--prices", path, "--dry-run")
    one_line_error(code, err, str(path), "output")
    code, _, err = cli(capsys, "administer", "-m", "sim/e=1", "-i", "mini-ipip", "--prices", tmp_path / "none.yaml",
                       "--dry-run")
    one_line_error(code, err, "--prices", "no such file")


# -- tokens ----------------------------------------------------------------------------------------

@litellm_map
def test_openai_models_are_counted_with_their_encoding_others_with_the_stated_rule():
    import tiktoken

    counter = TokenCounter(MINI, "openai")
    assert "o200k_base" in counter.basis
    text = "Statement: I am the life of the party. Reply with the number of one option only."
    assert counter.count(text) == len(counter.encoding.encode(text)) != len(text) // CHARS_PER_TOKEN
    assert isinstance(counter.encoding, tiktoken.Encoding)
    claude = TokenCounter(HAIKU, "anthropic")
    assert claude.encoding is None and "4 characters per token" in claude.basis
    assert claude.count("x" * 403) == 100


# -- the estimate ----------------------------------------------------------------------------------

@litellm_map
def test_estimate_scales_with_the_design_and_batch_uses_batch_prices():
    price = price_for(MINI)
    one = estimate_cost(MINI, _plan(), price)
    three = estimate_cost(MINI, _plan(samples=3), price)
    assert three["requests"] == 3 * one["requests"] and three["input_tokens"] == 3 * one["input_tokens"]
    assert math.isclose(three["cost"], 3 * one["cost"], rel_tol=1e-12)
    batched = estimate_cost(MINI, _plan(), price, batch=True)
    entry = price_map()["gpt-4o-mini"]
    expected = (one["input_tokens"] * entry["input_cost_per_token_batches"]
                + one["output_tokens_max"] * entry["output_cost_per_token_batches"])
    assert math.isclose(batched["cost"], expected, rel_tol=1e-12) and batched["cost"] < one["cost"]
    # the short fixed prefix is below OpenAI's minimum: no discount, and the table says why
    assert one["cached_input_tokens"] == 0 and "below the 1,024-token minimum" in one["cache_basis"]
    # every factor's levels add up to the whole
    for factor in one["factors"]:
        assert math.isclose(sum(level["cost"] for level in factor["per_level"]), one["cost"], rel_tol=1e-9)
        assert sum(level["requests"] for level in factor["per_level"]) == one["requests"]
    persona = next(row for row in factor_costs(one) if row["factor"] == "persona")
    assert persona["levels"] == 2


def test_unknown_price_gives_tokens_and_no_cost():
    estimate = estimate_cost("openai/no-such-model-psytest", _plan(), None)
    assert estimate["cost"] is None and estimate["input_tokens"] > 0 and estimate["price"] is None


@pytest.mark.parametrize("caching", ["automatic", "explicit"])
def test_cached_prefix_discount_counts_each_cell_once(tmp_path, caching):
    """With a minimum the prefix reaches, every request after the first of its design cell reads the
    prefix from the cache; explicit caching pays the first at the cache-write price."""
    prices = load_price_file(_write(tmp_path, f"models:\n  test/model: {{input: 1, output: 4, cached_input: 0.1, "
                                              f"cache_write: 1.25, min_cached_tokens: 8, caching: {caching}}}\n"))
    price = price_for("test/model", prices)
    planned = _plan("test/model", option_orders=["original", "reversed"])
    estimate = estimate_cost("test/model", planned, price)
    counter = TokenCounter("test/model")
    if caching == "explicit":
        prefixes = [(m.content for m in p.request.messages if m.role == "system") for p in planned]
        prefixes = [tuple(texts) for texts in prefixes]
    else:
        from psychometrics.cost.estimate import _split_prompt

        prefixes = [tuple(_split_prompt(p)[0]) for p in planned]
    length = {key: sum(counter.count(t) for t in key) + 4 * len(key) for key in set(prefixes)}
    cells = len(set(prefixes))
    assert 1 < cells < len(planned)
    if caching == "automatic":
        cached_len = {k: 8 + 128 * ((v - 8) // 128) for k, v in length.items()}
    else:
        cached_len = length
    first = set()
    expected_cached = expected_written = 0
    for key in prefixes:
        if key in first:
            expected_cached += cached_len[key]
        else:
            first.add(key)
            expected_written += cached_len[key] if caching == "explicit" else 0
    assert estimate["cached_input_tokens"] == expected_cached > 0
    assert estimate["cache_write_tokens"] == expected_written
    plain = estimate["input_tokens"] * 1e-6 + estimate["output_tokens_max"] * 4e-6
    expected = plain - expected_cached * 0.9e-6 + expected_written * 0.25e-6
    assert math.isclose(estimate["cost"], expected, rel_tol=1e-9)
    assert math.isclose(estimate["caching_saving"], plain - expected, rel_tol=1e-9)


# -- the actual cost of a reply --------------------------------------------------------------------

def test_reply_cost_from_usage(tmp_path):
    prices = load_price_file(_write(tmp_path, "models:\n  t/m: {input: 2, output: 8, cached_input: 0.5, cache_write: 2.5, "
                                              "batch_input: 1, batch_output: 4}\n"))
    price = price_for("t/m", prices)
    reply = ModelReply(text="3", input_tokens=1000, output_tokens=10, cached_input_tokens=600)
    assert math.isclose(reply_cost(price, reply), (400 * 2 + 600 * 0.5 + 10 * 8) / 1e6)
    reply.extra["cache_write_input_tokens"] = 300
    assert math.isclose(reply_cost(price, reply), (100 * 2 + 600 * 0.5 + 300 * 2.5 + 10 * 8) / 1e6)
    batch = ModelReply(text="3", input_tokens=1000, output_tokens=10, extra={"batch": True})
    assert math.isclose(reply_cost(price, batch), (1000 * 1 + 10 * 4) / 1e6)
    assert reply_cost(price, ModelReply(text="3")) is None  # no usage: unknown, never 0
    assert reply_cost(None, reply) is None
    assert reply_cost(price_for("sim/e=1"), ModelReply(text="3")) == 0.0


# -- over HTTP: usage accounting and request bodies -------------------------------------------------

def _stored(run_dir):
    with sqlite3.connect(run_dir / "responses.sqlite") as conn:
        return conn.execute("SELECT request_id, item_index, input_tokens, cached_input_tokens, output_tokens, cost "
                            "FROM responses ORDER BY rowid").fetchall()


@litellm_map
def test_costs_stored_from_the_servers_usage_and_summed_once_per_request(tmp_path, monkeypatch):
    from psychometrics import api
    from psychometrics.testing.openai_server import start_server

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    price = price_for(MINI)
    estimates = []
    with start_server(prompt_cache="openai", keep_bodies=True) as server:
        outcome = api.administer(MINI, api_base=server.base_url, inventory=["mini-ipip"], out=tmp_path / "run",
                                 personas="trait-shaping", persona_ids=["baseline", "extraversion-very-high"],
                                 items_per_request=2, on_cost=estimates.append)
        sent = len(server.bodies)
    rows = _stored(tmp_path / "run")
    assert estimates and estimates[0]["requests"] == sent == len({r[0] for r in rows}) == 20
    per_request = {}
    for request_id, _, inp, cached, out, cost in rows:
        expected = ((inp - (cached or 0)) * price.input + (cached or 0) * price.cached_input + out * price.output)
        assert math.isclose(cost, expected, rel_tol=1e-12)
        per_request[request_id] = cost
    summary = outcome.as_dict()["cost"]
    assert math.isclose(summary["cost"], sum(per_request.values()), rel_tol=1e-12)  # not once per item row
    cached = sum({r[0]: r[3] or 0 for r in rows}.values())
    assert summary["cached_input_tokens"] == cached > 0
    assert math.isclose(summary["caching_saving"], cached * (price.input - price.cached_input), rel_tol=1e-12)
    # OpenAI caches by itself: the system message goes as plain text, unmarked
    assert all(isinstance(m["content"], str) for body in server.bodies for m in body["messages"])


def test_anthropic_style_usage_pays_cache_writes(tmp_path, monkeypatch):
    from psychometrics import api
    from psychometrics.testing.openai_server import start_server

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    path = _write(tmp_path, "models:\n  openai/claude-like: {input: 1, output: 5, cached_input: 0.1, cache_write: 1.25}\n")
    price = price_for("openai/claude-like", load_price_file(path))
    with start_server(prompt_cache="anthropic") as server:
        outcome = api.administer("openai/claude-like", api_base=server.base_url, inventory=["mini-ipip"],
                                 out=tmp_path / "run", personas="trait-shaping", persona_ids=["baseline"], prices=path)
        system_words = None
    rows = _stored(tmp_path / "run")
    first, later = rows[0], rows[1:]
    assert first[3] == 0 and all(r[3] > 0 for r in later)  # first writes, the others read
    system_words = later[0][3]
    assert math.isclose(first[5], ((first[2] - system_words) * price.input + system_words * price.cache_write
                                   + first[4] * price.output), rel_tol=1e-12)
    for _, _, inp, cached, out, cost in later:
        assert math.isclose(cost, (inp - cached) * price.input + cached * price.cached_input + out * price.output,
                            rel_tol=1e-12)
    assert math.isclose(outcome.as_dict()["cost"]["cost"], sum(r[5] for r in rows), rel_tol=1e-12)
    # the report carries the stored cost: summary.json and the page's header
    paths = api.report(tmp_path / "run")
    summary = json.loads(paths.summary.read_text(encoding="utf-8"))
    assert math.isclose(summary["cost"]["cost"], sum(r[5] for r in rows), rel_tol=1e-12)
    assert summary["cost"]["cached_input_tokens"] == sum(r[3] for r in rows)
    assert summary["cost"]["caching_saving"] is None  # the map has no price for this model: no saving invented
    page = paths.html.read_text(encoding="utf-8")
    assert "prompt cache" in page and f"{sum(r[3] for r in rows):,} of" in page


def test_claude_requests_mark_the_system_block_cacheable():
    from psychometrics.models.base import Message, ModelRequest
    from psychometrics.models.litellm_backend import LiteLLMBackend

    request = ModelRequest(messages=(Message("system", "You are calm.\n\nRate the statements."),
                                     Message("user", "Statement: I relax.")), choices=("1", "2"))
    marked = LiteLLMBackend(HAIKU)._call_kwargs(request)["messages"]
    assert marked[0]["content"] == [{"type": "text", "text": "You are calm.\n\nRate the statements.",
                                     "cache_control": {"type": "ephemeral"}}]
    assert marked[1] == {"role": "user", "content": "Statement: I relax."}
    assert LiteLLMBackend(MINI)._call_kwargs(request)["messages"][0]["content"] == "You are calm.\n\nRate the statements."
    pytest.importorskip("litellm")
    from psychometrics.models.litellm_backend import _litellm

    _litellm()
    from litellm.llms.anthropic.chat.transformation import AnthropicConfig

    body = AnthropicConfig().transform_request(model="claude-haiku-4-5", messages=marked,
                                               optional_params={"max_tokens": 16}, litellm_params={}, headers={})
    assert body["system"] == [{"type": "text", "text": "You are calm.\n\nRate the statements.",
                               "cache_control": {"type": "ephemeral"}}]


# -- --max-cost and the terminal -------------------------------------------------------------------

@litellm_map
def test_max_cost_refuses_before_anything_is_sent(tmp_path, capsys, monkeypatch):
    from psychometrics.testing.openai_server import start_server

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    with start_server(keep_bodies=True) as server:
        code, _, err = cli(capsys, "administer", "-m", MINI, "--api-base", server.base_url, "-i", "mini-ipip",
                           "--out", tmp_path / "run", "--max-cost", "0.000001")
        one_line_error(code, err, "--max-cost", "estimated at up to $", "20 requests")
        code, _, err = cli(capsys, "administer", "-m", "openai/no-such-model-psytest", "--api-base", server.base_url,
                           "-i", "mini-ipip", "--out", tmp_path / "run2", "--max-cost", "100")
        one_line_error(code, err, "--max-cost", "unknown", "--prices")
        assert server.bodies == []
        code, out, err = cli(capsys, "administer", "-m", MINI, "--api-base", server.base_url, "-i", "mini-ipip",
                             "--out", tmp_path / "run3", "--max-cost", "1")
        assert code == 0, err
        assert len(server.bodies) == 20
    lines = out.splitlines()
    assert lines[0].startswith("Estimated cost: up to $") and "20 requests to openai/gpt-4o-mini" in lines[0]
    assert any(line.startswith("Cost: $") for line in lines), out


@litellm_map
def test_a_paid_run_plans_once_and_a_refused_run_opens_no_directory(tmp_path, capsys, monkeypatch):
    """The cost check prices the run's own plan before the run directory is opened: one plan per command
    (at half a million requests a second plan was most of a minute); a resumed run is priced on what is
    left to send."""
    import psychometrics.design.plan as plan_module
    import psychometrics.run.directory as directory
    from psychometrics.testing.openai_server import start_server

    calls, plan = [], plan_module.plan_requests

    def counted(*args, **kwargs):
        calls.append(1)
        return plan(*args, **kwargs)

    monkeypatch.setattr(directory, "plan_requests", counted)
    monkeypatch.setattr(plan_module, "plan_requests", counted)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    with start_server(keep_bodies=True) as server:
        code, _, err = cli(capsys, "administer", "-m", MINI, "--api-base", server.base_url, "-i", "mini-ipip",
                           "--out", tmp_path / "refused", "--max-cost", "0.000001")
        one_line_error(code, err, "--max-cost", "20 requests")
        assert not (tmp_path / "refused").exists() and server.bodies == [] and len(calls) == 1
        code, out, err = cli(capsys, "administer", "-m", MINI, "--api-base", server.base_url, "-i", "mini-ipip",
                             "--out", tmp_path / "run", "--max-cost", "1")
        assert code == 0, err
        assert len(calls) == 2 and len(server.bodies) == 20 and "20 requests to openai/gpt-4o-mini" in out
        code, out, err = cli(capsys, "administer", "-m", MINI, "--api-base", server.base_url, "-i", "mini-ipip",
                             "--option-orders", "original,reversed", "--out", tmp_path / "run", "--max-cost", "1")
        assert code == 0, err
        assert len(calls) >= 3 and len(server.bodies) == 40
        assert "Estimated cost: up to $" in out and "20 requests to openai/gpt-4o-mini" in out.splitlines()[0]


@litellm_map
def test_dry_run_prints_the_cost_table_first(capsys):
    code, out, err = cli(capsys, "administer", "-m", MINI, "-i", "mini-ipip", "--samples", "2", "--dry-run")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("Estimated cost: up to $") and "40 requests" in lines[0]
    assert lines[1].split()[:2] == ["model", "requests"] and lines[3].startswith("openai/gpt-4o-mini")
    assert "o200k_base" in out and "Nothing was sent." in out
    code, out, _ = cli(capsys, "administer", "-m", "openai/no-such-model-psytest", "-i", "mini-ipip", "--dry-run")
    assert code == 0 and out.splitlines()[0].startswith("Estimated cost: UNKNOWN for openai/no-such-model-psytest")
    assert "not counted as free" in out
    code, out, _ = cli(capsys, "administer", "-m", MINI, "-i", "mini-ipip", "--dry-run", "--max-cost", "0.00001")
    assert code == 0 and "--max-cost $0.00001: a real run would refuse to start (estimate $0.00" in out
    code, _, err = cli(capsys, "administer", "-m", MINI, "-i", "mini-ipip", "--dry-run", "--max-cost", "-1")
    one_line_error(code, err, "--max-cost", ">= 0")
    code, out, _ = cli(capsys, "administer", "-m", "sim/e=1", "-i", "mini-ipip", "--dry-run")
    assert code == 0 and "Estimated cost" not in out and "cost: none (computed on this machine: free)" in out
    code, out, _ = cli(capsys, "administer", "-m", MINI, "-i", "mini-ipip", "--dry-run", "--json")
    plan = json.loads(out)
    assert plan["cost"]["requests"] == 20 and plan["cost"]["currency"] == "USD"


@litellm_map
def test_study_dry_run_gives_cost_per_model_and_total(tmp_path, capsys):
    study = tmp_path / "study.yaml"
    study.write_text(f"models: [{MINI}, {HAIKU}, sim/e=1]\ninventories: [mini-ipip]\nout: s\n", encoding="utf-8")
    code, out, err = cli(capsys, "study", study, "--dry-run", "--json")
    assert code == 0, err
    plan = json.loads(out)
    costs = {c["model"]: c["cost"] for c in plan["costs"]}
    assert costs["sim/e=1"] == 0 and costs[MINI] > 0 and costs[HAIKU] > costs[MINI]
    assert math.isclose(plan["cost"], sum(costs.values()))
    code, out, _ = cli(capsys, "study", study, "--dry-run")
    assert out.splitlines()[0].startswith("Estimated cost: up to $") and "total" in out


@litellm_map
def test_behave_dry_run_prices_its_token_estimate(capsys):
    code, out, err = cli(capsys, "behave", "-m", HAIKU, "--tasks", "dictator-game", "--dry-run", "--json")
    assert code == 0, err
    plan = json.loads(out)
    price = price_for(HAIKU)
    expected = plan["estimated_input_tokens"] * price.input + plan["estimated_output_tokens_max"] * price.output
    assert math.isclose(plan["cost"]["cost"], expected, rel_tol=1e-12)
    assert plan["cost"]["requests"] == plan["turns_to_send"]
    code, out, _ = cli(capsys, "behave", "-m", HAIKU, "--tasks", "dictator-game", "--dry-run")
    assert code == 0 and out.splitlines()[0].startswith("Estimated cost: up to $")


def test_the_report_names_endpoints_and_what_answered(tmp_path):
    """The run settings say where the run was sent and which model (and fingerprint) the server reported."""
    import csv

    from psychometrics import api
    from psychometrics.testing.openai_server import start_server

    with start_server() as server:
        api.administer("openai/psytest-sim", api_base=server.base_url, inventory=["mini-ipip"], out=tmp_path / "run")
    api.report(tmp_path / "run", out=tmp_path / "report")
    with open(tmp_path / "report" / "run_info.csv", newline="", encoding="utf-8") as handle:
        info = {row["key"]: row["value"] for row in csv.DictReader(handle)}
    assert server.base_url.rstrip("/") in info["endpoints"]
    assert info["answered by"].endswith(": 20 requests") and "cost" in info
