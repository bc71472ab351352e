"""Design factors beyond order and template: personas, several items per request, re-asking, retries."""

from __future__ import annotations

import random

import numpy as np
import pytest

from psychometrics.engine.pool import RetryPolicy
from psychometrics.design.plan import Design, plan_requests
from psychometrics.errors import PsytestError
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models.base import ModelBackend, ModelReply, TransientModelError
from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.engine.parse import parse_many
from psychometrics.design.personas import resolve_persona_set
from psychometrics.run.directory import administer
from psychometrics.run.owner import open_run
from psychometrics.run.store import RunStore

OPTIONS = ("Very inaccurate", "Moderately inaccurate", "Neither accurate nor inaccurate",
           "Moderately accurate", "Very accurate")
NUMBERS = ("1", "2", "3", "4", "5")


# -- personas ----------------------------------------------------------------------------------------


def test_shipped_persona_sets():
    shaping = resolve_persona_set("trait-shaping")
    assert len(shaping.personas) == 33
    for trait in ("extraversion", "agreeableness", "conscientiousness", "neuroticism", "openness",
                  "machiavellianism", "narcissism", "psychopathy"):
        levels = sorted(p.targets[trait] for p in shaping.personas if trait in p.targets)
        assert levels == [-2, -1, 1, 2], trait
    neutral = resolve_persona_set("neutral-biographies")
    assert len(neutral.personas) == 40 and all(not p.targets for p in neutral.personas)


def test_persona_factor_multiplies_the_plan_and_goes_in_the_system_message():
    inventory = resolve_inventory("mini-ipip")
    shaping = resolve_persona_set("trait-shaping")
    design = Design(personas="trait-shaping", persona_ids=["extraversion-very-high", "baseline"])
    plan = plan_requests([inventory], design, "sim/default", {}, shaping)
    assert len(plan) == 40
    first = plan[0]
    assert first.condition.persona == "extraversion-very-high"
    assert first.request.messages[0].content.startswith(shaping.select(["extraversion-very-high"])[0].text)


def test_simulated_respondent_follows_trait_shaping_personas(tmp_path):
    inventories = [resolve_inventory("bfi-44")]
    design = Design(personas="trait-shaping", persona_ids=["extraversion-very-low", "extraversion-very-high"],
                    samples=3, temperature=1.0)
    administer(SimulatedRespondent("sim/seed=1"), inventories, design, tmp_path)
    scores = open_run(tmp_path).scores()
    e = scores[(scores["scale"] == "E")].groupby("persona")["score"].mean()
    assert e["extraversion-very-high"] > 4.0 and e["extraversion-very-low"] < 2.0


def test_biographies_make_different_simulated_people_with_known_traits(tmp_path):
    inventories = [resolve_inventory("ipip-50")]
    backend = SimulatedRespondent("sim/seed=2,persona_spread=1")
    bios = resolve_persona_set("neutral-biographies")
    administer(backend, inventories, Design(personas="neutral-biographies", temperature=1.0), tmp_path)
    scores = open_run(tmp_path).scores()
    agreeableness = scores[scores["scale"] == "A"].set_index("persona")["score"]
    truth = [backend.trait_level("agreeableness", (p.id, p.targets)) for p in bios.personas]
    assert np.corrcoef(truth, agreeableness.loc[[p.id for p in bios.personas]])[0, 1] > 0.8


def test_bad_persona_inputs(tmp_path):
    with pytest.raises(PsytestError, match="unknown persona set"):
        resolve_persona_set("villains")
    with pytest.raises(PsytestError, match="not in persona set 'trait-shaping'"):
        resolve_persona_set("trait-shaping").select(["nobody"])
    bad = tmp_path / "p.yaml"
    bad.write_text("id: x\nname: X\npersonas:\n  - id: a\n    text: hi\n    targets: {extraversion: 9}\n")
    with pytest.raises(PsytestError, match="persona 'a': field 'targets.extraversion'"):
        resolve_persona_set(str(bad))


# -- several items per request -----------------------------------------------------------------------


def test_several_items_per_request_with_seeded_shuffled_orders():
    inventory = resolve_inventory("mini-ipip")
    design = Design(items_per_request=5, item_orders=2, seed=3)
    plan = plan_requests([inventory], design, "sim/default", {})
    assert len(plan) == 8  # 20 items / 5 per request x 2 orders
    for order in ("shuffle1", "shuffle2"):
        cell = [p for p in plan if p.condition.item_order == order]
        ids = [item.id for p in cell for item in p.items]
        assert sorted(ids) == sorted(item.id for item in inventory.items)  # every item once per cell
    orders = [[i.id for p in plan if p.condition.item_order == o for i in p.items] for o in ("shuffle1", "shuffle2")]
    assert orders[0] != orders[1]
    assert orders == [[i.id for p in plan_requests([inventory], design, "sim/default", {})
                       if p.condition.item_order == o for i in p.items] for o in ("shuffle1", "shuffle2")]
    assert "S5. " in plan[0].request.messages[-1].content


