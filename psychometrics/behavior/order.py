"""The display order of a task's options or items in a behaviour run (``--order``).

Small models pick the first option shown far more often than chance (Qwen 0.5B: 71-81% of choices).
When each conversation draws its order independently (rule ``random``, every run made before the rule
was recorded), one persona happens to see the high-trait option first more often than another, and
the position bias becomes a difference between personas. Rule ``balanced`` (the default) instead
balances the orders *within* each respondent and task:

* a seeded base permutation ``b`` of the k entries is drawn per respondent (persona), task and k;
* conversation ``j`` of that respondent and task (its samples one after another, the variants of each
  sample visited in a seeded order) shows rotation ``r_j`` of ``b``: position ``p`` shows entry
  ``b[(r_j + p) mod k]``, with ``r_j = (r_0 + j) mod k`` from a seeded start ``r_0``;
* so entry ``b[q]`` stands at position ``p`` exactly when ``r_j = q - p (mod k)``: over any run of
  consecutive conversations, each entry takes each position equally often, or (when the count is not a
  multiple of k) ``floor`` or ``ceil`` of count / k times. That holds over each sample's variants and
  over all the respondent's samples. Variants with different k are balanced separately.

In probability mode (:mod:`psychometrics.behavior.runner`) each variant is read under all k rotations
of the base, so every entry is shown first exactly once and the position bias averages out.
"""

from __future__ import annotations

from collections.abc import Sequence

ORDER_RULES = ("balanced", "random")
#: The rule of a run whose manifest records none (made before the rule was recorded).
LEGACY_ORDER = "random"


def rotation(base: Sequence[int], r: int) -> list[int]:
    """Rotation ``r`` of ``base``: position ``p`` shows ``base[(r + p) % k]``."""
    k = len(base)
    return [int(base[(r + p) % k]) for p in range(k)]


def all_rotations(base: Sequence[int]) -> list[list[int]]:
    """The k rotations of ``base``: a Latin square (each entry in each position once)."""
    return [rotation(base, r) for r in range(len(base))]


def balanced_orders(sizes: Sequence[int], samples: int, rng) -> tuple[list[list[list[int] | None]], dict[int, list[int]]]:
    """Display orders balanced within one respondent and task.

    Parameters
    ----------
    sizes : per variant (in the task's order), the number of entries it displays (0: none shown).
    samples : the respondent's samples.
    rng : a numpy Generator seeded for this respondent and task.

    Returns
    -------
    (orders, bases): ``orders[sample][variant]`` the entry indices in display order (None where the
    variant displays no entries), and the base permutation per entry count k.
    """
    ks = sorted({k for k in sizes if k >= 2})
    bases = {k: [int(i) for i in rng.permutation(k)] for k in ks}
    following = {k: int(rng.integers(k)) for k in ks}
    orders: list[list[list[int] | None]] = []
    for _ in range(samples):
        row: list[list[int] | None] = [None] * len(sizes)
        for v in (int(i) for i in rng.permutation(len(sizes))):
            k = sizes[v]
            if k == 1:
                row[v] = [0]
            elif k >= 2:
                row[v] = rotation(bases[k], following[k])
                following[k] = (following[k] + 1) % k
        orders.append(row)
    return orders, bases
