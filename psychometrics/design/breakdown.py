"""What a design multiplies to, factor by factor: the plan ``--dry-run`` shows before anything is sent.

A run's size is a product, and one factor can hide a large multiplier: ``latin-square`` is one word on
the command line and ten option orders for a five-point scale. :func:`plan_breakdown` names every
factor's levels (after expansion, per inventory where the number depends on the response scale) and
the product for each inventory, computed the way :func:`psychometrics.design.plan.count_requests`
counts (so the two always agree).
"""

from __future__ import annotations

from psychometrics.conditions import expand_option_orders, order_scheme
from psychometrics.design.personas import PersonaSet
from psychometrics.design.plan import Design, _wording_text, _wordings
from psychometrics.inventories.model import Inventory


def _scheme_counts(design: Design, inventory: Inventory) -> dict[str, int]:
    """How many distinct orders each scheme given contributes for this inventory (duplicates go to the
    scheme named first, as the planner keeps them)."""
    orders = expand_option_orders(design.option_orders, inventory.response_scale.values, design.seed)
    counts: dict[str, int] = {}
    for name, _ in orders:
        scheme = {"latin": "latin-square", "rotation": "rotations", "random": "random"}.get(order_scheme(name),
                                                                                         order_scheme(name))
        counts[scheme] = counts.get(scheme, 0) + 1
    return counts


def plan_breakdown(inventories: list[Inventory], design: Design, persona_set: PersonaSet | None) -> dict:
    """Every factor with its levels, and per inventory the product that gives its number of requests.

    Returns ``{"factors": [...], "inventories": [...], "requests": total}``: a factor has ``factor``,
    ``levels`` (a count, or per inventory when it depends on the inventory), ``names`` and an optional
    ``note``; an inventory row has its multipliers, ``formula`` (as text) and ``requests``.
    """
    personas = [p.id for p in persona_set.select(design.persona_ids)] if persona_set else ["none"]
    per_inventory = []
    order_names: dict[str, list[str]] = {}
    wording_names: dict[str, list[str]] = {}
    scheme_inventories: dict[tuple[str, int, int], list[str]] = {}
    for inventory in inventories:
        orders = [name for name, _ in expand_option_orders(design.option_orders, inventory.response_scale.values,
                                                           design.seed)]
        order_names[inventory.id] = orders
        wordings = _wordings(inventory, design)
        wording_names[inventory.id] = wordings
        texts = sum(_wording_text(item, w) is not None for w in wordings for item in inventory.items)
        chunks = sum(-(-sum(_wording_text(item, w) is not None for item in inventory.items)
                       // design.items_per_request) for w in wordings)
        item_orders = design.item_orders if design.items_per_request > 1 else 1
        per_cell = chunks * item_orders
        multipliers = [len(orders), len(design.templates), len(personas), len(design.temperatures), design.samples,
                       len(design.modes)]
        requests = per_cell
        for m in multipliers:
            requests *= m
        k = len(inventory.response_scale.values)
        for scheme, count in _scheme_counts(design, inventory).items():
            if scheme not in ("original", "reversed"):
                scheme_inventories.setdefault((scheme, count, k), []).append(inventory.id)
        parts = [f"{len(inventory.items)} items"]
        if len(wordings) > 1:
            parts.append(f"{len(wordings)} wordings ({texts} item texts)")
        if design.items_per_request > 1:
            parts.append(f"in requests of {design.items_per_request} items ({chunks} per order of items)")
            if item_orders > 1:
                parts.append(f"{item_orders} item orders")
        parts += [f"{len(orders)} option orders", f"{len(design.templates)} templates", f"{len(personas)} personas"]
        if len(design.temperatures) > 1:
            parts.append(f"{len(design.temperatures)} temperatures")
        parts += [f"{design.samples} samples", f"{len(design.modes)} modes"]
        per_inventory.append({
            "inventory": inventory.id, "items": len(inventory.items), "response_options": k,
            "wordings": len(wordings), "item_texts": texts, "requests_per_cell": per_cell,
            "option_orders": len(orders), "templates": len(design.templates), "personas": len(personas),
            "temperatures": len(design.temperatures), "samples": design.samples, "modes": len(design.modes),
            "requests": requests,
            "formula": " x ".join(parts) + f" = {requests:,} requests",
        })

    def by_inventory(names: dict[str, list[str]]) -> tuple[object, list[str]]:
        counts = {inv: len(levels) for inv, levels in names.items()}
        merged = list(dict.fromkeys(level for levels in names.values() for level in levels))
        return (next(iter(counts.values())) if len(set(counts.values())) == 1 else counts), merged

    notes = [f"{scheme}: {count} orders for {k} options ({', '.join(ids)})"
             for (scheme, count, k), ids in scheme_inventories.items()]
    order_levels, orders_merged = by_inventory(order_names)
    wording_levels, wordings_merged = by_inventory(wording_names)
    factors = [
        {"factor": "inventory", "levels": len(inventories), "names": [inv.id for inv in inventories]},
        {"factor": "option_order", "levels": order_levels, "names": orders_merged,
         "given": list(design.option_orders), "note": "; ".join(dict.fromkeys(notes)) or None},
        {"factor": "template", "levels": len(design.templates), "names": list(design.templates)},
        {"factor": "wording", "levels": wording_levels, "names": wordings_merged,
         "note": "items without a paraphrase are asked in fewer wordings" if design.paraphrases == "all" else None},
        {"factor": "persona", "levels": len(personas), "names": personas,
         "given": design.personas},
        {"factor": "item_order", "levels": design.item_orders if design.items_per_request > 1 else 1,
         "names": [f"shuffle{j + 1}" for j in range(design.item_orders)] if design.items_per_request > 1 else ["none"],
         "note": f"{design.items_per_request} items per request" if design.items_per_request > 1 else None},
        {"factor": "temperature", "levels": len(design.temperatures),
         "names": [f"{t:g}" for t in design.temperatures]},
        {"factor": "sample", "levels": design.samples, "names": [str(s) for s in range(design.samples)],
         "note": "at temperature " + ", ".join(f"{t:g}" for t in design.temperatures)},
        {"factor": "mode", "levels": len(design.modes), "names": list(design.modes)},
    ]
    return {"factors": factors, "inventories": per_inventory,
            "requests": sum(row["requests"] for row in per_inventory)}


def short_names(names: list[str], keep: int = 4) -> str:
    """A list of level names for a terminal: all of them when few, else the first ones, '...' and the last."""
    if len(names) <= keep + 1:
        return ", ".join(names)
    return ", ".join(names[:keep]) + f", ..., {names[-1]}"
