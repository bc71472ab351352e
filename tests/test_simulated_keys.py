"""The simulated respondent's model string names only keys it knows, and it keys each item as the
inventory being administered keys it (not as any inventory that shares the item's text)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from psychometrics.design.plan import Design
from psychometrics.design.prompts import TEMPLATES, render_item
from psychometrics.errors import ModelSpecError
from psychometrics.inventories.library import resolve_inventory
from psychometrics.inventories.model import load_inventory
from psychometrics.models import resolve_model
from psychometrics.models.base import ModelRequest
from psychometrics.models.simulated import SimulatedRespondent, parse_sim_spec
from psychometrics.run.directory import administer
from psychometrics.run.owner import open_run

MINIMAL = Path(__file__).parent / "data" / "inventories" / "valid-minimal.yaml"


def _custom_inventory(tmp_path: Path, name: str, **changes) -> Path:
    """valid-minimal.yaml with ``changes`` applied to its data (scales replaced whole)."""
    data = yaml.safe_load(MINIMAL.read_text(encoding="utf-8"))
    data.update(changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------
# unknown keys


@pytest.mark.parametrize("spec, suggestion", [
    ("sim/extroversion=2", "did you mean extraversion?"),
    ("sim/bogus=2", None),
    ("sim/seed=1,neurotisism=1", "did you mean neuroticism?"),
    ("sim/acquiesence=1", "did you mean acquiescence?"),
    ("sim/e=1,x=2", None),
])
def test_unknown_keys_are_refused_with_the_valid_ones_listed(spec, suggestion):
    key = spec.removeprefix("sim/").rsplit(",", 1)[-1].split("=")[0]
    for make in (parse_sim_spec, SimulatedRespondent, resolve_model):
        with pytest.raises(ModelSpecError) as caught:
            make(spec)
        message = str(caught.value)
        assert "\n" not in message and message.startswith(f"--model {spec}: unknown key {key!r}")
        assert "valid keys are the parameters" in message and "extraversion" in message and "acquiescence" in message
        assert (suggestion in message) if suggestion else "did you mean" not in message


def test_known_keys_still_work():
    sim = SimulatedRespondent("sim/e=1,extraversion=1.5,machiavellianism=-1,cattell_warmth=2,seed=3,traits=random")
    assert sim.trait_level("extraversion") == 1.5 and sim.trait_level("machiavellianism") == -1
    assert sim.trait_level("cattell_warmth") == 2


def test_a_trait_of_a_user_inventory_is_valid_once_the_respondent_knows_that_inventory(tmp_path):
    scales = yaml.safe_load(MINIMAL.read_text())["scales"]
    scales[0]["trait"] = "grit"
    inventory = load_inventory(_custom_inventory(tmp_path, "gritty", id="gritty", scales=scales))
    with pytest.raises(ModelSpecError, match="unknown key 'grit'"):
        SimulatedRespondent("sim/grit=2")
    assert SimulatedRespondent("sim/grit=2", [inventory]).trait_level("grit") == 2
    assert resolve_model("sim/grit=2", inventories=[inventory]).trait_level("grit") == 2


def test_the_cli_refuses_an_unknown_key_in_one_line_and_creates_nothing(tmp_path):
    for spec in ("sim/extroversion=2", "sim/bogus=2"):
        out = tmp_path / "run"
        result = subprocess.run([sys.executable, "-m", "psychometrics", "administer", "--model", spec, "--out", str(out)],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "unknown key" in lines[0] and "Traceback" not in result.stderr
        assert not out.exists()


def test_the_api_accepts_a_user_inventory_trait_and_refuses_a_typo(tmp_path):
    from psychometrics import api

    scales = yaml.safe_load(MINIMAL.read_text())["scales"]
    scales[0]["trait"] = "grit"
    path = _custom_inventory(tmp_path, "gritty", id="gritty", scales=scales)
    outcome = api.administer("sim/grit=2,seed=1", inventory=str(path), out=tmp_path / "run")
    assert outcome.run_dir.is_dir()
    with pytest.raises(ModelSpecError, match="did you mean grit"):
        api.administer("sim/gritt=2", inventory=str(path), out=tmp_path / "typo")
    assert not (tmp_path / "typo").exists()


# ---------------------------------------------------------------------------------------------------
# keys per inventory


def _answers(model: str, out: Path):
    """Mini-IPIP answered by ``model`` (2 option orders x 3 samples at temperature 1, fixed design seed)."""
    design = Design(option_orders=["original", "reversed"], samples=3, temperature=1.0, seed=7)
    administer(SimulatedRespondent(model), [resolve_inventory("mini-ipip")], design, out, concurrency=1)
    frame = open_run(out).answers().responses
    return frame.set_index("request_id").sort_index()


def test_extraversion_moves_only_the_extraversion_items_of_mini_ipip(tmp_path):
    inventory = resolve_inventory("mini-ipip")
    # An agreeableness item of Mini-IPIP that IPIP-NEO-300 keys as (low) extraversion: pooled keys moved it.
    shared = next(i for i in inventory.items if i.text.startswith("Am not really interested in others"))
    assert inventory.scale_of_item[shared.id] == "A"
    neutral, extraverted = _answers("sim/seed=5", tmp_path / "e0"), _answers("sim/seed=5,e=2", tmp_path / "e2")
    # Request ids contain the model string; the answers line up by item and design cell.
    keys = ["item_id", "option_order", "sample"]
    neutral, extraverted = neutral.set_index(keys).sort_index(), extraverted.set_index(keys).sort_index()
    assert len(neutral) == len(extraverted) == 20 * 2 * 3
    scale = neutral.index.get_level_values("item_id").map(inventory.scale_of_item)
    others = scale != "E"
    # Every item outside E is answered exactly as at e = 0 (same draws, same probabilities) ...
    assert (neutral.loc[others, "value"].to_numpy() == extraverted.loc[others, "value"].to_numpy()).all()
    assert (neutral.loc[(shared.id,), "value"].to_numpy() == extraverted.loc[(shared.id,), "value"].to_numpy()).all()
    # ... and the E items move toward extraversion (reverse-keyed ones down in raw values).
    e_items = [i for i in inventory.items if inventory.scale_of_item[i.id] == "E"]
    for item in e_items:
        before = neutral.loc[(item.id,), "value"].mean()
        after = extraverted.loc[(item.id,), "value"].mean()
        assert (after < before) if item.reverse_keyed else (after > before), item.id


def _reply(sim: SimulatedRespondent, inventory, item_text: str, *, name: str | None) -> str:
    item = next(i for i in inventory.items if i.text == item_text)
    prompt = render_item(inventory, item, template=TEMPLATES["numbered"])
    request = ModelRequest(prompt.messages, prompt.choices, temperature=0.0, inventory=name)
    return asyncio.run(sim.complete(request)).text


def test_a_shared_item_text_takes_the_key_of_the_inventory_it_is_asked_from(tmp_path):
    # "Keep in the background." is reverse-keyed extraversion in Mini-IPIP; here it is reverse-keyed
    # agreeableness, with the same instructions and labels as Mini-IPIP (the prompts are identical).
    data = yaml.safe_load(MINIMAL.read_text())
    data["scales"][0]["items"] = ["e1", "e3"]
    data["scales"][1]["items"] = ["a1", "a2", "e2"]
    data["instructions"] = resolve_inventory("mini-ipip").instructions
    data.pop("facets")
    data.pop("norms")
    data["id"] = "rekeyed"
    (tmp_path / "rekeyed.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    custom = load_inventory(tmp_path / "rekeyed.yaml")
    mini = resolve_inventory("mini-ipip")
    text = "Keep in the background."
    assert render_item(custom, custom.item_by_id["e2"], template=TEMPLATES["numbered"]).messages == render_item(
        mini, next(i for i in mini.items if i.text == text), template=TEMPLATES["numbered"]).messages
    introvert = SimulatedRespondent("sim/e=-3,a=3,seed=1", [custom])
    # Asked from Mini-IPIP: low extraversion agrees with "keep in the background" (5 = very accurate).
    assert _reply(introvert, mini, text, name="mini-ipip") == "5"
    # Asked from the rekeyed inventory: high agreeableness disagrees with it (reverse-keyed A).
    assert _reply(introvert, custom, text, name="rekeyed") == "1"
    # A request that names no inventory is matched against the inventories the respondent was given.
    assert _reply(introvert, custom, text, name=None) == "1"
    plain = SimulatedRespondent("sim/e=-3,a=3,seed=1")
    plain.prepare([mini])
    assert _reply(plain, mini, text, name=None) == "5"


def test_planned_requests_name_their_inventory():
    from psychometrics.design.plan import plan_requests

    inventories = [resolve_inventory("mini-ipip"), resolve_inventory("bfi-44")]
    planned = plan_requests(inventories, Design(), "sim/seed=1", {}, None)
    assert {p.request.inventory for p in planned} == {"mini-ipip", "bfi-44"}
    assert all(p.request.inventory == p.inventory.id for p in planned)
