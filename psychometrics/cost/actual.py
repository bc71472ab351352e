"""What was actually paid: one reply's cost from the provider's usage fields, a run's total from its store.

A provider reports ``prompt_tokens`` (all input, cached included), the part served from its prompt
cache (OpenAI ``prompt_tokens_details.cached_tokens``, Anthropic ``cache_read_input_tokens``; stored as
``cached_input_tokens``), the part written to the cache (Anthropic ``cache_creation_input_tokens``) and
``completion_tokens``. The cost is ``(input - cached - written) * p_in + cached * p_cached + written *
p_write + output * p_out``. A reply without usage has no cost (None: unknown, not 0). A request's
re-asks are paid too: :class:`ReplyCosts` adds up every call of one request.
"""

from __future__ import annotations

import math

from psychometrics.cost.prices import CURRENCY, Price


def reply_cost(price: Price | None, reply) -> float | None:
    """The cost of one reply at ``price`` (batch prices when the reply says it came from a batch,
    ``reply.extra["batch"]``), or None when the price or the usage is unknown."""
    if price is None:
        return None
    if price.free:
        return 0.0
    if reply.input_tokens is None or reply.output_tokens is None:
        return None
    used = price.for_batch() if reply.extra.get("batch") else price
    cached = min(reply.cached_input_tokens or 0, reply.input_tokens)
    raw = reply.extra.get("cache_write_input_tokens")
    written = min(raw, reply.input_tokens - cached) if isinstance(raw, int) and raw > 0 else 0
    return ((reply.input_tokens - cached - written) * used.input
            + cached * (used.cached_input if used.cached_input is not None else used.input)
            + written * (used.cache_write if used.cache_write is not None else used.input)
            + reply.output_tokens * used.output)


class ReplyCosts:
    """The calls of one request (a first reply and its re-asks): their costs added up, None as soon as
    one is unknown."""

    def __init__(self, price: Price | None):
        self.price = price
        self.total: float | None = 0.0
        self.calls = 0

    def add(self, reply) -> None:
        cost = reply.cost if reply.cost is not None else reply_cost(self.price, reply)
        self.calls += 1
        self.total = None if cost is None or self.total is None else self.total + cost


def _digits(amount: float) -> float:
    """``amount`` to 12 significant digits (relative change below 5e-13): float sums of many small costs
    end in noise digits nobody should read."""
    return float(f"{amount:.12g}")


def run_cost(conn, price: Price | None) -> dict:
    """A run's cost from its ``responses`` table: the answered requests' costs summed (each request once,
    however many item rows it has), the cached input tokens, and what caching saved at ``price``
    (cached tokens at the input price minus what they cost).

    Stores older than the cost columns (version 2) have no cost: ``cost`` is None and ``priced`` 0.
    """
    columns = {row[1] for row in conn.execute("PRAGMA table_info(responses)")}
    result = {"currency": CURRENCY, "requests": 0, "priced": 0, "cost": None, "input_tokens": 0,
              "cached_input_tokens": 0, "output_tokens": 0, "caching_saving": None}
    if "cost" not in columns:
        return result
    rows = conn.execute(
        "SELECT MAX(cost), MAX(input_tokens), MAX(cached_input_tokens), MAX(output_tokens) FROM responses "
        "WHERE outcome != 'error' GROUP BY request_id").fetchall()
    result["requests"] = len(rows)
    priced = [r for r in rows if r[0] is not None]
    result["priced"] = len(priced)
    # summed exactly (fsum), to 12 significant digits: summaries read 0.0018504, not 0.00185039999...
    result["cost"] = _digits(math.fsum(r[0] for r in priced)) if priced else (0.0 if not rows else None)
    result["input_tokens"] = sum(r[1] or 0 for r in rows)
    cached = sum(r[2] or 0 for r in rows)
    result["cached_input_tokens"] = cached
    result["output_tokens"] = sum(r[3] or 0 for r in rows)
    if price is not None:
        per_token = price.input - (price.cached_input if price.cached_input is not None else price.input)
        result["caching_saving"] = _digits(cached * per_token)
    return result


def describe_run_cost(cost: dict) -> str | None:
    """One line for a run summary, or None when nothing was priced and nothing answered."""
    if not cost or not cost.get("requests"):
        return None
    if cost.get("cost") is None:
        return (f"cost: unknown ({cost['requests']:,} answered requests without a price or usage; give --prices "
                "FILE.yaml for this model)")
    from psychometrics.cost.prices import format_money

    line = f"cost: {format_money(cost['cost'])} {cost['currency']} for {cost['priced']:,} answered requests"
    if cost["priced"] < cost["requests"]:
        line += f" ({cost['requests'] - cost['priced']:,} more without usage or price: not counted)"
    if cost.get("cached_input_tokens"):
        saving = cost.get("caching_saving")
        line += (f"; {cost['cached_input_tokens']:,} of {cost['input_tokens']:,} input tokens from the provider's "
                 f"prompt cache" + (f", saving {format_money(saving)}" if saving is not None else ""))
    return line


def stored_run_cost(run_dir, model: str) -> dict | None:
    """:func:`run_cost` of the questionnaire run in ``run_dir`` at the price map's price of ``model``
    (None when the run has no store)."""
    from pathlib import Path

    from psychometrics.cost.prices import price_for
    from psychometrics.run.owner import RESPONSES
    from psychometrics.run.store import RunStore

    path = Path(run_dir) / RESPONSES
    if not path.exists():
        return None
    with RunStore(path, read_only=True) as store:
        return run_cost(store.conn, price_for(model))


def cost_rows(cost: dict | None) -> list[tuple[str, str]]:
    """Key/value rows of a run's cost for a report's header: the cost, and what the prompt cache saved."""
    if not cost or not cost.get("requests"):
        return []
    from psychometrics.cost.prices import format_money

    rows = [("cost", "unknown (no price or usage)" if cost["cost"] is None else
             f"{format_money(cost['cost'])} {cost['currency']} for {cost['priced']:,} of {cost['requests']:,} answered "
             "requests (from the provider's usage)")]
    if cost.get("cached_input_tokens"):
        saving = cost.get("caching_saving")
        rows.append(("prompt cache", f"{cost['cached_input_tokens']:,} of {cost['input_tokens']:,} input tokens cached"
                     + (f", saving {format_money(saving)}" if saving is not None else "")))
    return rows
