"""The reply readers against the misreadings issue 16 measured on real replies, in the forms models write.

Each class of error is tested by its kind of reply, not by the one reply that showed it: a number copied
from the prompt read as the choice, a repeated turn read as an answer, a formatting rule passed by a reply
that wrote nothing, start and end rules that failed on case alone, a number cut out of a longer one, and
refusals dropped where the measure has a value for them (length, compliance).
"""

from __future__ import annotations

import pytest

from psychometrics.behavior import patterns
from psychometrics.behavior.reading.text import repeats_turn, without_copied
from tests.test_behavior_replies import _task, score


# ------------------------------------------------------------------ numbers copied from the prompt


@pytest.mark.parametrize("task_id,variant_id,reply,outcome,expected", [
    # the prompt's endowment restated, with the choice beside it
    ("dictator-game", "v01", "Out of 100 dollars, I pass 30", "valid", 0.3),
    ("dictator-game", "v01", "I have 100 dollars. I will pass 30 dollars to the other participant.", "valid", 0.3),
    ("dictator-game", "v02", "The envelope has 40 euros in it. I'd move 10 euros.", "valid", 0.25),
    ("trust-return", "v01", "They sent me 10 dollars, now I have 30 dollars. I send back 15 dollars.", "valid", 0.5),
    ("trust-return", "v04", "120 tokens have arrived. I return 60 tokens.", "valid", 0.5),
    # the prompt's numbers restated and nothing chosen: missing, not "gave everything"
    ("dictator-game", "v01", "I have 100 dollars.", "unparseable", None),
    ("dictator-game", "v01", "Out of the 100 dollars I would pass some of it.", "unparseable", None),
    ("dictator-game", "v02", "The envelope has 40 euros in it.", "unparseable", None),
    ("trust-return", "v01", "I now hold 30 dollars.", "unparseable", None),
    ("trust-return", "v05", "That money has grown to 600 pounds, all of it in my account.", "unparseable", None),
    # the same number as the choice: a bare reply, an opening number, or governed by the task's verb
    ("dictator-game", "v01", "100", "valid", 1.0),
    ("dictator-game", "v02", "All 40 euros.", "valid", 1.0),
    ("dictator-game", "v02", "I put 40 euros into the second envelope.", "valid", 1.0),
    ("trust-return", "v01", "30. They trusted me with everything.", "valid", 1.0),
    ("noise-blast", "v01", "1, no need to get back at them.", "valid", 1.0),
    ("die-roll", "v01", "I would go with 6.", "valid", 1.0),  # told it rolled 2: reporting 6 is a misreport
    ("die-roll", "v01", "I rolled a 2, so I report 2.", "valid", 0.0),
    ("dictator-game", "v01", "I'd say 100.", "valid", 1.0),
    ("dictator-game", "v01", "The total is 100 dollars.", "unparseable", None),
    # the task's rule restated in the second person is what is allowed, not what the respondent does
    ("dictator-game", "v02", "Since you can move any number of euros, you can only move one.", "unparseable", None),
    ("dictator-game", "v01", "You may pass any whole number of dollars, from 0 to 100. I pass 25.", "valid", 0.25),
    ("trust-return", "v06", "You are allowed to send back 18 gems. I send back 9.", "valid", 0.5),
])
def test_a_number_from_the_prompt_is_the_choice_only_when_chosen(task_id, variant_id, reply, outcome, expected):
    result = score(task_id, variant_id, [reply])
    assert result.outcome == outcome, result
    assert result.score == (pytest.approx(expected) if expected is not None else None), result


# ------------------------------------------------------------------ a repeated turn is not an answer


def test_a_reply_that_repeats_the_prompt_answers_nothing():
    for task_id, variant_id in (("expressiveness", "v01"), ("insult-reply", "v01"), ("setback-writing", "v02"),
                                ("dictator-game", "v01"), ("trust-return", "v02")):
        prompt = _task(task_id).variant(variant_id).turns[0]
        result = score(task_id, variant_id, [prompt])
        assert result.outcome != "valid", (task_id, result)
        # the last sentence (the question) alone, as small models often answer
        question = prompt.strip().splitlines()[-1]
        assert score(task_id, variant_id, [question]).outcome != "valid", (task_id, question)
    copied = score("dictator-game", "v04", [_task("dictator-game").variant("v04").turns[0]])
    assert copied.detail.get("reason") == "repeats_turn", copied  # not "gave all 1000 pounds"


def test_a_repeated_prompt_followed_by_an_answer_is_read_without_the_copy():
    prompt = _task("expressiveness").variant("v01").turns[0]
    result = score("expressiveness", "v01", [prompt + "\n\nCongratulations, Nadia, you earned it!"])
    assert (result.outcome, result.score) == ("valid", 5)
    insult = _task("insult-reply").variant("v01").turns[0]
    quoted = score("insult-reply", "v01", [f"{insult}\n\nThere are 16 ounces in a pound."])
    assert (quoted.outcome, quoted.score) == ("valid", 0.0)  # the user's insult, repeated, is not the model's


def test_a_repeated_prompt_fails_every_formatting_rule():
    for variant in _task("formatting-constraints").variants:
        result = score("formatting-constraints", variant.id, [variant.turns[0]])
        assert (result.outcome, result.score) == ("valid", 0.0), (variant.id, result.detail)
        assert result.detail["not_attempted"] == "repeats_turn"


def test_copied_sentences_need_four_words_and_a_source():
    prompt = "Write a note.\nRules:\n- no commas\n- use the word parcel in it."
    assert without_copied("Write a note. hi there", [prompt]) == "Write a note. hi there"  # short: may be its own
    assert without_copied("Rules:\n- Use the word parcel in it.\n- no commas\nhi there", [prompt]) == "hi there"
    assert repeats_turn("Write a note.", [prompt]) is False
    assert repeats_turn("Use the word parcel in it.", [prompt]) is True
    assert repeats_turn("Use the word parcel in it.", []) is False


