"""The shipped inventory library against the reference item banks: text, keys, membership, norms."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import pytest

from psychometrics.inventories.library import resolve_inventory, shipped_names

REFERENCE = Path(__file__).parent / "data" / "reference"

# Figures from the reference CSVs (items, reverse-keyed), as the foundation issue states them.
EXPECTED_COUNTS = {
    "ipip-neo-120": (120, 55),
    "ipip-neo-300": (300, 148),
    "bfi-44": (44, 16),
    "bfi-2": (60, 30),
    "ipip-16pf": (163, 66),
    "sd3": (27, 5),
    "ipip-50": (50, 24),
    "mini-ipip": (20, 11),
}
# Which reference column holds the scale, and which the facet.
SCALE_COLUMN = {
    "ipip-neo-120": "domain", "ipip-neo-300": "domain", "bfi-44": "domain", "bfi-2": "domain",
    "ipip-16pf": "factor", "sd3": "scale", "ipip-50": "factor", "mini-ipip": "factor",
}
FACET_COLUMN = {"ipip-neo-120": "facet", "ipip-neo-300": "facet", "bfi-2": "facet"}
PARAPHRASED = ("bfi-44", "ipip-neo-120", "mini-ipip", "sd3")


def reference_rows(name: str) -> list[dict[str, str]]:
    with open(REFERENCE / f"{name}.csv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def reference_id(name: str, row: dict[str, str]) -> str:
    return row["item"] if name == "sd3" else f"q{row['item']}"


def partition(pairs) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = defaultdict(set)
    for item_id, group in pairs:
        groups[group].add(item_id)
    return {frozenset(members) for members in groups.values()}


def test_library_ships_exactly_the_mission_inventories():
    assert shipped_names() == sorted(EXPECTED_COUNTS)


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_item_and_reverse_key_counts(name):
    inv = resolve_inventory(name)
    items, reversed_count = EXPECTED_COUNTS[name]
    assert len(inv.items) == items
    assert sum(item.reverse_keyed for item in inv.items) == reversed_count


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_items_are_verbatim_and_keys_exact(name):
    inv = resolve_inventory(name)
    rows = reference_rows(name)
    assert [item.id for item in inv.items] == [reference_id(name, row) for row in rows]
    for item, row in zip(inv.items, rows):
        assert item.text == row["text"], item.id
        assert item.reverse_keyed == (row["reverse_keyed"] == "yes"), item.id


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_scale_membership_matches_reference(name):
    inv = resolve_inventory(name)
    rows = reference_rows(name)
    expected = partition((reference_id(name, r), r[SCALE_COLUMN[name]]) for r in rows)
    assert partition(inv.scale_of_item.items()) == expected
    assert len(inv.scales) == len(expected)


@pytest.mark.parametrize("name", sorted(FACET_COLUMN))
def test_facet_membership_matches_reference(name):
    inv = resolve_inventory(name)
    rows = reference_rows(name)
    expected = partition((reference_id(name, r), r[FACET_COLUMN[name]]) for r in rows)
    assert partition(inv.facet_of_item.items()) == expected
    assert len(inv.facets) == {"bfi-2": 15}.get(name, 30)


def test_neo_facet_names_follow_the_reference():
    inv = resolve_inventory("ipip-neo-120")
    for row in reference_rows("ipip-neo-120"):
        facet = next(f for f in inv.facets if f.id == inv.facet_of_item[f"q{row['item']}"])
        assert f"{facet.id} {facet.name}" == row["facet"]


@pytest.mark.parametrize("name", PARAPHRASED)
def test_every_item_has_two_distinct_paraphrases(name):
    inv = resolve_inventory(name)
    for item in inv.items:
        assert len(item.paraphrases) >= 2, item.id
        wordings = {item.text.casefold(), *(p.casefold() for p in item.paraphrases)}
        assert len(wordings) == 1 + len(item.paraphrases), item.id


@pytest.mark.parametrize("name", PARAPHRASED)
def test_paraphrases_keep_the_grammatical_form(name):
    """IPIP items leave out the 'I'; BFI items complete the stem; every paraphrase is a sentence."""
    inv = resolve_inventory(name)
    for item in inv.items:
        for paraphrase in item.paraphrases:
            assert paraphrase[0].isupper() and paraphrase.endswith("."), (item.id, paraphrase)
            if name in ("ipip-neo-120", "mini-ipip"):
                assert not paraphrase.startswith(("I ", "I'm ", "You ")), (item.id, paraphrase)


@pytest.mark.parametrize("key", ["IPIP-NEO-120", "IPIP-NEO-300"])
def test_johnson_norms_are_in_the_files(key):
    name = key.lower()
    inv = resolve_inventory(name)
    reference = json.loads((REFERENCE / "norms-ipip-neo-johnson.json").read_text())[key]
    assert [n.group for n in inv.norms] == list(reference)
    for norm in inv.norms:
        values = reference[norm.group]
        for index, domain in enumerate("NEOAC"):
            assert norm.scales[domain].mean == values["domain_mean_NEOAC"][index]
            assert norm.scales[domain].sd == values["domain_sd_NEOAC"][index]
            block = values["facet_means_and_sds_raw_ns_11_70"][index * 12 : (index + 1) * 12]
            for j in range(6):
                stat = norm.facets[f"{domain}{j + 1}"]
                assert (stat.mean, stat.sd) == (block[j], block[6 + j])
        # Facet means add up to the domain mean (within 2%: the published norms are rounded and, for the
        # 300, not exactly additive), which shows the layout of the reference list is read right.
        for domain in "NEOAC":
            facet_sum = sum(norm.facets[f"{domain}{j}"].mean for j in range(1, 7))
            assert facet_sum == pytest.approx(norm.scales[domain].mean, rel=0.02)


def test_bfi44_norms():
    inv = resolve_inventory("bfi-44")
    (norm,) = inv.norms
    assert norm.n == 6076
    assert {k: (v.mean, v.sd) for k, v in norm.scales.items()} == {
        "E": (3.25, 0.90), "A": (3.64, 0.72), "C": (3.45, 0.73), "N": (3.32, 0.82), "O": (3.92, 0.66),
    }


def test_scoring_rules_and_traits():
    neo = resolve_inventory("ipip-neo-120")
    assert {s.scoring for s in neo.scales} == {"sum"} and {f.scoring for f in neo.facets} == {"sum"}
    assert {s.trait for s in neo.scales} == {"neuroticism", "extraversion", "openness", "agreeableness", "conscientiousness"}
    assert {s.scoring for s in resolve_inventory("bfi-44").scales} == {"mean"}
    stability = resolve_inventory("ipip-50").scale("ES")
    assert (stability.trait, stability.trait_sign) == ("neuroticism", -1)
    assert {s.trait for s in resolve_inventory("sd3").scales} == {"machiavellianism", "narcissism", "psychopathy"}


def test_16pf_says_it_is_the_ipip_version():
    inv = resolve_inventory("ipip-16pf")
    assert "public-domain IPIP version" in inv.description and "NOT the commercial 16PF" in inv.description
    assert "ipip.ori.org" in inv.licence
    assert len(inv.scales) == 16


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_every_inventory_carries_citation_licence_and_labels(name):
    inv = resolve_inventory(name)
    assert inv.citation and inv.licence and inv.instructions
    assert inv.response_scale.values == [1, 2, 3, 4, 5]
    assert len(inv.content_hash) == 64
