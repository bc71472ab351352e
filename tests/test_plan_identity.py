"""The planner's request ids and seeds are the definitions' (design/plan.py ``request_identity`` and
``derive_seed``), request by request, whatever the text: planning builds them from pre-encoded parts for
speed, and an id that drifted would make every earlier run unresumable."""

from __future__ import annotations

import pytest

from psychometrics.design.personas import PersonaSet
from psychometrics.design.plan import Design, derive_seed, plan_requests, request_identity
from psychometrics.inventories.library import resolve_inventory
from psychometrics.inventories.model import Inventory

# Text a JSON encoder treats specially: quotes, backslashes, controls, non-ASCII, line separators, astral.
AWKWARD = ['say "yes" \\ no', "tab\there\nnewline", "Ünïcödé — ok", "line\u2028sep\u2029x", "emoji 🙂 and \x7f",
           "<b>&amp;</b>", "ctrl \x01\x1f end"]


def awkward_inventory() -> Inventory:
    data = resolve_inventory("mini-ipip").model_dump()
    data["id"] = "awkward"
    data["instructions"] = 'Answer "honestly" \\ please — ÿ\u2028.'
    for index, item in enumerate(data["items"][:len(AWKWARD)]):
        item["text"] = AWKWARD[index]
        item["paraphrases"] = [AWKWARD[(index + 1) % len(AWKWARD)] + " (again)"]
    return Inventory.model_validate(data)


def awkward_personas() -> PersonaSet:
    return PersonaSet.model_validate({
        "id": "awkward-set", "name": "awkward",
        "personas": [{"id": "p1", "text": 'You are "Zoë" \\ the\ttester 🙂.'}, {"id": "p2", "text": "Plain."}],
    })


DESIGNS = [
    Design(),
    Design(option_orders=["original", "reversed"], templates=["numbered", "worded", "lettered"], samples=3,
           temperature=[0.0, 0.7, 1.25], seed=2**62 + 5, modes=["text", "probs"], paraphrases="all",
           personas="awkward-set", max_tokens=7),
    Design(option_orders=["rotations"], items_per_request=4, item_orders=2, samples=2, personas="awkward-set",
           persona_ids=["p2"], temperature=0.3),
]
PARAMS = [{}, {"top_p": 0.9, "stop": ["\n", "é"], "nested": {"b": 1, "a": [True, None, 1e-7]}}]


@pytest.mark.parametrize("design", DESIGNS, ids=["default", "crossed", "several-items"])
@pytest.mark.parametrize("params", PARAMS, ids=["no-params", "params"])
def test_planned_ids_and_seeds_are_the_definitions(design: Design, params: dict) -> None:
    inventories = [awkward_inventory(), resolve_inventory("bfi-44")]
    personas = awkward_personas() if design.personas else None
    planned = plan_requests(inventories, design, 'openai/"odd" — model', params, personas)
    assert len(planned) > 40
    for p in planned:
        seed = derive_seed(design.seed, p.inventory.id, [item.id for item in p.items], p.condition.seed_parts())
        assert p.request.seed == seed
        assert p.request_id == request_identity('openai/"odd" — model', params, p.request, p.condition.sample)
    assert len({p.request_id for p in planned}) == len(planned)


def test_planned_prompts_share_their_system_message() -> None:
    """One persona's prompts hold one system message object, not a copy per request (memory at scale)."""
    design = Design(option_orders=["rotations"], personas="awkward-set")
    planned = plan_requests([resolve_inventory("bfi-44")], design, "m", {}, awkward_personas())
    systems = {}
    for p in planned:
        systems.setdefault((p.condition.persona, p.condition.option_order), set()).add(id(p.prompt.messages[0]))
    assert len(systems) == 10 and all(len(ids) == 1 for ids in systems.values())