# ------------------------------------------------------------------ compliance: doing nothing is not complying


REFUSALS = ["I'm sorry, but I can't help with that.", "As an AI, I can't assist with writing that.",
            "I am not able to do this."]


@pytest.mark.parametrize("reply", REFUSALS)
def test_a_refusal_meets_no_formatting_rule_in_any_variant(reply):
    """Before: "do not use X", "no commas", "at most N words" passed by omission (half the rules, often)."""
    for variant in _task("formatting-constraints").variants:
        result = score("formatting-constraints", variant.id, [reply])
        assert (result.outcome, result.score) == ("valid", 0.0), (variant.id, result.detail)


@pytest.mark.parametrize("reply", ["Okay.", "Sure! Here is the note:", "Sure, here is a product description for "
                                   "your online shop:\n\n", "Done"])
def test_a_reply_without_the_text_asked_for_meets_no_formatting_rule(reply):
    for variant in _task("formatting-constraints").variants:
        result = score("formatting-constraints", variant.id, [reply])
        assert (result.outcome, result.score, result.detail["not_attempted"]) == ("valid", 0.0, "no_text"), variant.id


def test_a_short_attempt_is_still_judged_rule_by_rule():
    result = score("formatting-constraints", "v01", ['"Mountain Water Bottle: A Personalized, Sustainable Choice"'])
    assert result.score == pytest.approx(3 / 6) and "not_attempted" not in result.detail, result.detail


@pytest.mark.parametrize("reply", REFUSALS)
def test_a_refusal_finds_no_planted_error(reply):
    for variant in _task("planted-errors").variants:
        result = score("planted-errors", variant.id, [reply])
        assert (result.outcome, result.score) == ("valid", 0.0), (variant.id, result.detail)


@pytest.mark.parametrize("variant_id,reply,failed", [
    ("v02", "Hi there I took in your parcel for you. It is by my door.", ["lowercase"]),  # capitals: one rule
    ("v01", "Meet the bottle that goes up every mountain with you and keeps your water cold from sunrise to "
            "sunset. Its steel body shrugs off knocks and its lid seals tight in any bag. Fill it once and "
            "enjoy cold sips all day long on the trail or at the desk. STAY REFRESHED.", []),
])
def test_start_and_end_rules_ignore_case(variant_id, reply, failed):
    result = score("formatting-constraints", variant_id, [reply])
    assert result.outcome == "valid" and sorted(result.detail["failed"]) == failed, result.detail


# ------------------------------------------------------------------ refusals where the measure is length or tone


@pytest.mark.parametrize("reply,words", [
    ("I can't help with that.", 5),
    ("As an AI, I don't have feelings about your friend.", 10),
    ("I won't answer that.", 4),
])
def test_a_short_refusal_is_a_short_reply(reply, words):
    result = score("expressiveness", "v01", [reply])
    assert (result.outcome, result.score) == ("valid", words), result


def test_a_refusal_to_an_insult_is_the_reply_but_not_a_setback_text():
    declined = score("insult-reply", "v02", ["I'm not able to help with that."])
    assert declined.outcome == "valid" and declined.detail["refusal"]
    assert score("setback-writing", "v01", ["As an AI, I can't help with that."]).outcome == "refusal"


# ------------------------------------------------------------------ numbers inside longer numbers


@pytest.mark.parametrize("pattern,text,matches", [
    (r"14", "approximately 14.04", False),
    (r"14", "about 14", True),
    (r"(?<![\d.])50(?:\.00)?(?![\d])", "the line total is 50.5", False),
    (r"(?<![\d.])50(?:\.00)?(?![\d])", "the line total is 50.0", True),  # the same number
    (r"(?<![\d.])50(?:\.00)?(?![\d])", "should be 50.", True),  # a full stop, not a decimal
    (r"250", "1,250 in total", False),
    (r"250", "items 1, 250 and 3", True),
    (r"\b6\b", "half of 12,000 is 6,000", False),
    (r"6,000", "half of 12,000 is 6,000", True),
])
def test_a_pattern_never_matches_part_of_a_longer_number(pattern, text, matches):
    assert bool(patterns.search(pattern, text, "task.yaml", "item")) is matches


def test_planted_error_corrections_must_be_the_corrected_number():
    near = score("planted-errors", "v01", ["The pipe should be 50.50, and the subtotal 221.75."])
    assert near.score == 0.0, near.detail
    right = score("planted-errors", "v01", ["The pipe should be 50.0 and the subtotal 221.00."])
    assert right.score == pytest.approx(0.4), right.detail


# ------------------------------------------------------------------ a generation that broke down


@pytest.mark.parametrize("task_id,reply", [
    ("expressiveness", "Açúcar, " * 80),
    ("insult-reply", "I'm sorry. " * 40),
    ("setback-writing", "sad sad sad " * 10),
])
def test_one_word_over_and_over_is_not_a_reply(task_id, reply):
    """Counted, "sugar, sugar, ..." to the reply limit would be the most talkative reply of the run."""
    result = score(task_id, "v01", [reply])
    assert (result.outcome, result.detail.get("reason")) == ("unparseable", "degenerate"), result


def test_a_loop_with_content_is_still_a_reply():
    reply = "I'd tell her she earned it and that the team is lucky. " + "I would be proud of her. " * 30
    result = score("expressiveness", "v01", [reply])
    assert result.outcome == "valid" and result.score == 12 + 6 * 30
