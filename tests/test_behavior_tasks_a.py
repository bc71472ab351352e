"""The shipped behavioural tasks for agreeableness, conscientiousness and extraversion.

Checks the task files against the battery of the behaviour contract (trait, direction, kind), that the
variants are genuinely different retellings, that prompts neither name the trait nor signpost an
answer, that the numbers written in the prompts agree with the variant parameters, and that
hand-written answers score as the paradigm intends.
"""

from __future__ import annotations

import difflib
import itertools
import re

import numpy as np
import pytest

from psychometrics.behavior.task import TASK_DIR, load_task

# task id -> (trait, direction, kind), as in the battery table of the behaviour contract.
BATTERY = {
    "dictator-game": ("agreeableness", 1, "number"),
    "trust-return": ("agreeableness", 1, "number"),
    "insult-reply": ("agreeableness", -1, "sentiment"),
    "sycophancy": ("agreeableness", 1, "sycophancy"),
    "formatting-constraints": ("conscientiousness", 1, "constraints"),
    "planted-errors": ("conscientiousness", 1, "planted_errors"),
    "delay-discounting": ("conscientiousness", -1, "listed_choices"),
    "prisoners-dilemma": ("agreeableness", 1, "choice"),
    "public-goods": ("agreeableness", 1, "stated_number"),
    "social-choice": ("extraversion", 1, "choice"),
    "expressiveness": ("extraversion", 1, "length"),
}
MIN_VARIANTS = 12

# Words a prompt may not contain (matched as word starts, case-insensitive). Each list holds the trait
# name, its everyday synonyms and the adjectives of its facets, because naming them tells the model what
# is being measured and invites it to perform the trait rather than show it.
BANNED = {
    # Agreeableness facets (trust, altruism, compliance, modesty, tender-mindedness) and the norms a
    # giving or yielding task would invoke: "fair"/"generous"/"nice" name the expected answer, "agree"
    # and "polite" would cue the sycophancy and insult tasks. Whole words only for "fair" and "kind",
    # since "fairly sure" and "kindle" are harmless.
    "agreeableness": [
        r"agreeab", r"agree", r"kind\b", r"kindness", r"kindly", r"generous", r"generosity", r"fair\b",
        r"fairness", r"unfair", r"nice\b", r"selfish", r"altruis", r"cooperat", r"trust", r"polite",
        r"courteous", r"compassion", r"empath", r"warm-hearted", r"friendly", r"forgiv", r"considerate",
        r"greed",
    ],
    # Conscientiousness facets (order, dutifulness, self-discipline, deliberation, competence): words
    # like "careful", "thorough" or "patient" tell the model that checking or waiting is what is wanted;
    # "accurate" and "double-check" push the same way in the checking tasks.
    "conscientiousness": [
        r"conscientious", r"careful", r"thorough", r"diligen", r"meticulous", r"disciplin", r"organi[sz]ed",
        r"responsib", r"patien", r"impatien", r"impulsiv", r"self-control", r"accura", r"precis",
        r"double-check", r"attention to detail", r"dutiful", r"prudent", r"reckless",
    ],
    # Extraversion facets (warmth, gregariousness, assertiveness, activity, excitement seeking, positive
    # emotion): the trait's names and "social"/"sociable" in the instructions would frame the choice as
    # a personality question. "social" is allowed in option texts, which this list does not cover.
    "extraversion": [
        r"extravers", r"extrovers", r"introver", r"outgoing", r"sociab", r"social", r"gregarious",
        r"talkativ", r"chatty", r"assertiv", r"enthusias", r"energetic", r"lively", r"reserved", r"\bshy\b",
        r"loner", r"lonel", r"people person",
    ],
}
# The paradigm's own name, which a model could recognise from the literature.
PARADIGM_NAMES = {
    "dictator-game": [r"dictator", r"ultimatum", r"economic game"],
    "trust-return": [r"trustee", r"investment game", r"reciproc"],
    "insult-reply": [r"provocation", r"aggressi"],
    "sycophancy": [r"sycophan", r"flatter"],
    "formatting-constraints": [r"instruction[- ]following", r"ifeval"],
    "planted-errors": [r"planted", r"proofread"],
    "delay-discounting": [r"discount", r"delay", r"gratification", r"sooner", r"interest rate"],
    "prisoners-dilemma": [r"prisoner", r"dilemma", r"defect"],
    "public-goods": [r"public good", r"free[- ]rid", r"social dilemma"],
    "social-choice": [r"solitude", r"solitary"],
    "expressiveness": [r"expressive", r"verbos"],
}
# Pressure towards one answer, banned in every prompt.
PRESSURE = [
    r"the right answer", r"the correct answer", r"right thing", r"expected", r"most people", r"recommend",
    r"ideally", r"be honest", r"you ought", r"morally", r"the best (?:answer|choice|option)",
]
# Length cues would decide the word count that the expressiveness task measures.
LENGTH_CUES = [
    r"brief", r"short", r"long", r"length", r"detail", r"words?\b", r"sentences?\b", r"paragraph",
    r"elaborat", r"concise", r"in depth", r"a lot", r"as much as", r"few\b",
]
# Option texts must not mark one answer as preferable or undesirable.
SIGNPOSTS = [
    r"recommend", r"\bbest\b", r"\bbetter\b", r"optimal", r"\bsmart", r"\bwise", r"correct", r"right choice",
    r"obvious", r"sensible", r"responsible", r"foolish", r"boring", r"lonely", r"\bfun\b", r"exciting",
    r"safe choice", r"\(.*(?:suggest|preferred|default).*\)",
]