def test_several_items_per_request_end_to_end(tmp_path):
    inventories = [resolve_inventory("bfi-44")]
    result = administer(SimulatedRespondent("sim/e=2,seed=1"), inventories,
                        Design(items_per_request=11, item_orders=2), tmp_path)
    assert result.stats.sent == 8 and result.stats.outcomes == {"valid": 88}
    scores = open_run(tmp_path).scores()
    assert (scores[scores["scale"] == "E"]["score"] > 4).all()


@pytest.mark.parametrize(
    "reply, outcomes",
    [
        ("S1: 4\nS2: 2\nS3: 5", ["valid", "valid", "valid"]),
        ("**S2**: 1\nS1 - 3\nS3. 5", ["valid", "valid", "valid"]),
        ("4\n2\n5", ["valid", "valid", "valid"]),
        ("S1: 4\nS3: 9", ["valid", "unparseable", "out_of_range"]),
        ("As an AI, I don't have personal opinions.", ["refusal"] * 3),
        ("S1: 2 or 3\nS2: 1\nS3: 1", ["multiple", "valid", "valid"]),
    ],
)
def test_parse_many(reply, outcomes):
    assert [p.outcome for p in parse_many(reply, 3, NUMBERS, OPTIONS)] == outcomes


def test_probability_mode_needs_one_item_per_request():
    with pytest.raises(ValueError, match="probability mode scores one item per request"):
        Design(items_per_request=3, modes=["probs"])


# -- re-asking and retries -----------------------------------------------------------------------------


class MumblesFirst(ModelBackend):
    """Answers unreadably at first and properly once re-asked (a fake for the re-ask mechanism)."""

    name = "test/mumbles"

    def __init__(self):
        self.inner = SimulatedRespondent("sim/seed=1")

    async def complete(self, request):
        if request.messages[-1].role == "user" and request.messages[-1].content.startswith("I could not read"):
            return await self.inner.complete(request)
        return ModelReply(text="Hmm, that depends on the day.")


def test_reask_policy_recovers_invalid_replies_and_records_them(tmp_path):
    inventories = [resolve_inventory("mini-ipip")]
    result = administer(MumblesFirst(), inventories, Design(invalid="reask:2"), tmp_path)
    assert result.stats.outcomes == {"valid": 20} and result.stats.reasks == 20
    with RunStore(tmp_path / "responses.sqlite") as store:
        row = next(store.rows())
    assert row.reasks == 1 and row.reask_replies == ["Hmm, that depends on the day."]


def test_without_reasking_invalid_replies_stay_invalid(tmp_path):
    result = administer(MumblesFirst(), [resolve_inventory("mini-ipip")], Design(), tmp_path)
    assert result.stats.outcomes == {"unparseable": 20}


class RateLimitedTwice(ModelBackend):
    name = "test/rate-limited"

    def __init__(self):
        self.inner = SimulatedRespondent("sim/seed=1")
        self.calls = {}

    async def complete(self, request):
        key = request.messages[-1].content
        self.calls[key] = self.calls.get(key, 0) + 1
        if self.calls[key] <= 2:
            raise TransientModelError("429 Too Many Requests", retry_after=0.01)
        return await self.inner.complete(request)


def test_transient_errors_are_retried(tmp_path):
    result = administer(RateLimitedTwice(), [resolve_inventory("sd3")], Design(), tmp_path,
                        retry=RetryPolicy(max_retries=3, base_s=0.001))
    assert result.stats.outcomes == {"valid": 27} and result.stats.retries == 54


def test_retries_give_up_and_record_the_failure(tmp_path):
    result = administer(RateLimitedTwice(), [resolve_inventory("sd3")], Design(), tmp_path,
                        retry=RetryPolicy(max_retries=1, base_s=0.001))
    assert result.stats.failed == 27
    with RunStore(tmp_path / "responses.sqlite") as store:
        assert {r.error for r in store.rows()} == {"TransientModelError: 429 Too Many Requests"}


def test_backoff_honours_retry_after_and_grows():
    policy, rng = RetryPolicy(base_s=1.0, cap_s=60.0), random.Random(0)
    assert policy.wait(0, retry_after=7.5, rng=rng) >= 7.5
    waits = [policy.wait(k, None, rng) for k in range(5)]
    assert all(0.5 * 2**k <= w <= 2**k for k, w in enumerate(waits))
    # our own backoff is capped; a server's Retry-After is waited in full
    assert policy.wait(20, None, rng) <= 60.0 and policy.wait(0, 500.0, rng) == 500.0
