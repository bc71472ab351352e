"""Simulated respondents answer through prompts like a real model; their traits and biases show in the data.

Everything here goes the whole way a real answer goes: render the item under a template and option
order, send the messages to the backend, parse the reply text (or read the label probabilities), and
map the displayed position back to the semantic response value.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from psychometrics.errors import ModelSpecError
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models import resolve_model
from psychometrics.models.base import ModelRequest
from psychometrics.models.simulated import REFUSAL_TEXT, SimulatedRespondent, grm_probabilities, parse_sim_spec
from psychometrics.engine.parse import parse_reply
from psychometrics.design.prompts import TEMPLATES, render_item

ORIGINAL = (1, 2, 3, 4, 5)
REVERSED = (5, 4, 3, 2, 1)


def administer(model: str, inventory_name: str, *, samples: int = 1, temperature: float = 1.0,
               orders=(ORIGINAL,), template: str = "numbered", mode: str = "text"):
    """Answer every item; return records (item, order, displayed position, value or None, outcome)."""
    inventory = resolve_inventory(inventory_name)
    backend = resolve_model(model)

    async def run():
        records = []
        for order in orders:
            for item in inventory.items:
                prompt = render_item(inventory, item, template=TEMPLATES[template], option_order=order)
                options = tuple(inventory.response_scale.labels[v] for v in prompt.position_values)
                for sample in range(samples):
                    request = ModelRequest(prompt.messages, prompt.choices, mode=mode,
                                           temperature=temperature, seed=sample)
                    reply = await backend.complete(request)
                    if mode == "probs":
                        records.append(dict(item=item, order=order, logprobs=reply.choice_logprobs,
                                            values=prompt.position_values))
                        continue
                    parsed = parse_reply(reply.text, prompt.choices, options)
                    value = prompt.position_values[parsed.position] if parsed.outcome == "valid" else None
                    records.append(dict(item=item, order=order, position=parsed.position,
                                        value=value, outcome=parsed.outcome))
        return records

    return inventory, asyncio.run(run())


def keyed(inventory, record) -> float:
    return inventory.response_scale.reverse(record["value"]) if record["item"].reverse_keyed else record["value"]


def scale_mean(inventory, records, scale_id) -> float:
    members = set(inventory.scale(scale_id).items)
    values = [keyed(inventory, r) for r in records if r["item"].id in members and r["value"] is not None]
    return float(np.mean(values))


def test_keyed_item_means_move_with_the_trait():
    levels = [-2.0, -1.0, 0.0, 1.0, 2.0]
    means = []
    for level in levels:
        inventory, records = administer(f"sim/extraversion={level},seed=4", "ipip-50", samples=4)
        means.append(scale_mean(inventory, records, "E"))
    assert all(a < b for a, b in zip(means, means[1:])), means
    assert means[0] < 2.2 and means[-1] > 3.8
    assert np.corrcoef(levels, means)[0, 1] > 0.97


def test_other_traits_do_not_move_with_extraversion():
    low_inv, low = administer("sim/e=-2,seed=1", "mini-ipip", samples=6)
    high_inv, high = administer("sim/e=2,seed=1", "mini-ipip", samples=6)
    for scale in ("A", "C", "N", "I"):
        assert abs(scale_mean(low_inv, low, scale) - scale_mean(high_inv, high, scale)) < 0.4


def test_reverse_keyed_items_move_the_other_way_in_raw_responses():
    inventory, low = administer("sim/a=-1.5,seed=2", "bfi-44", samples=4)
    _, high = administer("sim/a=1.5,seed=2", "bfi-44", samples=4)
    members = set(inventory.scale("A").items)

    def raw_mean(records, reverse):
        return np.mean([r["value"] for r in records
                        if r["item"].id in members and r["item"].reverse_keyed == reverse])

    assert raw_mean(high, False) > raw_mean(low, False) + 1.0
    assert raw_mean(high, True) < raw_mean(low, True) - 1.0


def test_ipip50_emotional_stability_is_reversed_neuroticism():
    inventory, records = administer("sim/neuroticism=2,seed=3", "ipip-50", samples=3)
    assert scale_mean(inventory, records, "ES") < 2.2


def test_dark_triad_traits():
    inventory, records = administer("sim/machiavellianism=2,psychopathy=-2,seed=5", "sd3", samples=4)
    assert scale_mean(inventory, records, "M") > 3.8
    assert scale_mean(inventory, records, "P") < 2.2


def test_answers_are_the_same_under_any_option_order_and_template_without_bias():
    """Positions are mapped back to meaning: an unbiased respondent's values do not depend on order."""
    base_inv, base = administer("sim/e=1,a=-1,seed=9", "mini-ipip", temperature=0, orders=(ORIGINAL,))
    for template in TEMPLATES:
        _, other = administer("sim/e=1,a=-1,seed=9", "mini-ipip", temperature=0, orders=(REVERSED,),
                              template=template)
        assert [r["value"] for r in other] == [r["value"] for r in base], template


def test_acquiescence_raises_raw_agreement_on_both_keying_directions():
    _, plain = administer("sim/seed=7", "ipip-neo-120", samples=2)
    _, yes = administer("sim/seed=7,acquiescence=1.5", "ipip-neo-120", samples=2)

    def raw(records, reverse):
        return np.mean([r["value"] for r in records if r["item"].reverse_keyed == reverse])

    for reverse in (False, True):
        assert raw(yes, reverse) > raw(plain, reverse) + 0.7


def test_midpoint_preference_shows_in_the_midpoint_rate():
    def midpoint_rate(model):
        _, records = administer(model, "bfi-44", samples=3)
        return np.mean([r["value"] == 3 for r in records])

    assert midpoint_rate("sim/seed=1,midpoint=2") > midpoint_rate("sim/seed=1") + 0.3


