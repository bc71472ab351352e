"""A plan's cost before anything is sent: tokens and money per model and per design factor level.

For each request still to send: input tokens (system and user messages counted with the model's
tokenizer where one is offline, plus :data:`~psychometrics.cost.tokens.TOKENS_PER_MESSAGE` per message)
and output tokens at most ``max_tokens`` (text) or 1 (probabilities), so the money is an upper bound
on output. Cached prefix: the system message and the user message up to the first statement repeat
across the requests of a design cell; the first request with a prefix pays it in full (Anthropic:
at the cache-write price), each later one reads the cacheable part
(:func:`~psychometrics.cost.caching.cached_length`) at the cached price. This assumes requests sharing a
prefix are sent within the cache's lifetime (minutes), which the plan's order (items vary fastest)
gives. With ``batch`` the provider's batch prices are used where the map has them.

The cost of a request is ``(input - cached - written) * p_in + cached * p_cached + written * p_write +
output * p_out``.
"""

from __future__ import annotations

from psychometrics.cost.caching import cached_length
from psychometrics.cost.prices import CURRENCY, Price
from psychometrics.cost.tokens import TOKENS_PER_MESSAGE, TokenCounter

FACTOR_FIELDS = ("inventory", "option_order", "template", "persona", "wording", "item_order", "sample", "mode")


def _split_prompt(planned) -> tuple[list[str], str]:
    """(texts of the fixed prefix, text of the rest): the system messages and the user message up to
    its first statement, and the statements after."""
    messages = planned.request.messages
    statements = getattr(planned.prompt, "statements", ()) or ()
    fixed = [m.content for m in messages[:-1]]
    last = messages[-1].content
    cut = -1
    if statements:
        cut = last.find(f"S1. {statements[0]}") if len(statements) > 1 else last.rfind(statements[0])
    if cut < 0:
        return fixed, last
    return fixed + [last[:cut]], last[cut:]


def estimate_cost(model: str, planned: list, price: Price | None, *, batch: bool = False) -> dict:
    """Tokens and estimated cost of sending ``planned`` (a plan's requests still to send) to ``model``.

    Returns a dict: ``model``, ``currency``, ``requests``, ``input_tokens``, ``cached_input_tokens``,
    ``cache_write_tokens``, ``output_tokens_max``, ``cost`` (None when the price is unknown; the sum of
    ``input_cost`` and ``output_cost_max``),
    ``cost_without_caching``, ``caching_saving``, ``batch``, the ``price`` used, the ``basis`` of each
    number, and ``factors``: per factor level its requests and cost.
    """
    used = price.for_batch() if price is not None and batch else price
    counter = TokenCounter(model, price.provider if price else None)
    caching = used.caching if used is not None and used.cached_input is not None else None
    minimum = used.min_cached_tokens if used is not None else 0
    seen_prefixes: set[tuple[str, ...]] = set()
    totals = {"input": 0, "cached": 0, "written": 0, "output": 0, "prefix_max": 0}
    cells: dict[tuple, list] = {}  # (inventory, condition) -> [requests, cost]: the factor levels, summed at the end
    money = 0.0
    money_plain = 0.0
    money_out = 0.0
    count = counter.count
    for p in planned:
        messages = p.request.messages
        fixed, rest = _split_prompt(p)
        overhead = TOKENS_PER_MESSAGE * len(messages)
        # Anthropic caches the marked system block; automatic caching takes the whole repeated prefix.
        cache_texts = tuple(m.content for m in messages if m.role == "system") if caching == "explicit" \
            else tuple(fixed)
        fixed_tokens = [count(t) for t in fixed]
        prefix = (sum(fixed_tokens) if caching != "explicit" else sum(count(t) for t in cache_texts)) \
            + TOKENS_PER_MESSAGE * len(cache_texts)
        total_in = sum(fixed_tokens) + count(rest) + overhead
        prefix = min(prefix, total_in)
        if prefix > totals["prefix_max"]:
            totals["prefix_max"] = prefix
        cacheable = cached_length(prefix, minimum, caching)
        cached = written = 0
        if cacheable:
            if cache_texts in seen_prefixes:
                cached = cacheable
            else:
                seen_prefixes.add(cache_texts)
                written = cacheable if caching == "explicit" else 0
        out = p.request.max_tokens if p.request.mode == "text" else 1
        totals["input"] += total_in
        totals["cached"] += cached
        totals["written"] += written
        totals["output"] += out
        cost = None
        if used is not None:
            cost = ((total_in - cached - written) * used.input + cached * (used.cached_input or 0.0)
                    + written * (used.cache_write if used.cache_write is not None else used.input) + out * used.output)
            money += cost
            money_out += out * used.output
            money_plain += total_in * used.input + out * used.output
        entry = cells.get((p.inventory.id, p.condition))
        if entry is None:
            entry = cells[(p.inventory.id, p.condition)] = [0, 0.0]
        entry[0] += 1
        entry[1] += cost or 0.0
    levels: dict[tuple[str, str], list] = {}
    for (inventory_id, condition), (n, c) in cells.items():
        for field in FACTOR_FIELDS:
            level = inventory_id if field == "inventory" else str(getattr(condition, field))
            entry = levels.setdefault((field, level), [0, 0.0])
            entry[0] += n
            entry[1] += c
    factors = []
    for field in FACTOR_FIELDS:
        rows = [(level, n, c) for (f, level), (n, c) in levels.items() if f == field]
        factors.append({"factor": field, "levels": len(rows),
                        "per_level": [{"level": level, "requests": n, "cost": c if used is not None else None}
                                      for level, n, c in rows]})
    known = used is not None
    return {
        "model": model, "currency": CURRENCY, "requests": len(planned), "batch": batch,
        "input_tokens": totals["input"], "cached_input_tokens": totals["cached"],
        "cache_write_tokens": totals["written"], "output_tokens_max": totals["output"],
        "cost": money if known else None,
        "input_cost": money - money_out if known else None, "output_cost_max": money_out if known else None,
        "cost_without_caching": money_plain if known else None,
        "caching_saving": (money_plain - money) if known else None,
        "price": None if used is None else {
            "input_per_million": used.input * 1e6, "output_per_million": used.output * 1e6,
            "cached_input_per_million": None if used.cached_input is None else used.cached_input * 1e6,
            "cache_write_per_million": None if used.cache_write is None else used.cache_write * 1e6,
            "described": used.describe(), "source": used.source,
        },
        "token_basis": counter.basis,
        "cache_basis": _cache_basis(used, caching, minimum, totals["prefix_max"]),
        "batch_basis": _batch_basis(price, batch),
        "factors": factors,
    }


