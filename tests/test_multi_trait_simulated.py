"""The simulated respondent honours the multi-trait personas: every one of the eight targets shifts its
latent trait by ``persona_effect`` per level, and a questionnaire run recovers all eight at once."""

from __future__ import annotations

import numpy as np
import pytest

from psychometrics.analysis.tables import analyze_run
from psychometrics.behavior.runner import BehaviorDesign, behave
from psychometrics.behavior.task import resolve_tasks
from psychometrics.design.persona_generator import TRAITS
from psychometrics.design.personas import resolve_persona_set
from psychometrics.design.plan import Design, plan_requests
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.run.directory import administer


@pytest.fixture(scope="module")
def personas():
    return resolve_persona_set("multi-trait")


@pytest.mark.parametrize("effect", [1.0, 0.5])
def test_every_target_shifts_its_trait_by_persona_effect_per_level(personas, effect):
    """The persona is recognised in the system message a run sends, and each of the eight traits moves by
    ``persona_effect`` x its level (the model string sets extraversion, which the persona adds to)."""
    backend = SimulatedRespondent(f"sim/seed=3,e=0.25,persona_effect={effect}")
    inventory = resolve_inventory("mini-ipip")
    planned = plan_requests([inventory], Design(personas="multi-trait", modes=["probs"]), backend.name,
                            backend.params, personas)
    by_id = {p.id: p for p in personas.personas}
    seen = set()
    for request in planned:
        system = next(m.content for m in request.request.messages if m.role == "system")
        persona_id, targets = backend.find_persona(system)
        assert persona_id == request.condition.persona and targets == by_id[persona_id].targets
        if persona_id in seen:
            continue
        seen.add(persona_id)
        for trait in TRAITS:
            base = 0.25 if trait == "extraversion" else 0.0
            assert backend.trait_level(trait, (persona_id, targets)) == pytest.approx(
                base + effect * targets.get(trait, 0))
    assert len(seen) == len(personas.personas)


def test_a_run_recovers_all_eight_targets_and_only_their_own(personas, tmp_path):
    """All 101 personas answer mini-IPIP and SD3: each scale's score follows its own trait's target (r > .9)
    and not the other seven (|r| < .3; the design makes the targets nearly uncorrelated)."""
    inventories = [resolve_inventory("mini-ipip"), resolve_inventory("sd3")]
    administer(SimulatedRespondent("sim/seed=8"), inventories, Design(personas="multi-trait", modes=["probs"]),
               tmp_path / "run")
    scores = analyze_run(tmp_path / "run", structure=False)["scores"]
    profiles = [p for p in personas.personas if p.targets]
    for inventory in inventories:
        for scale in inventory.scales:
            if scale.trait not in TRAITS:
                continue
            by_persona = scores[(scores["inventory"] == inventory.id) & (scores["scale"] == scale.id)] \
                .groupby("persona")["score"].mean()
            score = by_persona.loc[[p.id for p in profiles]].to_numpy()
            for trait in TRAITS:
                r = np.corrcoef(score, [p.targets[trait] for p in profiles])[0, 1]
                if trait == scale.trait:
                    assert r > 0.9, (inventory.id, scale.id, trait, r)
                else:
                    assert abs(r) < 0.3, (inventory.id, scale.id, trait, r)


def test_behaviour_follows_the_target_of_the_tasks_trait(personas, tmp_path):
    from psychometrics.behavior.analysis import behavior_frame

    tasks = resolve_tasks("dictator-game")
    behave(SimulatedRespondent("sim/seed=9"), tasks, BehaviorDesign(personas="multi-trait", variants=2),
           tmp_path / "b")
    frame = behavior_frame(tmp_path / "b")
    task = tasks[0]
    means = frame.groupby("persona")["score"].mean()
    profiles = [p for p in personas.personas if p.targets]
    r = np.corrcoef(means.loc[[p.id for p in profiles]], [p.targets[task.trait] for p in profiles])[0, 1]
    assert r * task.direction > 0.5, r