@pytest.mark.parametrize("bias, position", [("position_first", 0), ("position_last", 4)])
def test_position_bias_shows_under_both_option_orders(bias, position):
    def rate(model):
        _, records = administer(model, "mini-ipip", samples=5, orders=(ORIGINAL, REVERSED))
        return np.mean([r["position"] == position for r in records])

    biased, unbiased = rate(f"sim/seed=2,{bias}=3"), rate("sim/seed=2")
    assert biased > 0.45 and biased > unbiased + 0.3


def test_refusals_appear_at_the_set_rate_and_parse_as_refusals():
    _, records = administer("sim/seed=11,refusal=0.3", "ipip-neo-120", samples=2)
    rate = np.mean([r["outcome"] == "refusal" for r in records])
    n = len(records)
    assert abs(rate - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)
    assert {r["outcome"] for r in records} == {"valid", "refusal"}


def test_probability_mode_gives_a_distribution_over_the_displayed_labels():
    inventory, records = administer("sim/e=3,seed=1", "mini-ipip", mode="probs", orders=(REVERSED,))
    first = records[0]  # q1 "Am the life of the party." (E, positively keyed)
    probabilities = {k: math.exp(v) for k, v in first["logprobs"].items()}
    assert sum(probabilities.values()) == pytest.approx(1.0)
    assert max(probabilities, key=probabilities.get) == "1"  # label 1 shows value 5 when reversed
    expected = sum(p * v for p, v in zip(probabilities.values(), first["values"]))
    assert expected > 4.0


def test_probability_mode_moves_refused_share_off_the_options():
    _, records = administer("sim/seed=1,refusal=0.25", "mini-ipip", mode="probs")
    for record in records:
        assert sum(math.exp(v) for v in record["logprobs"].values()) == pytest.approx(0.75)


def test_temperature_zero_is_deterministic_and_sampling_is_seeded():
    _, a = administer("sim/seed=3,noise=0.5", "mini-ipip", temperature=0)
    _, b = administer("sim/seed=3,noise=0.5", "mini-ipip", temperature=0)
    assert [r["value"] for r in a] == [r["value"] for r in b]
    _, c = administer("sim/seed=3", "mini-ipip", samples=8, temperature=1.0)
    _, d = administer("sim/seed=3", "mini-ipip", samples=8, temperature=1.0)
    assert [r["value"] for r in c] == [r["value"] for r in d]
    assert len({r["value"] for r in c if r["item"].id == "q1"}) > 1  # samples differ from each other


def test_paraphrases_are_understood():
    inventory = resolve_inventory("bfi-44")
    sim = SimulatedRespondent("sim/e=2.5,seed=1")
    item = inventory.item_by_id["q1"]
    for wording in item.paraphrases:
        prompt = render_item(inventory, item, template=TEMPLATES["numbered"], wording=wording)
        reply = asyncio.run(sim.complete(ModelRequest(prompt.messages, prompt.choices)))
        assert reply.text == "5", wording


def test_user_inventory_items_are_learned_through_prepare(tmp_path):
    from psychometrics.inventories.model import load_inventory
    from pathlib import Path

    inventory = load_inventory(Path(__file__).parent / "data" / "inventories" / "valid-minimal.yaml")
    sim = SimulatedRespondent("sim/agreeableness=-2.5,seed=1")
    sim.prepare([inventory])
    item = inventory.item_by_id["a2"]  # "Insult people." reverse-keyed agreeableness
    prompt = render_item(inventory, item, template=TEMPLATES["numbered"])
    assert asyncio.run(sim.complete(ModelRequest(prompt.messages, prompt.choices))).text == "5"


def test_random_traits_are_seeded_and_reported():
    a, b = SimulatedRespondent("sim/traits=random,seed=1"), SimulatedRespondent("sim/traits=random,seed=1")
    assert a.trait_level("extraversion") == b.trait_level("E".lower())
    assert a.trait_level("extraversion") != SimulatedRespondent("sim/traits=random,seed=2").trait_level("extraversion")
    assert SimulatedRespondent("sim/e=1.25,traits=random").trait_level("extraversion") == 1.25


def test_grm_probabilities_sum_to_one_and_shift_with_eta():
    thresholds = np.linspace(-1.5, 1.5, 4)
    low, high = grm_probabilities(-2, 1.8, thresholds), grm_probabilities(2, 1.8, thresholds)
    assert low.sum() == pytest.approx(1) and high.sum() == pytest.approx(1)
    assert np.dot(low, range(5)) < 1 < 3 < np.dot(high, range(5))


def test_refusal_text_is_recognised_by_the_parser():
    assert parse_reply(REFUSAL_TEXT, ("1", "2", "3"), ("a", "b", "c")).outcome == "refusal"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("sim/e=high", "e must be a number, got 'high'"),
        ("sim/refusal=1.5", "refusal must be between 0 and 1, got 1.5"),
        ("sim/e", "expected key=value pairs"),
        ("sim/traits=some", "traits must be one of zero, random"),
        ("sim/seed=1.5", "seed must be a whole number"),
        ("sim/extraversion=9", "trait extraversion must be between -6 and 6"),
        ("sim/Bad-Key=1", "'bad-key' is neither a trait name nor a parameter"),
    ],
)
def test_bad_sim_specs_are_one_line_errors(spec, message):
    with pytest.raises(ModelSpecError) as caught:
        parse_sim_spec(spec)
    assert message in str(caught.value) and str(caught.value).startswith(f"--model {spec}")


def test_unknown_model_kind_is_a_clear_error():
    with pytest.raises(ModelSpecError, match="unknown model kind"):
        resolve_model("frobnicator")