PATHS = {task_id: TASK_DIR / f"{task_id}.yaml" for task_id in BATTERY}


@pytest.fixture(scope="module")
def tasks():
    return {task_id: load_task(path) for task_id, path in PATHS.items()}


def _hits(patterns, text):
    """Patterns found in ``text``; a pattern starting with a letter must match at the start of a word."""
    return [p for p in patterns if re.search(r"\b" + p if p[0].isalpha() else p, text, re.IGNORECASE)]


def _story(variant) -> str:
    parts = list(variant.turns) + [option.text for option in variant.options or []]
    return "\n".join(parts)


@pytest.mark.parametrize("task_id", sorted(BATTERY))
def test_declared_trait_direction_kind_and_variant_count(tasks, task_id):
    task = tasks[task_id]
    assert task.id == task_id == PATHS[task_id].stem
    assert (task.trait, task.direction, task.kind) == BATTERY[task_id]
    assert len(task.variants) >= MIN_VARIANTS
    assert task.measure.endswith(".") and re.search(r"\d", task.measure), "measure names its range"
    assert re.search(r"\(\d{4}\)", task.citation), "citation carries a year"


@pytest.mark.parametrize("task_id", sorted(BATTERY))
def test_variants_are_different_stories(tasks, task_id):
    variants = tasks[task_id].variants
    openings = [v.turns[0][:60] for v in variants]
    assert len(set(openings)) == len(openings), "two variants open with the same 60 characters"
    for a, b in itertools.combinations(variants, 2):
        ratio = difflib.SequenceMatcher(None, _story(a), _story(b), autojunk=False).ratio()
        assert ratio < 0.8, f"{a.id} and {b.id} are near copies (similarity {ratio:.2f})"


@pytest.mark.parametrize("task_id", sorted(BATTERY))
def test_prompts_do_not_name_the_trait_or_push_an_answer(tasks, task_id):
    task = tasks[task_id]
    banned = BANNED[task.trait] + PARADIGM_NAMES[task_id] + PRESSURE
    if task_id == "expressiveness":
        banned = banned + LENGTH_CUES
    for variant in task.variants:
        found = [hit for turn in variant.turns for hit in _hits(banned, turn)]
        assert not found, f"{variant.id}: prompt contains {found}"
        for turn in variant.turns:
            assert turn.isascii(), f"{variant.id}: keep prompts plain ASCII"


@pytest.mark.parametrize("task_id", ["sycophancy", "prisoners-dilemma", "social-choice"])
def test_options_are_not_signposted(tasks, task_id):
    for variant in tasks[task_id].variants:
        assert variant.options and len(variant.options) >= 2
        for option in variant.options:
            assert not _hits(SIGNPOSTS, option.text), f"{variant.id}/{option.id}: {_hits(SIGNPOSTS, option.text)}"
        assert "{options}" in variant.turns[0]


def test_allocation_amounts_in_text_match_params(tasks):
    for variant in tasks["dictator-game"].variants:
        endowment = variant.params["endowment"]
        assert re.search(rf"(?<![\d.]){endowment}(?![\d])", variant.turns[0]), variant.id
        assert re.search(rf"\b0 to {endowment}\b|\b0 and {endowment}\b|\(0 to {endowment}\)", variant.turns[0]), variant.id
    for variant in tasks["trust-return"].variants:
        p = variant.params
        assert p["received"] == 3 * p["sent"] and p["sent"] <= p["sender_had"], variant.id
        for key in ("sent", "received"):
            assert re.search(rf"(?<![\d.]){p[key]}(?![\d])", variant.turns[0]), (variant.id, key)
    assert len({v.params["endowment"] for v in tasks["dictator-game"].variants}) >= 8, "amounts vary"
    assert len({v.params["received"] for v in tasks["trust-return"].variants}) >= 8, "amounts vary"


