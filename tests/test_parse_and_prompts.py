"""Reply parsing (strict, lenient, the five outcomes) and prompt rendering (stems, orders, styles)."""

from __future__ import annotations

import pytest

from psychometrics.errors import PsytestError
from psychometrics.inventories.library import resolve_inventory
from psychometrics.engine.parse import parse_reply
from psychometrics.design.prompts import TEMPLATES, get_template, render_item, statement_text

NUMBERS = ("1", "2", "3", "4", "5")
LETTERS = ("A", "B", "C", "D", "E")
OPTIONS = ("Very inaccurate", "Moderately inaccurate", "Neither accurate nor inaccurate",
           "Moderately accurate", "Very accurate")


@pytest.mark.parametrize(
    "reply, choices, outcome, position, method",
    [
        ("4", NUMBERS, "valid", 3, "strict"),
        (" 4. ", NUMBERS, "valid", 3, "strict"),
        ("(2)", NUMBERS, "valid", 1, "strict"),
        ("4 - Moderately accurate", NUMBERS, "valid", 3, "strict"),
        ("D", LETTERS, "valid", 3, "strict"),
        ("d)", LETTERS, "valid", 3, "strict"),
        ("I would say 4 (Moderately accurate).", NUMBERS, "valid", 3, "lenient"),
        ("My answer is Very accurate", NUMBERS, "valid", 4, "lenient"),
        ("Neither accurate nor inaccurate, I think.", LETTERS, "valid", 2, "lenient"),
        ("I'd pick B because it fits a lot of the time.", LETTERS, "valid", 1, "lenient"),
        ("Very accurate", OPTIONS, "valid", 4, "strict"),
        ("very accurate.", OPTIONS, "valid", 4, "strict"),
        ("Moderately inaccurate, I suppose", OPTIONS, "valid", 1, "lenient"),
        ("As an AI, I don't have personal experiences.", NUMBERS, "refusal", None, None),
        ("I can't answer questions about myself.", LETTERS, "refusal", None, None),
        ("7", NUMBERS, "out_of_range", None, None),
        ("0.", NUMBERS, "out_of_range", None, None),
        ("F", LETTERS, "out_of_range", None, None),
        ("2 or 3", NUMBERS, "multiple", None, None),
        ("Either A or C.", LETTERS, "multiple", None, None),
        ("4 (Very inaccurate)", NUMBERS, "multiple", None, None),
        ("", NUMBERS, "unparseable", None, None),
        ("Hmm, hard to say.", NUMBERS, "unparseable", None, None),
        (None, NUMBERS, "unparseable", None, None),
    ],
)
def test_parse_reply(reply, choices, outcome, position, method):
    parsed = parse_reply(reply, choices, OPTIONS)
    assert (parsed.outcome, parsed.position, parsed.method) == (outcome, position, method)


def test_lenient_letters_ignore_the_article_a():
    assert parse_reply("It fits me a lot, so D.", LETTERS, OPTIONS).position == 3


def test_statement_joins_the_stem():
    bfi = resolve_inventory("bfi-44")
    assert statement_text(bfi, "Is talkative.") == "I see myself as someone who is talkative."
    assert statement_text(resolve_inventory("bfi-2"), "Is outgoing, sociable.") == "I am someone who is outgoing, sociable."
    assert statement_text(resolve_inventory("mini-ipip"), "Am the life of the party.") == "Am the life of the party."


def test_render_puts_the_item_last_and_maps_positions():
    inv = resolve_inventory("mini-ipip")
    prompt = render_item(inv, inv.items[0], template=TEMPLATES["lettered"], option_order=(5, 4, 3, 2, 1))
    user = prompt.messages[-1].content
    assert user.endswith("Am the life of the party.")
    assert "A. Very accurate" in user and "E. Very inaccurate" in user
    assert prompt.choices == LETTERS and prompt.position_values == (5, 4, 3, 2, 1)
    assert inv.instructions in prompt.messages[0].content


def test_every_template_shares_a_fixed_prefix_across_items():
    """Prefix caching: two items differ only at the end of the last message."""
    inv = resolve_inventory("ipip-neo-120")
    for template in TEMPLATES.values():
        a = render_item(inv, inv.items[0], template=template)
        b = render_item(inv, inv.items[1], template=template)
        assert a.messages[0] == b.messages[0]
        shared = a.messages[1].content.replace(a.statement, "")
        assert b.messages[1].content.replace(b.statement, "") == shared


def test_words_style_uses_the_option_words_as_choices():
    inv = resolve_inventory("sd3")
    prompt = render_item(inv, inv.items[0], template=TEMPLATES["worded"])
    assert prompt.choices == tuple(inv.response_scale.labels[v] for v in range(1, 6))
    assert "- Agree strongly" in prompt.messages[1].content


def test_five_templates_cover_three_label_styles():
    assert len(TEMPLATES) >= 5
    assert {t.label_style for t in TEMPLATES.values()} == {"numbers", "letters", "words"}


def test_persona_goes_before_the_instructions():
    inv = resolve_inventory("mini-ipip")
    prompt = render_item(inv, inv.items[0], template=TEMPLATES["numbered"], system_prefix="You are a nurse.")
    assert prompt.messages[0].content.startswith("You are a nurse.\n\n")


def test_bad_order_and_template_are_clear_errors():
    inv = resolve_inventory("mini-ipip")
    with pytest.raises(PsytestError, match="not a permutation"):
        render_item(inv, inv.items[0], template=TEMPLATES["numbered"], option_order=(1, 2, 3, 4, 4))
    with pytest.raises(PsytestError, match="unknown template 'fancy'"):
        get_template("fancy")
