"""Hostile input, class "silent wrong data": input that used to be accepted and then read wrongly.

Each case is refused with one line naming the file, option or field (or, for a server's reply, recorded
as a failure with its reason and sent again on the next run): duplicate columns and ids, response labels
the parser cannot tell apart, more options than letters, non-JSON YAML types whose order depends on
``PYTHONHASHSEED``, reply content that is not text, and label log-probabilities that are not a
distribution. The case ids are the tally in the README (``docs/security.md`` lists what each guards).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from psychometrics.testing.cli import cli, one_line_error
from psychometrics.design.plan import Design
from psychometrics.errors import PsytestError
from psychometrics.inventories.model import inventory_from_data, load_inventory
from psychometrics.models.base import InvalidReplyError, Message, ModelReply, ModelRequest, check_label_logprobs
from psychometrics.models.litellm_backend import LiteLLMBackend, map_top_logprobs, reply_text
from psychometrics.models.openai_http import OpenAIHTTPBackend
from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.engine.parse import parse_reply
from psychometrics.run.directory import administer
from psychometrics.run.store import RunStore
from psychometrics.testing.openai_server import start_server
from psychometrics.yaml_io import parse_yaml

DATA = Path(__file__).parent / "data"
MINIMAL = DATA / "inventories" / "valid-minimal.yaml"
LABELS = """    1: Very inaccurate
    2: Moderately inaccurate
    3: Neither accurate nor inaccurate
    4: Moderately accurate
    5: Very accurate
