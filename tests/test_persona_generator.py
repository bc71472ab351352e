"""The shipped multi-trait persona set: reproduced byte for byte by its generator, balanced, all eight
traits at nine levels, short texts, traits named as the shipped inventories and tasks name them."""

from __future__ import annotations

import re
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from psychometrics.design import persona_generator as generator
from psychometrics.design.personas import resolve_persona_set
from psychometrics.statistics.correlation import power_r

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def shipped():
    return resolve_persona_set("multi-trait")


def _levels(persona_set) -> np.ndarray:
    return np.array([[p.targets[t] for t in generator.TRAITS] for p in persona_set.personas if p.targets])


def test_generator_reproduces_the_shipped_file_byte_for_byte(tmp_path):
    out = tmp_path / "multi-trait.yaml"
    subprocess.run([sys.executable, "-m", "psychometrics.design.persona_generator", "--out", str(out)], check=True,
                   capture_output=True)
    assert out.read_bytes() == generator.default_path().read_bytes()
    checked = subprocess.run([sys.executable, "-m", "psychometrics.design.persona_generator", "--check"],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout
    out.write_text(out.read_text(encoding="utf-8").replace("mt-050", "mt-05O"), encoding="utf-8")
    stale = subprocess.run([sys.executable, "-m", "psychometrics.design.persona_generator", "--check", "--out",
                            str(out)], capture_output=True, text=True)
    assert stale.returncode == 1 and "differs" in stale.stdout


def test_every_profile_sets_all_eight_traits_at_nine_balanced_levels(shipped):
    assert shipped.personas[0].id == "baseline" and shipped.personas[0].targets == {}
    profiles = [p for p in shipped.personas if p.targets]
    assert len(profiles) == len(shipped.personas) - 1 >= 100
    assert all(set(p.targets) == set(generator.TRAITS) for p in profiles)
    levels = _levels(shipped)
    for column in levels.T:
        counts = [int((column == level).sum()) for level in range(-4, 5)]
        assert max(counts) - min(counts) <= 1, counts
        assert column.sum() == 0


def test_targets_and_their_extremities_are_nearly_uncorrelated(shipped):
    levels = _levels(shipped)
    for values in (levels, np.abs(levels)):
        r = np.corrcoef(values.T)
        largest = max(abs(r[i, j]) for i, j in combinations(range(8), 2))
        assert largest < 0.05, largest
    # the description reports the largest |r| it has
    stated = re.search(r"largest \|r\| between two traits = ([0-9.]+)", shipped.description)
    r = np.corrcoef(levels.T)
    assert stated and float(stated.group(1)) == pytest.approx(max(abs(r[i, j]) for i, j in combinations(range(8), 2)),
                                                             abs=5e-4)


def test_design_search_actually_lowers_the_correlations():
    """The swap search is what makes the columns uncorrelated: the seeded start alone is not."""
    start = max(abs(r) for r in generator.correlations(generator.design(swaps=0)).values())
    searched = max(abs(r) for r in generator.correlations(generator.design()).values())
    assert start > 0.1 and searched < start / 5


def test_the_description_states_the_power_for_r_point_3(shipped):
    n = len([p for p in shipped.personas if p.targets])
    stated = re.search(r"r = \.3 .* alpha = \.05 .* power ([0-9.]+)", shipped.description)
    assert stated and float(stated.group(1)) == pytest.approx(power_r(n - 2), abs=0.005)
    assert 0.85 < power_r(n - 2) < 0.87  # pwr::pwr.r.test(n = 100, r = .3) gives 0.8600


def test_texts_are_short_and_say_each_level_with_its_qualifier(shipped):
    words = [len(p.text.split()) for p in shipped.personas if p.targets]
    assert 60 <= min(words) and max(words) <= 90
    qualifier = {1: "a bit", 2: "quite", 3: "very", 4: "extremely"}
    for persona in shipped.personas[1:]:
        sentences = persona.text.split(". ")[1:]
        assert len(sentences) == 8
        for trait, sentence in zip(generator.TRAITS, sentences):
            level = persona.targets[trait]
            high, low = generator.MARKERS[trait]
            if level == 0:
                assert "neither especially" in sentence
                continue
            pole = high if level > 0 else low
            assert any(f"{qualifier[abs(level)]} {a} and {qualifier[abs(level)]} {b}" in sentence for a, b in pole), \
                (persona.id, trait, sentence)


def test_wording_is_not_confounded_with_level(shipped):
    """Within each trait and level, several adjective pairs and frames are used, and every pair appears at
    every non-neutral level of its pole."""
    for trait_index, trait in enumerate(generator.TRAITS):
        high, low = generator.MARKERS[trait]
        for level in range(-4, 5):
            if level == 0:
                continue
            pole = high if level > 0 else low
            texts = [p.text.split(". ")[1 + trait_index] for p in shipped.personas[1:] if p.targets[trait] == level]
            pairs = {next(k for k, (a, _) in enumerate(pole) if f" {a} and " in t) for t in texts}
            frames = {next(k for k, f in enumerate(generator.FRAMES) if t.startswith(f.split("{}")[0].strip()))
                      for t in texts}
            assert pairs == {0, 1, 2} and frames == {0, 1, 2}, (trait, level, pairs, frames)


def test_trait_names_are_those_of_the_shipped_inventories_and_tasks():
    named = set()
    for path in [*ROOT.glob("inventories/*.yaml"), *ROOT.glob("psychometrics/behavior/tasks/*.yaml")]:
        named |= set(re.findall(r"^\s*trait:\s*([a-z]+)\s*$", path.read_text(encoding="utf-8"), flags=re.M))
    assert set(generator.TRAITS) <= named


def test_personas_show_fits_an_80_column_terminal(shipped):
    """Every line within 80 columns, every persona's id with all eight targets, the power in the header."""
    import os

    shown = subprocess.run([sys.executable, "-m", "psychometrics", "personas", "show", "multi-trait"],
                           capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "Multi-trait personas (multi-trait): 101 personas"
    assert max(len(line) for line in lines) <= 80
    blocks = shown.stdout.split("\n\n")[1:]
    assert len(blocks) == len(shipped.personas)
    for block, persona in zip(blocks, shipped.personas):
        joined = " ".join(block.split())
        targets = ", ".join(f"{t} {v:+d}" for t, v in persona.targets.items()) or "no targets"
        assert joined == f"- {persona.id} [{targets}] {' '.join(persona.text.split())}"
    assert "power 0.86" in " ".join(shown.stdout.split())
