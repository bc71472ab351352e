"""Hostile input that used to crash or hang psytest: log-probabilities that are not log-probabilities,
sizes that would allocate gigabytes, regular expressions that backtrack for ever.

Each case runs through the code that handles it for real (a run, the command line, a task file); the
parametrised ids are the case list counted in the README's hostile-input figures ("Crashes and hangs").
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from psychometrics import limits
from psychometrics.testing.cli import cli

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
    from psychometrics.run.store import RunStore

    with RunStore(run / "responses.sqlite", read_only=True) as store:
        return list(store.rows())


@pytest.mark.parametrize("value", BAD_LOGPROBS.values(), ids=BAD_LOGPROBS.keys())
def test_a_bad_label_logprob_fails_that_request_only(value, tmp_path):
    """From a Python backend: the request is recorded as failed with the reason; the run goes on."""
    from psychometrics.design.plan import Design
    from psychometrics.inventories.library import resolve_inventory
    from psychometrics.models.simulated import SimulatedRespondent
    from psychometrics.run.directory import administer

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
    none); one that is a float but not a log-probability (800, 1e308, inf, NaN) fails that request. Never a
    traceback."""
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
    if isinstance(value, float) or value == 800:  # numbers, but not log-probabilities ("abc" is left out)
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
    from psychometrics.engine.send import distribution_summary

    position, expected, entropy, mass = distribution_summary({"1": -800.0, "2": -801.0}, ("1", "2"), (1, 2))
    p2 = math.exp(-1) / (1 + math.exp(-1))
    assert position == 0 and expected == pytest.approx(1 + p2, abs=1e-12)
    assert entropy == pytest.approx(-(1 - p2) * math.log(1 - p2) - p2 * math.log(p2), abs=1e-12)
    assert mass == 0.0  # e^-800 underflows; the distribution over the options is still known
    assert distribution_summary({"1": -math.inf}, ("1", "2"), (1, 2)) == (None, None, None, 0.0)
    assert distribution_summary({"2": math.log(0.25), "1": math.log(0.5)}, ("1", "2"), (1, 2))[3] == pytest.approx(0.75)


# -- sizes: every size in an input file has a stated limit, checked before anything is allocated -----

TASKS = Path(__file__).resolve().parent.parent / "psychometrics" / "behavior" / "tasks"
MINIMAL = Path(__file__).parent / "data" / "inventories" / "valid-minimal.yaml"


def _yaml(data) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10**6)


def _inventory(change):
    data = yaml.safe_load(MINIMAL.read_text(encoding="utf-8"))
    change(data)
    return data


def _wide(data):
    data["response_scale"] = {"min": 1, "max": 200_000_000, "labels": {1: "a", 2: "b"}}


def _wide_within_values(data):
    data["response_scale"] = {"min": -5_000, "max": 5_000, "labels": {1: "a"}}


def _many_items(data):
    data["items"] += [{"id": f"x{i}", "text": f"Item {i}."} for i in range(limits.ITEMS)]
    data["scales"][0]["items"] += [f"x{i}" for i in range(limits.ITEMS)]


def _many_paraphrases(data):
    data["items"][0]["paraphrases"] = [f"Wording {i}." for i in range(limits.PARAPHRASES + 1)]


def _long_item(data):
    data["items"][0]["text"] = "word " * limits.SHORT_TEXT