"""


def minimal_with(tmp_path: Path, name: str, old: str, new: str) -> Path:
    text = MINIMAL.read_text(encoding="utf-8")
    assert old in text, old
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


# -- duplicate columns, ids and design levels -------------------------------------------------------

DUPLICATES = {
    # id: (files to write {name: text}, argv with {tmp} for the directory, words the one line must hold)
    "analyze-same-column-twice": (
        {"data.csv": "e1,e2,e3,a1,a2,e1\n1,2,3,4,5,5\n2,2,2,2,2,1\n"},
        ["analyze", "{tmp}/data.csv", "--inventory", str(MINIMAL)], ["data.csv", "column 'e1' appears twice"]),
    "analyze-same-column-after-spaces": (
        {"data.csv": "e1,e2,e3,a1,a2, e2 \n1,2,3,4,5,5\n2,2,2,2,2,1\n"},
        ["analyze", "{tmp}/data.csv", "--inventory", str(MINIMAL)], ["data.csv", "column 'e2' appears twice"]),
    "reference-loadings-item-twice": (
        {"data.csv": "e1,e2,e3,a1,a2\n1,2,3,4,5\n2,2,2,2,2\n", "load.csv": "item,F1,F2\ne1,.7,0\ne1,.1,0\n"},
        ["analyze", "{tmp}/data.csv", "--inventory", str(MINIMAL), "--reference-loadings", "{tmp}/load.csv"],
        ["load.csv", "'e1' appears twice"]),
    "reference-loadings-factor-twice": (
        {"data.csv": "e1,e2,e3,a1,a2\n1,2,3,4,5\n2,2,2,2,2\n", "load.csv": "item,F1,F1\ne1,.7,0\ne2,.1,0\n"},
        ["analyze", "{tmp}/data.csv", "--inventory", str(MINIMAL), "--reference-loadings", "{tmp}/load.csv"],
        ["load.csv", "'F1' appears twice"]),
}


@pytest.mark.parametrize("case", sorted(DUPLICATES))
def test_duplicates_are_refused_with_one_line(case, tmp_path, capsys):
    files, argv, needles = DUPLICATES[case]
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    code, _, err = cli(capsys, *argv)
    one_line_error(code, err, *needles)
    assert not list(tmp_path.glob("*-analysis"))  # refused before anything was written


def test_two_task_files_with_one_id_are_refused(tmp_path, capsys):
    shipped = Path(__file__).resolve().parents[1] / "psychometrics" / "behavior" / "tasks" / "dictator-game.yaml"
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(shipped.read_text(encoding="utf-8"), encoding="utf-8")
    second.write_text(shipped.read_text(encoding="utf-8").replace("name: ", "name: Changed ", 1), encoding="utf-8")
    code, _, err = cli(capsys, "behave", "--model", "sim", "--tasks", f"{first},{second}", "--dry-run")
    one_line_error(code, err, str(second), "'dictator-game' is also the id of", str(first))


# -- response labels the parser cannot tell apart ----------------------------------------------------

LABEL_CASES = {
    "labels-equal-up-to-case": ("    1: a\n    2: b\n    3: c\n    4: d\n    5: A\n", "values 1 and 5 ('a', 'A')"),
    "worded-labels-differ-in-case": (LABELS.replace("Very accurate", "very INACCURATE"),
                                     "values 1 and 5 ('Very inaccurate', 'very INACCURATE')"),
    "labels-differ-in-punctuation-and-spaces": (LABELS.replace("5: Very accurate", "5: 'Very  inaccurate!'"),
                                                "values 1 and 5"),
    "labels-differ-in-unicode-form": (LABELS.replace("4: Moderately accurate", "4: Caf\u00e9")
                                      .replace("5: Very accurate", "5: Cafe\u0301"), "values 4 and 5"),
    "labels-full-width-letters": (LABELS.replace("5: Very accurate", "5: \uff36ery inaccurate"), "values 1 and 5"),
    "label-without-letters": (LABELS.replace("3: Neither accurate nor inaccurate", "3: '---'"),
                              "value 3 ('---') has no letter or digit"),
}


@pytest.mark.parametrize("case", sorted(LABEL_CASES))
def test_labels_the_parser_cannot_tell_apart_are_refused_on_load(case, tmp_path, capsys):
    labels, needle = LABEL_CASES[case]
    path = minimal_with(tmp_path, case, LABELS, labels)
    with pytest.raises(PsytestError, match="response_scale.labels"):
        load_inventory(path)
    code, _, err = cli(capsys, "inventories", "validate", str(path))
    assert code == 2 and str(path) in err and needle in err and "response_scale.labels" in err


def test_the_parser_reads_replies_in_any_unicode_form():
    """NFC and NFD spellings of one option are the same answer (the model may send either)."""
    options = ("Tr\u00e8s peu", "Assez", "Beaucoup")
    assert parse_reply("Tre\u0300s peu", options, options).position == 0
    assert parse_reply("\uff21ssez", options, options).position == 1  # full-width A


def _big_scale(tmp_path: Path, options: int) -> Path:
    labels = "".join(f"    {v}: Level {v} of {options}\n" for v in range(1, options + 1))
    text = MINIMAL.read_text(encoding="utf-8").replace("  max: 5\n", f"  max: {options}\n").replace(LABELS, labels)
    path = tmp_path / f"scale-{options}.yaml"
    path.write_text(text, encoding="utf-8")
    load_inventory(path)  # a valid inventory: the problem is only the lettered template
    return path


@pytest.mark.parametrize("template", ["lettered", "self-report"])
def test_more_options_than_letters_are_refused_not_dropped(template, tmp_path, capsys):
    path = _big_scale(tmp_path, 27)
    code, _, err = cli(capsys, "administer", "--model", "sim", "-i", str(path), "--templates", template, "--dry-run")
    one_line_error(code, err, f"--templates {template}", "27 response options", "A-Z")
    ok, out, _ = cli(capsys, "administer", "--model", "sim", "-i", str(path), "--templates", "numbered", "--dry-run")
    assert ok == 0 and "5 requests planned" in out
    big = load_inventory(_big_scale(tmp_path, 26))  # 26 still fit, every one shown and parsed
    from psychometrics.design.prompts import TEMPLATES, render_item

    prompt = render_item(big, big.items[0], template=TEMPLATES[template])
    assert len(prompt.choices) == 26 and prompt.choices[-1] == "Z" and "Z. Level 26 of 26" in prompt.messages[1].content


@pytest.mark.parametrize("template,label", [("numbered", "3"), ("lettered", "C"), ("self-report", "b")])
def test_option_words_that_look_like_labels_are_refused_for_that_template(template, label, tmp_path, capsys):
    path = minimal_with(tmp_path, f"bare-{template}", "3: Neither accurate nor inaccurate", f"3: '{label}'")
    code, _, err = cli(capsys, "administer", "--model", "sim", "-i", str(path), "--templates", template, "--dry-run")
    one_line_error(code, err, f"--templates {template}", f"value 3 ('{label}')")
    ok, _, _ = cli(capsys, "administer", "--model", "sim", "-i", str(path), "--templates", "worded", "--dry-run")
    assert ok == 0


# -- YAML types that JSON cannot say -----------------------------------------------------------------

YAML_TYPES = {
    "set": ("a: !!set {x, y}\n", "a set (!!set)"),
    "set-inside-a-list": ("a: [b, !!set {c}]\n", "a set (!!set)"),
    "timestamp": ("version: 2024-05-01\n", "a date or time"),
    "binary": ("a: !!binary aGVsbG8=\n", "binary data"),
    "ordered-map": ("a: !!omap [x: 1, y: 2]\n", "an ordered map"),
    "pairs": ("a: !!pairs [x: 1]\n", "a list of pairs"),
    "boolean-key": ("yes: 1\n", "the key 'yes' is read as a boolean"),
    "null-key": ("~: 1\n", "the key '~' is read as null"),
    "fraction-key": ("1.5: x\n", "the key '1.5' is read as a fraction"),
    "date-key": ("2001-01-01: x\n", "a date or time"),
}


@pytest.mark.parametrize("case", sorted(YAML_TYPES))
def test_yaml_types_json_cannot_say_are_refused_with_their_line(case):
    text, needle = YAML_TYPES[case]
    with pytest.raises(PsytestError) as caught:
        parse_yaml("# a comment\n" + text, "file.yaml")
    assert str(caught.value).startswith("file.yaml: line 2: ") and needle in str(caught.value)


def test_numbers_and_text_keys_still_read():
    assert parse_yaml("1: one\nb: [1, 2.5, true, null, 'x']\n", "f.yaml") == {1: "one", "b": [1, 2.5, True, None, "x"]}


_HASH = ("import sys; from pathlib import Path; from psychometrics.inventories.model import load_inventory\n"
         "from psychometrics.errors import PsytestError\n"
         "try: print(load_inventory(Path(sys.argv[1])).content_hash)\n"
         "except PsytestError as exc: print('error:', exc)\n")


def _hash_under(seed: str, path: Path) -> str:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run([sys.executable, "-c", _HASH, str(path)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_content_hashes_do_not_depend_on_the_hash_seed(tmp_path):
    as_set = minimal_with(tmp_path, "set-paraphrases",
                          "paraphrases: [Find it easy to make friends., Make new friends without difficulty.]",
                          "paraphrases: !!set {Find it easy to make friends., Make new friends without difficulty., "
                          "Befriend people quickly., Get to know people fast.}")
    refused = {_hash_under(seed, as_set) for seed in ("1", "2")}
    assert len(refused) == 1 and "a set (!!set)" in refused.pop()
    as_list = minimal_with(tmp_path, "list-paraphrases", "Make new friends without difficulty.]",
                           "Make new friends without difficulty., Befriend people quickly., Get to know people fast.]")
    hashes = {_hash_under(seed, as_list) for seed in ("1", "2", "3")}
    assert len(hashes) == 1 and len(hashes.pop()) == 64


def test_sets_through_the_python_api_are_refused_too():
    from psychometrics.yaml_io import load_yaml_file

    data = load_yaml_file(MINIMAL)
    data["items"][0]["paraphrases"] = {"Find it easy to make friends.", "Make new friends without difficulty."}
    with pytest.raises(PsytestError, match="must be a list, got set"):
        inventory_from_data(data, "api")


# -- reply content that is not text ------------------------------------------------------------------

CONTENT_SHAPES = {
    # id: (content, extra message fields, expected text or the failure reason)
    "text-parts-joined": ([{"type": "text", "text": "4"}, {"type": "text", "text": " (Moderately accurate)"}], {},
                          "4 (Moderately accurate)"),
    "text-and-image-parts": ([{"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "2"}], {}, "2"),
    "number": (4, {}, InvalidReplyError("a number (int), not text")),
    "object": ({"answer": 4}, {}, InvalidReplyError("an object (dict), not text")),
    "null-no-refusal": (None, {}, InvalidReplyError("null (no text and no refusal)")),
    "null-with-refusal": (None, {"refusal": "I cannot rate myself."}, "I cannot rate myself."),
    "empty-parts": ([], {}, InvalidReplyError("an empty list of content parts")),
    "parts-without-text": ([{"type": "image_url", "image_url": {"url": "x"}}], {},
                           InvalidReplyError("a list of content parts with no text")),
    "text-part-with-a-number": ([{"type": "text", "text": 4}], {}, InvalidReplyError("a text part whose text is int")),
}
REQUEST = ModelRequest((Message("system", "Rate."), Message("user", "Options:\n1. Low\n2. High\n\nStatement: I talk.")),
                       ("1", "2"))


def _shape(content, extra):
    def rewrite(body):
        body["choices"][0]["message"].update(content=content, **extra)
        return body
    return rewrite


def _complete(backend, request):
    async def once():
        try:
            return await backend.complete(request)
        finally:
            await backend.aclose()
    return asyncio.run(once())


@pytest.fixture(params=["direct-http", "litellm"])
def backend_kind(request, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-psytest-not-a-key")
    return request.param


def _backend(kind: str, base_url: str):
    cls = OpenAIHTTPBackend if kind == "direct-http" else LiteLLMBackend
    return cls("openai/psytest-sim", api_base=base_url, timeout_s=20)


@pytest.mark.parametrize("shape", sorted(CONTENT_SHAPES))
def test_both_backends_read_a_reply_content_the_same_way(shape, backend_kind):
    content, extra, expected = CONTENT_SHAPES[shape]
    with start_server(SimulatedRespondent("sim/seed=1"), rewrite=_shape(content, extra)) as server:
        backend = _backend(backend_kind, server.base_url)
        if isinstance(expected, Exception):
            with pytest.raises(InvalidReplyError, match=str(expected).replace("(", r"\(").replace(")", r"\)")):
                _complete(backend, REQUEST)
        else:
            assert _complete(backend, REQUEST).text == expected
    assert reply_text({"content": content, **extra}, "probs") == (None if isinstance(expected, Exception) else expected)


def test_a_reply_that_is_not_text_is_a_failure_sent_again_next_run(backend_kind, tmp_path):
    inventory = load_inventory(MINIMAL)
    numbers = {"on": True}

    def rewrite(body):
        if numbers["on"]:
            body["choices"][0]["message"]["content"] = 4
        return body

    with start_server(SimulatedRespondent("sim/seed=1"), rewrite=rewrite) as server:
        run = tmp_path / "run"
        # every request gets the same bad reply: the run stops (circuit breaker) with the failures stored
        with pytest.raises(PsytestError, match="the first 5 requests all failed"):
            administer(_backend(backend_kind, server.base_url), [inventory], Design(), run, concurrency=2)
        with RunStore(run / "responses.sqlite", read_only=True) as store:
            rows = list(store.rows())
        assert len(rows) == 5 and all(r.outcome == "error" and "InvalidReplyError" in r.error and "a number (int)" in r.error
                   and r.raw_reply is None for r in rows)
        numbers["on"] = False  # the server mends its ways: the next run sends exactly the failed requests
        second = administer(_backend(backend_kind, server.base_url), [inventory], Design(), run, concurrency=2)
        assert second.stats.sent == 5 and second.stats.failed == 0 and second.stats.already_answered == 0
        with RunStore(run / "responses.sqlite", read_only=True) as store:
            assert {r.outcome for r in store.rows()} <= {"valid", "refusal", "unparseable", "out_of_range", "multiple"}


# -- label log-probabilities that are not a distribution ---------------------------------------------

def _logprobs(entries):
    def rewrite(body):
        first = body["choices"][0]["logprobs"]["content"][0]
        first["top_logprobs"] = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in entries]
        return body
    return rewrite


PROBS_REQUEST = ModelRequest(REQUEST.messages, ("1", "2"), mode="probs")
LOGPROB_CASES = {
    # id: (top_logprobs the server sends, expected label log-probabilities or the failure reason)
    "positive-logprob-mass-634": ([("2", 6.452), ("1", -1.0)], "above 0"),
    "duplicated-labels-sum-above-1": ([("2", -0.1), (" 2", -0.1), ("1", -0.5)], "more than 1"),
    "same-entry-listed-three-times": ([("2", -0.5), ("2", -0.5), ("2", -0.5), ("1", -1.5)],
                                      {"2": -0.5, "1": -1.5}),
    "distinct-tokens-of-one-label-summed": ([("2", math.log(0.3)), (" 2", math.log(0.2)), ("1", math.log(0.4))],
                                            {"2": math.log(0.5), "1": math.log(0.4)}),
    "rounding-above-zero-read-as-zero": ([("2", 0.0004), ("x", -12.0)], {"2": 0.0}),
    "nan-logprob": ([("2", float("nan")), ("1", -1.0)], "not a number"),
    "infinite-logprob": ([("2", float("inf"))], "not a number"),
    "minus-infinity-is-probability-zero": ([("2", -0.1), ("1", float("-inf"))], {"2": -0.1}),
}


@pytest.mark.parametrize("case", sorted(LOGPROB_CASES))
def test_label_logprobs_must_be_a_distribution_on_both_backends(case, backend_kind):
    entries, expected = LOGPROB_CASES[case]
    with start_server(SimulatedRespondent("sim/seed=1"), rewrite=_logprobs(entries)) as server:
        backend = _backend(backend_kind, server.base_url)
        if isinstance(expected, str):
            with pytest.raises(InvalidReplyError, match=expected):
                _complete(backend, PROBS_REQUEST).cleaned()
            return
        reply = _complete(backend, PROBS_REQUEST).cleaned()
    assert reply.choice_logprobs == pytest.approx(expected)
    assert sum(math.exp(v) for v in reply.choice_logprobs.values()) <= 1 + 1e-9


def test_positive_logprobs_from_any_backend_are_a_failure_not_mass_634(tmp_path):
    with pytest.raises(InvalidReplyError, match="above 0"):
        ModelReply(choice_logprobs={"1": 6.452, "2": -3.0}).cleaned()
    with pytest.raises(InvalidReplyError, match="sum to 1.8"):
        ModelReply(choice_logprobs={"1": math.log(0.9), "2": math.log(0.9)}).cleaned()
    assert check_label_logprobs({"1": 1e-4, "2": float("-inf")}) == {"1": 0.0}
    assert map_top_logprobs([("1", -0.2), ("1", -0.2)], ("1", "2")) == {"1": -0.2}


def test_probs_run_records_impossible_logprobs_as_failures(tmp_path):
    inventory = load_inventory(MINIMAL)
    with start_server(SimulatedRespondent("sim/seed=1"), rewrite=_logprobs([("3", 6.452), ("1", -2.0)])) as server:
        result = administer(_backend("direct-http", server.base_url), [inventory], Design(modes=["probs"]),
                            tmp_path / "run", concurrency=2)
    assert result.stats.failed == 5
    with RunStore(tmp_path / "run" / "responses.sqlite", read_only=True) as store:
        rows = list(store.rows())
    assert all(r.error and "above 0" in r.error and r.option_mass is None for r in rows)
    assert json.dumps([r.option_mass for r in rows]) == json.dumps([None] * 5)


# -- beyond the examples: the same class elsewhere ----------------------------------------------------


def test_a_statement_answered_twice_differently_is_multiple_not_the_first():
    from psychometrics.engine.parse import parse_many

    choices, options = ("1", "2", "3"), ("Low", "Mid", "High")
    conflicting = parse_many("S1: 1\nS2: 3\nS1: 2", 2, choices, options)
    assert [p.outcome for p in conflicting] == ["multiple", "valid"] and conflicting[1].position == 2
    repeated = parse_many("S1: 1\nS2: 3\nS1: 1.", 2, choices, options)  # the same answer twice is one answer
    assert [(p.outcome, p.position) for p in repeated] == [("valid", 0), ("valid", 2)]


@pytest.mark.parametrize("rows,needle", [
    ("1,2,3,4,5,9\n", "row 2 has 6 cells but the header has 5"),
    ("1,2,3,4,5\n2,2,2,2,5,3\n", "row 3 has 6 cells"),
])
def test_a_row_with_more_cells_than_the_header_is_refused(rows, needle, tmp_path, capsys):
    data = tmp_path / "data.csv"
    data.write_text("e1,e2,e3,a1,a2\n" + rows)
    code, _, err = cli(capsys, "analyze", data, "--inventory", str(MINIMAL), "--out", tmp_path / "out")
    one_line_error(code, err, str(data), needle)


def test_trailing_empty_cells_and_blank_lines_are_not_respondents(tmp_path, capsys):
    from psychometrics.inventories.item_data import load_item_data

    data = tmp_path / "data.csv"
    data.write_text("e1,e2,e3,a1,a2\n1,2,3,4,5,,\n\n2,2,2,2,2\n")
    matrix = load_item_data(data, load_inventory(MINIMAL))
    assert matrix.shape == (2, 5) and not matrix.isna().any().any()


def test_a_keys_file_trait_for_a_scale_it_lacks_is_refused(tmp_path, capsys):
    keys = tmp_path / "keys.yaml"
    keys.write_text("response_range: [1, 5]\nscales:\n  A: [A1, -A2]\ntraits:\n  A: agreeableness\n  C: conscientiousness\n")
    data = tmp_path / "data.csv"
    data.write_text("A1,A2\n1,2\n")
    code, _, err = cli(capsys, "analyze", data, "--keys", keys)
    one_line_error(code, err, str(keys), "traits names scale 'C'")


def test_a_constraint_check_given_twice_is_refused(tmp_path, capsys):
    shipped = Path(__file__).resolve().parents[1] / "psychometrics" / "behavior" / "tasks"
    source = next(p for p in sorted(shipped.glob("*.yaml")) if "kind: constraints" in p.read_text())
    text = source.read_text(encoding="utf-8")
    marker = "      - {include: mountain}\n"
    assert marker in text
    twice = text.replace(marker, marker + "      - {include: Mountain}\n", 1)
    path = tmp_path / "task.yaml"
    path.write_text(twice, encoding="utf-8")
    code, _, err = cli(capsys, "tasks", "validate", path)
    one_line_error(code, err, str(path), "'include: Mountain' appears twice")
