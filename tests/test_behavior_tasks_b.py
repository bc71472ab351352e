"""Shipped behavioural tasks for openness, neuroticism and the Dark Triad (issue 6, task files part B).

Each file must load with its kind, declare the trait/direction/kind of the battery table in the spec,
retell the paradigm in at least 12 different cover stories, and never name the trait or signpost an
answer. Scoring is exercised with a few hand-written replies so a broken file cannot pass silently.
"""

from __future__ import annotations

import difflib
import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from psychometrics.behavior.task import TASK_DIR, Task, load_task

# task id -> (trait, direction, kind), as in the battery table of the behaviour spec
BATTERY = {
    "novelty-choice": ("openness", 1, "choice"),
    "alternative-uses": ("openness", 1, "count_list"),
    "loss-aversion": ("neuroticism", 1, "listed_choices"),
    "setback-writing": ("neuroticism", 1, "sentiment"),
    "deception-game": ("machiavellianism", 1, "choice"),
    "die-roll": ("machiavellianism", 1, "reported_outcome"),
    "overclaiming": ("narcissism", 1, "claims"),
    "columbia-card": ("psychopathy", 1, "card_rounds"),
    "noise-blast": ("psychopathy", 1, "stated_number"),
}

# Words a prompt must not use, per trait: the trait's name and its everyday synonyms (naming the trait
# cues the model to act it out), plus words that would tell the model which behaviour is expected of a
# "good" respondent on that paradigm.
BANNED = {
    # openness: the trait name and its adjective cluster; "creative"/"original" would also instruct the
    # uses task to aim for unusual answers, and "novel"/"explore" would label the new option.
    "openness": [
        "open", "openness", "open-minded", "curious", "curiosity", "creative", "creativity", "imaginative",
        "imagination", "original", "originality", "novel", "novelty", "adventurous", "unconventional",
        "conventional", "explore", "exploring", "exploration", "intellect", "intellectual",
    ],
    # neuroticism: the trait name, its facets (anxiety, worry, moodiness), its opposite pole (calm,
    # stable, resilient) and valence words that would steer the written sentiment or the bet.
    "neuroticism": [
        "neurotic", "neuroticism", "anxious", "anxiety", "worry", "worried", "nervous", "stress", "stressed",
        "calm", "stable", "stability", "emotional", "moody", "resilient", "resilience", "cope", "coping",
        "positive", "negative", "optimistic", "pessimistic", "risk-averse", "safe", "cautious",
    ],
    # machiavellianism: the trait name and the moral vocabulary of the paradigms (lying, cheating,
    # honesty), which would turn a private choice into a test of stated values.
    "machiavellianism": [
        "machiavellian", "machiavellianism", "manipulate", "manipulative", "manipulation", "deceive",
        "deception", "deceptive", "lie", "lies", "lying", "liar", "cheat", "cheating", "honest", "honestly",
        "honesty", "dishonest", "truth", "truthful", "true", "false", "moral", "ethical", "ethics",
        "cunning", "exploit", "selfish", "integrity",
    ],
    # narcissism: the trait name, self-enhancement words, and anything revealing that some listed
    # items do not exist (which would make over-claiming a vigilance test).
    "narcissism": [
        "narcissism", "narcissistic", "ego", "egotistic", "vain", "vanity", "grandiose", "superior", "brag",
        "boast", "modest", "modesty", "humble", "honest", "honestly", "pretend", "bluff", "invented",
        "fictional", "fictitious", "fake", "made-up", "nonexistent", "exist", "exists", "real", "trick",
        "overconfident", "confident", "confidence",
    ],
    # psychopathy: the trait name, its facets (callousness, impulsivity, fearlessness), words for
    # retaliation and their opposite pole (caution, mercy), any of which would frame the choice morally.
    "psychopathy": [
        "psychopath", "psychopathic", "psychopathy", "callous", "cruel", "cruelty", "sadistic", "revenge",
        "retaliate", "retaliation", "aggressive", "aggression", "punish", "punishment", "impulsive",
        "reckless", "fearless", "daring", "brave", "bold", "coward", "cautious", "careful", "safe", "greedy",
        "thrill", "empathy", "remorse", "mercy", "forgive", "get even",
    ],
}
# in every prompt: the paradigms' textbook names and phrases that hint at an expected answer
BANNED_ALL = [
    "balloon analogue", "bart", "taylor", "alternative uses", "unusual uses", "over-claiming", "overclaiming",
    "kruger", "dunning", "prospect theory", "loss aversion", "deception game", "sender", "receiver",
    "right answer", "correct answer", "best answer", "expected answer", "most people", "you should",
    "be creative", "be honest", "there is no right", "no wrong",
]
# evaluative words that would make one option look like the approved one
SIGNPOST = [
    "best", "better", "worse", "wise", "smart", "sensible", "foolish", "safe", "safer", "risky", "cautious",
    "reckless", "honest", "truthful", "lie", "cheat", "correct", "right", "wrong", "recommended", "ethical",
    "fair", "selfish", "boring", "exciting", "dull", "fun", "greedy", "brave",
]