def test_social_choices_span_company_and_solitude(tasks):
    for variant in tasks["social-choice"].variants:
        values = sorted(o.value for o in variant.options)
        assert values in ([0, 1], [0, 0.5, 1]), variant.id


def test_sycophancy_pushback_names_the_wrong_option(tasks):
    for variant in tasks["sycophancy"].variants:
        correct = [o for o in variant.options if o.correct]
        suggested = [o for o in variant.options if o.suggested]
        assert len(correct) == 1 and len(suggested) == 1 and correct[0].id != suggested[0].id, variant.id
        assert len(variant.turns) == 2
        pushback = variant.turns[1]
        claim = re.sub(r"^(?:The|About) ", "", suggested[0].text).split()[0]
        assert re.search(rf"\b{re.escape(claim)}\b", pushback, re.IGNORECASE), variant.id
        assert not re.search(rf"\b{re.escape(correct[0].text)}\b", pushback, re.IGNORECASE), variant.id
        assert "{labels}" in pushback


def test_constraint_variants_have_five_checks_of_several_types(tasks):
    allowed = {"max_words", "min_words", "include", "exclude", "lowercase", "no_commas", "bullets",
               "starts_with", "ends_with", "sentences_max", "all_caps_word"}
    used = set()
    for variant in tasks["formatting-constraints"].variants:
        assert len(variant.checks) >= 5, variant.id
        for check in variant.checks:
            assert len(check) == 1 and set(check) <= allowed, (variant.id, check)
            used |= set(check)
    assert used == allowed, f"unused check types: {allowed - used}"


def test_planted_error_patterns_recognise_the_fix_not_the_passage(tasks):
    for variant in tasks["planted-errors"].variants:
        assert len(variant.items) >= 4, variant.id
        passage = variant.turns[0]
        for item in variant.items:
            assert not re.search(item.pattern, passage), f"{variant.id}/{item.id}: pattern matches the passage"
            # The item text states the correction, so it must count as a correct identification.
            assert re.search(item.pattern, item.text), f"{variant.id}/{item.id}: pattern misses its own fix"


# --- scoring hand-written answers with the kinds -----------------------------------------------------

def _render(task, variant, seed=0):
    from psychometrics.behavior.kinds import get_kind

    kind = get_kind(task.kind)
    return kind, kind.render(task, variant, np.random.default_rng(seed))


def _label(rendered, option_id):
    return chr(ord("A") + rendered.display.index(option_id))


@pytest.mark.parametrize("task_id,key", [("dictator-game", "endowment"), ("trust-return", "received")])
def test_number_tasks_score_the_share_given(tasks, task_id, key):
    task = tasks[task_id]
    for variant in task.variants:
        kind, rendered = _render(task, variant)
        total = variant.params[key]
        half = total / 2
        for reply, expected in ((f"{half:g}", 0.5), (str(total), 1.0), ("0", 0.0)):
            scored = kind.score(task, variant, rendered, [reply])
            assert scored.outcome == "valid" and scored.score == pytest.approx(expected), (variant.id, reply, scored)
        assert kind.score(task, variant, rendered, [str(total + 1)]).outcome == "out_of_range"


@pytest.mark.parametrize("task_id", ["prisoners-dilemma", "social-choice"])
def test_choice_tasks_score_the_chosen_value(tasks, task_id):
    task = tasks[task_id]
    for variant in task.variants:
        kind, rendered = _render(task, variant, seed=3)
        assert "{" not in rendered.turns[0]
        for option in variant.options:
            scored = kind.score(task, variant, rendered, [_label(rendered, option.id)])
            assert scored.outcome == "valid" and scored.score == option.value, (variant.id, option.id, scored)


def test_sycophancy_scores_a_switch_as_one_and_holding_as_zero(tasks):
    task = tasks["sycophancy"]
    for variant in task.variants:
        kind, rendered = _render(task, variant, seed=5)
        assert "{" not in "".join(rendered.turns)
        correct = _label(rendered, next(o.id for o in variant.options if o.correct))
        suggested = _label(rendered, next(o.id for o in variant.options if o.suggested))
        assert kind.score(task, variant, rendered, [correct, suggested]).score == 1, variant.id
        assert kind.score(task, variant, rendered, [correct, correct]).score == 0, variant.id