def _long_instructions(data):
    data["instructions"] = "Read. " * (limits.LONG_TEXT // 5)


def _many_norms(data):
    data["norms"] = [dict(data["norms"][0], group=f"g{i}") for i in range(limits.NORM_GROUPS + 1)]


def _task(name, change):
    data = yaml.safe_load((TASKS / f"{name}.yaml").read_text(encoding="utf-8"))
    change(data)
    return data


def _format_width(data):
    data["variants"][0]["turns"][0] = data["variants"][0]["turns"][0].replace("100 dollars", "{endowment:>999999999} dollars", 1)


def _nested_format(data):
    data["variants"][0]["params"]["w"] = 999999999
    data["variants"][0]["turns"][0] = data["variants"][0]["turns"][0].replace("100 dollars", "{endowment:>{w}} dollars", 1)


def _param_alias_bomb(data):
    data["variants"][0]["params"]["filler"] = ["lorem ipsum"] * 20_000
    data["variants"][0]["turns"][0] += "\n{filler}"


def _many_variants(data):
    data["variants"] = [dict(data["variants"][0], id=f"v{i}") for i in range(limits.VARIANTS + 1)]


def _many_turns(data):
    data["variants"][0]["turns"] = ["Hello."] * (limits.TURNS + 1)


def _many_listed(data):
    data["variants"][0]["items"] = [{"id": f"i{k}", "text": f"Thing {k}", "pattern": f"thing{k}x"}
                                    for k in range(limits.TASK_ITEMS + 1)]


def _many_checks(data):
    data["variants"][0]["checks"] = [{"include": f"w{k}"} for k in range(limits.CHECKS + 1)]


def _many_options(data):
    first = data["variants"][0]
    first["options"] = [dict(first["options"][0], id=f"o{k}", text=f"Option {k}") for k in range(limits.TASK_OPTIONS + 1)]


def _long_pattern(data):
    data["variants"][0]["items"][0]["pattern"] = "a" * (limits.PATTERN_CHARS + 1)


SIZE_FILES = {
    # id: (kind of file, content, what the one line must say)
    "response-scale-200000000": ("inventory", _inventory(_wide), "field 'max' must be at most 10,000, got 200000000"),
    "response-scale-10001-options": ("inventory", _inventory(_wide_within_values),
                                     "-5000..5000 is 10,001 response options, more than the 101 allowed"),
    "items-5001": ("inventory", _inventory(_many_items), f"has {limits.ITEMS + 5:,} entries, more than the 5,000 allowed"),
    "paraphrases-21": ("inventory", _inventory(_many_paraphrases), "field 'paraphrases' has 21 entries, more than the 20"),
    "item-text-10000-characters": ("inventory", _inventory(_long_item), "longer than the 2,000 characters allowed"),
    "instructions-100005-characters": ("inventory", _inventory(_long_instructions), "longer than the 100,000 characters"),
    "norm-groups-1001": ("inventory", _inventory(_many_norms), "has 1,001 entries, more than the 1,000 allowed"),
    "keys-response-range-200000000": ("keys", {"response_range": [1, 200_000_000], "scales": {"E": ["e1"]}},
                                      "response_range [1, 200000000] is wider than the 101 response options"),
    "personas-10001": ("personas", {"id": "many", "name": "Many", "personas": [
        {"id": f"p{i}", "text": "Calm."} for i in range(limits.PERSONAS + 1)]}, "List should have at most 10000 items"),
    "persona-text-100001-characters": ("personas", {"id": "long", "name": "Long", "personas": [
        {"id": "p", "text": "x" * (limits.LONG_TEXT + 1)}]}, "String should have at most 100000 characters"),
    "design-option-orders-101": ("design", {"option_orders": ["original"] * 101},
                                 "option_orders: List should have at most 100 items"),
    "design-templates-21": ("design", {"templates": ["numbered"] * 21}, "templates: List should have at most 20 items"),
    "design-persona-ids-10001": ("design", {"personas": "trait-shaping", "persona_ids": ["x"] * 10_001},
                                 "persona_ids: List should have at most 10000 items"),
    "task-format-width-999999999": ("task", _task("dictator-game", _format_width),
                                    "placeholder '{endowment:>999999999}' has a nested field or a width or precision over 100"),
    "task-format-nested-width": ("task", _task("dictator-game", _nested_format), "placeholder '{endowment:>{w}}' has a nested field"),
    "task-param-fills-a-megabyte": ("task", _task("dictator-game", _param_alias_bomb),
                                    "characters once its placeholders are filled, more than the 100,000 allowed"),
    "task-variants-1001": ("task", _task("dictator-game", _many_variants), "List should have at most 1000 items"),
    "task-turns-7": ("task", _task("dictator-game", _many_turns), "List should have at most 6 items"),
    "task-listed-items-101": ("task", _task("planted-errors", _many_listed), "List should have at most 100 items"),
    "task-checks-51": ("task", _task("formatting-constraints", _many_checks), "List should have at most 50 items"),
    "task-options-9": ("task", _task("social-choice", _many_options), "9 options; give 2 to 8"),
    "task-pattern-1001-characters": ("task", _task("planted-errors", _long_pattern), "String should have at most 1000 characters"),
}
SIZE_COMMANDS = {
    "inventory": lambda path: ["inventories", "validate", path],
    "keys": lambda path: ["analyze", "data.csv", "--keys", path],
    "personas": lambda path: ["personas", "show", path],
    "design": lambda path: ["administer", "--model", "sim", "--design", path, "--dry-run"],
    "task": lambda path: ["tasks", "validate", path],
}


@pytest.mark.parametrize("name", SIZE_FILES)
def test_a_size_beyond_its_limit_is_one_line_naming_field_and_limit(name, tmp_path, capsys):
    kind, content, needle = SIZE_FILES[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(_yaml(content), encoding="utf-8")
    assert path.stat().st_size <= limits.YAML_BYTES  # the limit at stake is the field's, not the file's
    code, out, err = cli(capsys, *SIZE_COMMANDS[kind](str(path)))
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(f"psytest: error: {path}"), err
    assert needle in err, (needle, err)


def test_a_response_scale_of_200000000_is_refused_at_once(tmp_path):
    """The red-team case, as a process: refused before anything is allocated (it took 10-27 s to die)."""
    path = tmp_path / "wide.yaml"
    path.write_text(_yaml(_inventory(_wide)), encoding="utf-8")
    for args in (["inventories", "validate", path], ["administer", "--model", "sim", "-i", path, "--dry-run"],
                 ["inventories", "show", path]):
        result = subprocess.run([sys.executable, "-m", "psychometrics", *map(str, args)], capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and "at most 10,000" in result.stderr


def test_behave_refuses_more_conversations_than_one_run_holds(capsys):
    code, _, err = cli(capsys, "behave", "--model", "sim", "--tasks", "all", "--personas", "neutral-biographies",
                       "--samples", "10000", "--dry-run")
    assert code == 2 and "conversations planned, more than the 2,000,000 one run holds" in err


CSV_CASES = {
    "cell-131073-characters": ("e1,e2\n1," + "9" * 131_073 + "\n", "line 2: a cell longer than the 131,072 characters"),
    "line-without-end": (None, "a line longer than 10,000,000 characters"),
}


@pytest.mark.parametrize("name", CSV_CASES)
def test_item_data_beyond_csv_limits_is_one_line(name, tmp_path, capsys):
    text, needle = CSV_CASES[name]
    path = Path("/dev/zero") if text is None else tmp_path / f"{name}.csv"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    code, _, err = cli(capsys, "analyze", str(path), "--inventory", "mini-ipip")
    assert code == 2 and len(err.splitlines()) == 1 and str(path) in err and needle in err, err


def test_item_data_rows_and_cells_are_bounded(tmp_path, capsys, monkeypatch):
    path = tmp_path / "data.csv"
    path.write_text("q1\n" + "3\n" * 12, encoding="utf-8")
    monkeypatch.setattr(limits, "ITEM_DATA_ROWS", 10)
    code, _, err = cli(capsys, "analyze", str(path), "--inventory", "mini-ipip")
    assert code == 2 and "more than 10 rows" in err
    monkeypatch.setattr(limits, "ITEM_DATA_ROWS", 1_000_000)
    monkeypatch.setattr(limits, "ITEM_DATA_CELLS", 100)
    header = ",".join(f"q{i}" for i in range(1, 21))
    path.write_text(header + "\n" + (",".join(["3"] * 20) + "\n") * 6, encoding="utf-8")
    code, _, err = cli(capsys, "analyze", str(path), "--inventory", "mini-ipip")
    assert code == 2 and "6 rows x 20 items is more than the 100 cells" in err


def test_the_limits_table_in_docs_is_the_one_in_code():
    docs = (Path(__file__).resolve().parent.parent / "docs" / "security.md").read_text(encoding="utf-8")
    for what, limit, _ in limits.TABLE:
        assert f"| {what} | {limit} |" in docs, what


# -- regular expressions from task files ---------------------------------------------------------------

CATASTROPHIC = {
    "nested-plus": (r"(a+)+$", "repeats a part that itself repeats"),
    "nested-star-word": (r"(\w+\s?)*$", "repeats a part that itself repeats"),
    "overlapping-alternatives": (r"(a|aa)+$", "repeats a group of alternatives"),
    "same-alternatives": (r"(x|x)*y", "repeats a group of alternatives"),
    "optional-in-fixed-repeat": (r"(a?){30}a{30}", "repeats a part that itself repeats"),
    "lookahead-nested": (r"(?=(a+)+b)", "repeats a part that itself repeats"),
    "backreference": (r"(\d+)\1", "uses a backreference"),
    "named-backreference": (r"(?P<x>\w+) (?P=x)", "uses a backreference"),
    "conditional": (r"(a)?(?(1)b|c)", "uses a backreference"),
    "does-not-compile": (r"(unclosed", "does not compile"),
}


def _task_with_pattern(tmp_path, pattern: str) -> Path:
    data = _task("planted-errors", lambda d: d["variants"][0]["items"][0].update(pattern=pattern))
    path = tmp_path / "task.yaml"
    path.write_text(_yaml(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", CATASTROPHIC)
def test_a_catastrophic_pattern_is_refused_when_the_task_is_loaded(name, tmp_path):
    pattern, needle = CATASTROPHIC[name]
    path = _task_with_pattern(tmp_path, pattern)
    for args in (["tasks", "validate", path], ["behave", "--model", "sim", "--tasks", path, "--dry-run"],
                 ["tasks", "show", path]):
        result = subprocess.run([sys.executable, "-m", "psychometrics", *map(str, args)], capture_output=True,
                                text=True, timeout=300)  # a generous guard: the refusal takes a second
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert f"{path}: variant 'v01': field 'items': item 'pipe' pattern {needle}" in result.stderr


def test_a_slow_pattern_on_a_long_reply_stops_with_one_line_not_a_hang():
    """The time limit behind the static check: a pattern that backtracks for ever is stopped."""
    from psychometrics.behavior import patterns
    from psychometrics.behavior.task import TaskError

    assert patterns.search(r"(?<![\d.])50(?:\.00)?(?![\d])", "it is 50.00", "t.yaml", "item 'x'") is not None
    with pytest.raises(TaskError, match=r"t.yaml: variant 'v01', item 'x': pattern '\(a\+\)\+\$' took more than 1 s "
                                        r"on 5,001 characters of text; simplify it"):
        patterns.search(r"(a+)+$", "a" * 5000 + "!", "t.yaml", "variant 'v01', item 'x'")


def test_shipped_patterns_pass_the_check_and_match_as_re_does():
    import re

    from psychometrics.behavior import patterns
    from psychometrics.behavior.regex_examples import item_example
    from psychometrics.behavior.task import resolve_tasks

    checked = 0
    for task in resolve_tasks("all"):
        for variant in task.variants:
            for item in variant.items or ():
                if item.pattern:
                    assert patterns.pattern_problem(item.pattern) is None, (task.id, item.pattern)
                    for text in (item.text, f" {item_example(item)} ", "nothing here"):
                        ours = patterns.search(item.pattern, text, task.source, item.id)
                        theirs = re.search(item.pattern, text, re.IGNORECASE)
                        assert (ours and ours.span()) == (theirs and theirs.span()), (item.pattern, text)
                    checked += 1
    assert checked >= 90  # quiz-claim (issue 16: replaced by calibration) carried 50 of the once 130 patterns


def test_a_reply_far_beyond_max_tokens_is_missing_data_not_minutes_of_reading(tmp_path):
    """A server that ignores max_tokens and sends 200,000 characters: the conversation is stored and scored
    missing (too_long) at once instead of every scorer reading it for minutes."""
    from psychometrics.behavior.analysis import behavior_frame
    from psychometrics.behavior.runner import BehaviorDesign, behave
    from psychometrics.behavior.task import resolve_tasks
    from psychometrics.models.base import ModelBackend, ModelReply

    class Verbose(ModelBackend):
        name = "verbose"

        async def complete(self, request):
            return ModelReply(text="I give 5 dollars. " * 11_112, output_tokens=64)

    result = behave(Verbose(), resolve_tasks("dictator-game"), BehaviorDesign(variants=2), tmp_path / "b")
    assert result.stats.outcomes == {"unparseable": 2}
    frame = behavior_frame(tmp_path / "b")
    assert list(frame["outcome"]) == ["unparseable", "unparseable"] and frame["score"].isna().all()


def test_reference_loadings_from_a_device_or_too_big_is_one_line(tmp_path, capsys, monkeypatch):
    data = tmp_path / "d.csv"
    data.write_text("e1,e2,e3,a1,a2\n" + "".join(f"{1 + r % 5},{1 + (r * 2) % 5},{1 + (r * 3) % 5},{1 + (r + 1) % 5},"
                                                  f"{1 + (r + 3) % 5}\n" for r in range(12)), encoding="utf-8")
    keys = tmp_path / "k.yaml"
    keys.write_text("response_range: [1, 5]\nscales: {E: [e1, -e2, e3], A: [a1, -a2]}\n", encoding="utf-8")
    code, _, err = cli(capsys, "analyze", str(data), "--keys", str(keys), "--reference-loadings", "/dev/zero")
    assert code == 2 and err == "psytest: error: /dev/zero: not a regular file; give a CSV of loadings\n"
    big = tmp_path / "loadings.csv"
    big.write_text("item,F1\n" + "e1,0.5\n" * 10, encoding="utf-8")
    monkeypatch.setattr(limits, "JSON_BYTES", 50)
    code, _, err = cli(capsys, "analyze", str(data), "--keys", str(keys), "--reference-loadings", str(big))
    assert code == 2 and f"{big}: larger than the 50 bytes a CSV of loadings may have" in err