def _cache_basis(price: Price | None, caching: str | None, minimum: int, prefix_max: int) -> str:
    if price is None:
        return "price unknown"
    if price.free:
        return "free"
    if caching is None:
        return "no prompt-cache price for this model: no caching discount"
    kind = ("the system block (persona + instructions), marked with cache_control" if caching == "explicit"
            else "the repeated prefix (persona, instructions, options), cached by the provider")
    if prefix_max < minimum:
        return (f"{kind}: at most {prefix_max:,} tokens, below the {minimum:,}-token minimum the provider caches, "
                "so no discount")
    return f"{kind}, at least {minimum:,} tokens: later requests of a design cell read it from the cache"


def _batch_basis(price: Price | None, batch: bool) -> str:
    if not batch:
        return "not batched (--batch would use the provider's batch prices)"
    if price is None or price.free:
        return "batch: no price to discount"
    if price.batch_input is None or price.batch_output is None:
        return "batch: the price map has no batch price for this model, full prices shown"
    return "batch prices of the provider"


def factor_costs(estimate: dict) -> list[dict]:
    """Per design factor with more than one level (and the inventory): levels and the cost of one level
    (a range when levels differ), what dropping a level would save."""
    rows = []
    for factor in estimate["factors"]:
        per_level = factor["per_level"]
        if factor["levels"] < 2 and factor["factor"] != "inventory":
            continue
        costs = [row["cost"] for row in per_level]
        requests = [row["requests"] for row in per_level]
        rows.append({
            "factor": factor["factor"], "levels": factor["levels"],
            "requests_per_level": (min(requests), max(requests)),
            "cost_per_level": None if any(c is None for c in costs) else (min(costs), max(costs)),
            "names": [row["level"] for row in per_level],
        })
    return rows


def price_tokens(model: str, input_tokens: int, output_tokens: int, price: Price | None, basis: str,
                 requests: int = 0) -> dict:
    """An estimate from token counts alone (no prompts at hand: a behaviour run's conversations), at the
    full input price (no caching assumed), in the shape of :func:`estimate_cost`."""
    input_cost = output_cost = total = None
    if price is not None:
        input_cost, output_cost = input_tokens * price.input, output_tokens * price.output
        total = input_cost + output_cost
    known = price is not None
    return {
        "model": model, "currency": CURRENCY, "requests": requests, "batch": False, "input_tokens": input_tokens,
        "cached_input_tokens": 0, "cache_write_tokens": 0, "output_tokens_max": output_tokens,
        "input_cost": input_cost, "output_cost_max": output_cost,
        "cost": total, "caching_saving": 0.0 if known else None,
        "price": None if price is None else {"input_per_million": price.input * 1e6,
                                             "output_per_million": price.output * 1e6,
                                             "described": price.describe(), "source": price.source},
        "token_basis": basis, "cache_basis": "not estimated for conversations", "batch_basis": "not batched",
        "factors": [],
    }


def add_estimates(model: str, parts: list[dict]) -> dict:
    """One model's estimates added up (its questionnaire and its behaviour run): counts summed, money
    summed (unknown when any part is unknown), the bases of the first part (the questionnaire)."""
    first = parts[0]
    combined = {**first, "model": model, "factors": []}
    for key in ("requests", "input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens_max"):
        combined[key] = sum(p[key] for p in parts)
    for key in ("input_cost", "output_cost_max", "cost", "caching_saving"):
        values = [p.get(key) for p in parts]
        combined[key] = None if any(v is None for v in values) else sum(values)
    return combined