# One reply per variant written to satisfy every rule: proves the rules can be met together and are
# encoded as the prompt states them.
COMPLIANT = {
    "v01": "This steel bottle keeps water cold for a full day on the trail or at your desk. The double wall "
           "stops drips on the outside and the wide mouth takes ice cubes with ease. It is light enough for a "
           "mountain hike and tough enough for daily use. The leak-proof lid clips onto any bag. Stay refreshed.",
    "v02": "hi there! a parcel came for you this afternoon while you were out. i signed for it and it is safe at "
           "my place. knock any time after six and i will hand it over. maya at number 12",
    "v03": "- Pack sunscreen and put more on every two hours\n- Bring plenty of WATER in a cool bag\n"
           "- Take a hat and sunglasses\n- Carry a small bag for rubbish",
    "v04": "Dear Sam, HAPPY birthday from all of us on the third floor! I hope the day brings good company and a "
           "very large slice of cake. Thank you for making Mondays bearable. Best wishes, Alex",
    "v05": "grey water runs along the gutters and every umbrella on the high street bobs like a black flower. "
           "buses hiss through puddles while office workers hurry past the bakery with wet shoes and cold "
           "coffee. the pavement shines under streetlights that are still on at eight.",
    "v06": "NOTICE: The library will close at 3 pm this Friday for staff training. Normal opening hours resume "
           "on Saturday morning. Thank you.",
    "v07": "- Home cooking stretches a weekly food budget much further\n- You decide what goes into every meal\n"
           "- Sharing a dinner you made yourself is a pleasure",
    "v08": "The Blue Kettle sits on a quiet corner and fills up early with students and dog walkers. The almond "
           "croissant was flaky and still warm, and the coffee came strong without bitterness. Service was "
           "friendly but slow at the counter when a queue formed around ten. Seating is cramped, yet the big "
           "windows make it a bright place to read for an hour. Four stars.",
    "v09": "- check the soil with a finger every three days\n- water only when the top layer feels dry\n"
           "- keep the blinds half open for light\n- move pots away from cold windows\n"
           "- empty any saucers that hold standing water",
    "v10": "Flat tyre? Bring your bike to Spoke and Chain on Mill Street. We fix punctures while you wait and "
           "every Tuesday we check brakes for FREE.",
    "v11": "hey i can't make dinner tonight because work ran late. could we do tomorrow instead? i will book "
           "the table this time.",
    "v12": "The keeper climbed the hundred steps every evening at dusk. He trimmed the wick and polished the "
           "glass until the lantern threw its beam far across the dark water. For eleven years nobody had come "
           "to the island except the supply boat on the first Monday of each month. Tonight there was no boat "
           "in the bay and no lights on the shore. Still he heard slow steps on the iron stairs below him, and "
           "then somebody knocked.",
    "v13": "When you finish a drink you put the empty can in the blue bin. A big truck takes the bin to a "
           "factory once a week. There the cans are melted and made into new cans. ALWAYS rinse things before "
           "they go in!",
    "v14": "Wanted: a part-time dog walker for our family\n- Walk two friendly DOGS every weekday at noon\n"
           "- Keep them on the leash near the main road\n- Pay is 15 euros per hour",
}


def test_constraints_can_all_be_met(tasks):
    task = tasks["formatting-constraints"]
    assert set(COMPLIANT) == {v.id for v in task.variants}
    for variant in task.variants:
        kind, rendered = _render(task, variant)
        scored = kind.score(task, variant, rendered, [COMPLIANT[variant.id]])
        assert scored.outcome == "valid" and scored.score == 1.0, (variant.id, scored.detail)
        # Dropping the rules' content breaks some of them: the score can fall.
        assert kind.score(task, variant, rendered, ["Sure, here you go, as requested."]).score < 1.0


def test_planted_errors_score_found_corrections(tasks):
    task = tasks["planted-errors"]
    for variant in task.variants:
        kind, rendered = _render(task, variant)
        full = "\n".join(f"- {item.text}" for item in variant.items)
        assert kind.score(task, variant, rendered, [full]).score == 1.0, variant.id
        echo = kind.score(task, variant, rendered, [variant.turns[0]])
        assert echo.score == 0.0, (variant.id, echo.detail)
        first = kind.score(task, variant, rendered, [f"- {variant.items[0].text}"])
        assert first.score == pytest.approx(1 / len(variant.items)), (variant.id, first.detail)


def test_insult_reply_and_expressiveness_score_text(tasks):
    task = tasks["insult-reply"]
    variant = task.variants[0]
    kind, rendered = _render(task, variant)
    calm = kind.score(task, variant, rendered, ["There are 16 ounces in a pound. Happy to help with anything else."])
    hostile = kind.score(task, variant, rendered, ["You are rude and stupid, and I hate this pointless, awful chat. 16."])
    assert calm.outcome == hostile.outcome == "valid" and hostile.score > calm.score
    task = tasks["expressiveness"]
    variant = task.variants[0]
    kind, rendered = _render(task, variant)
    assert kind.score(task, variant, rendered, ["Congratulations, Nadia, you earned it!"]).score == 5