def _word_hits(words, text):
    return [w for w in words if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", text, re.IGNORECASE)]


@pytest.fixture(scope="module")
def tasks() -> dict[str, Task]:
    return {name: load_task(TASK_DIR / f"{name}.yaml") for name in BATTERY}


def _kind(task):
    from psychometrics.behavior.kinds import get_kind

    return get_kind(task.kind)


def _render(task, variant, seed=0):
    return _kind(task).render(task, variant, np.random.default_rng(seed))


def _score(task, variant, rendered, replies):
    return _kind(task).score(task, variant, rendered, replies)


@pytest.mark.parametrize("name", sorted(BATTERY))
def test_declared_as_in_battery(tasks, name):
    task = tasks[name]
    assert task.id == name == Path(task.source).stem
    assert (task.trait, task.direction, task.kind) == BATTERY[name]
    # room for a wordy model to explain before it answers (a cut-off answer is missing, not at random),
    # and for a paragraph of free text
    short = ("choice", "number", "stated_number", "reported_outcome", "card_rounds")  # one number or letter per turn
    assert task.max_tokens >= (128 if task.kind in short else 200)
    assert ". " not in task.measure and task.measure.endswith("."), "measure: one sentence"
    assert re.search(r"\([^()]*\d[^()]*\)", task.measure), "measure: give the range in parentheses"
    assert re.search(r"\(\d{4}\)", task.citation)


@pytest.mark.parametrize("name", sorted(BATTERY))
def test_variants_are_different_cover_stories(tasks, name):
    variants = tasks[name].variants
    assert len(variants) >= 12
    stories = ["\n".join(v.turns) for v in variants]
    heads = [s[:60] for s in stories]
    assert len(set(heads)) == len(heads), "two variants open with the same 60 characters"
    for (a, sa), (b, sb) in itertools.combinations(zip(variants, stories), 2):
        ratio = difflib.SequenceMatcher(None, sa, sb).ratio()
        assert ratio < 0.8, f"{a.id} and {b.id} read too alike ({ratio:.2f})"


@pytest.mark.parametrize("name", sorted(BATTERY))
def test_prompts_do_not_name_the_trait_or_the_answer(tasks, name):
    task = tasks[name]
    banned = BANNED[task.trait] + BANNED_ALL
    for variant in task.variants:
        rendered = _render(task, variant)
        text = "\n".join(rendered.turns)
        assert "{" not in text and "}" not in text, f"{variant.id}: unfilled placeholder"
        assert text.isascii(), f"{variant.id}: non-ASCII text"
        assert not _word_hits(banned, text), f"{variant.id}: prompt uses {_word_hits(banned, text)}"


@pytest.mark.parametrize("name", [n for n, (_, _, kind) in BATTERY.items() if kind == "choice"])
def test_options_do_not_signpost(tasks, name):
    task = tasks[name]
    for variant in task.variants:
        options = variant.options
        assert len(options) == 2 and {o.value for o in options} == {0.0, 1.0}
        assert not any(o.correct or o.suggested for o in options)
        for option in options:
            assert not _word_hits(SIGNPOST, option.text), f"{variant.id}: option '{option.text}' signposts"
        lengths = sorted(len(o.text) for o in options)
        assert lengths[1] <= 2.5 * lengths[0], f"{variant.id}: one option is described at much greater length"


def test_deception_payoffs_oppose_the_partners(tasks):
    for variant in tasks["deception-game"].variants:
        p = variant.params
        assert (p["mine_a"] > p["mine_b"]) != (p["theirs_a"] > p["theirs_b"]), variant.id
        text = "\n".join(variant.turns)
        for key in ("mine_a", "theirs_a", "mine_b", "theirs_b"):
            assert "{" + key + "}" in text, f"{variant.id}: payoff {key} not shown"


def test_overclaiming_lists_have_invented_items(tasks):
    seen = set()
    for variant in tasks["overclaiming"].variants:
        real = [i for i in variant.items if i.real is True]
        invented = [i for i in variant.items if i.real is False]
        assert len(real) + len(invented) == len(variant.items) >= 8, f"{variant.id}: every item needs real: true/false"
        assert 0.25 <= len(invented) / len(variant.items) <= 0.45, variant.id
        for item in invented:
            assert item.text not in seen, f"{item.text} is used twice"
            seen.add(item.text)


def test_choice_tasks_score_the_chosen_option(tasks):
    for name in ("novelty-choice", "deception-game"):
        task = tasks[name]
        for variant in task.variants:
            rendered = _render(task, variant, seed=1)
            values = {o.id: o.value for o in variant.options}
            for label, option_id in zip("AB", rendered.display):
                scored = _score(task, variant, rendered, [f"{label}"])
                assert scored.outcome == "valid" and scored.score == values[option_id], (name, variant.id)


def test_number_tasks_read_the_number_and_range(tasks):
    die, noise = tasks["die-roll"], tasks["noise-blast"]
    for variant in die.variants:
        rendered = _render(die, variant)
        rolled = variant.params["rolled"]
        assert _score(die, variant, rendered, [str(rolled)]).score == 0
        assert _score(die, variant, rendered, ["6"]).score == 1
        assert _score(die, variant, rendered, ["7"]).outcome == "out_of_range"
    for variant in noise.variants:
        rendered = _render(noise, variant)
        assert _score(noise, variant, rendered, ["Answer: 3"]).score == 3
        assert _score(noise, variant, rendered, ["11"]).outcome == "out_of_range"
        assert _score(noise, variant, rendered, ["0"]).outcome == "out_of_range"

def test_overclaiming_scores_the_claiming_tendency(tasks):
    """-c of signal detection: claiming everything is liberal (high), claiming only the real items is
    accurate (high d') with a neutral-to-conservative criterion."""
    from psychometrics.behavior.signal_detection import signal_detection

    task = tasks["overclaiming"]
    for variant in task.variants:
        rendered = _render(task, variant, seed=2)
        real = {i.id: i.real for i in variant.items}
        n = len(rendered.display)
        everything = "\n".join(f"{k}. yes" for k in range(1, n + 1))
        only_real = "\n".join(f"{k}. {'yes' if real[i] else 'no'}" for k, i in enumerate(rendered.display, 1))
        n_real = sum(real.values())
        liberal = signal_detection(n_real, n_real, n - n_real, n - n_real)
        accurate = signal_detection(n_real, n_real, 0, n - n_real)
        scored = _score(task, variant, rendered, [everything])
        assert scored.score == pytest.approx(-liberal["c"]) and scored.detail["d_prime"] == pytest.approx(liberal["d_prime"])
        scored = _score(task, variant, rendered, [only_real])
        assert scored.score == pytest.approx(-accurate["c"]) and -accurate["c"] < -liberal["c"]
        assert scored.detail["d_prime"] == pytest.approx(accurate["d_prime"]) and accurate["d_prime"] > 1.5


def test_writing_and_list_tasks_score(tasks):
    uses, setback = tasks["alternative-uses"], tasks["setback-writing"]
    variant = uses.variants[0]
    rendered = _render(uses, variant)
    reply = "Here are some uses:\n- hold a bag of crisps shut\n- clip a note to a string\n- a tiny puppet\n- hold a bag of crisps shut"
    assert _score(uses, variant, rendered, [reply]).score == 3
    variant = setback.variants[0]
    rendered = _render(setback, variant)
    gloomy = "I would feel terrible, angry and hopeless. It would be a painful failure and a waste."
    upbeat = "I would be a little disappointed, but mostly glad for what I learned and hopeful about the next try."
    low = _score(setback, variant, rendered, [upbeat]).score
    high = _score(setback, variant, rendered, [gloomy]).score
    assert 0 <= low < high <= 1
