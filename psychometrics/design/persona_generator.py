"""Generates the shipped ``multi-trait`` persona set: every profile sets all eight traits at once.

Concurrent shaping after Serapio-García et al. (2023): each profile gives each Big Five domain and each
Dark Triad trait a level from -4 to 4 (extremely / very / quite / a bit low, neutral, a bit / quite / very /
extremely high), worded with adjective markers of the trait's poles (Goldberg, 1992, for the Big Five;
Paulhus & Williams, 2002, and Jones & Paulhus, 2014, for the Dark Triad). The levels come from a balanced
design: every trait column holds each level equally often (the one left over is neutral, so each column
sums to 0), and the columns are permuted, from a seeded start, by swaps that lower the largest |r|
between two columns (of levels and of extremities |level|), so that the eight targets are (near)
uncorrelated and a behaviour or self-report score can be regressed on all of them at once. Each trait pole has three adjective pairs and each trait
sentence three frames; within a trait and level the nine (pair, frame) wordings are taken in turn, so the
wording is not confounded with the level. A baseline persona without targets comes first.

The generator is deterministic (Python's :class:`random.Random`, whose stream is stable across versions,
and integer arithmetic): ``python -m psychometrics.design.persona_generator`` rewrites
``psychometrics/data/personas/multi-trait.yaml`` byte for byte; ``--check`` only compares.

Goldberg, L. R. (1992). The development of markers for the Big-Five factor structure. *Psychological
Assessment*, 4(1), 26-42. Jones, D. N., & Paulhus, D. L. (2014). Introducing the Short Dark Triad (SD3).
*Assessment*, 21(1), 28-41. Paulhus, D. L., & Williams, K. M. (2002). The Dark Triad of personality.
*Journal of Research in Personality*, 36(6), 556-563. Serapio-García, G., et al. (2023). Personality
traits in large language models. arXiv:2307.00184.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from itertools import combinations
from pathlib import Path

SET_ID = "multi-trait"
PROFILES = 100
SEED = 16
SWAPS = 40_000
LEVELS = tuple(range(-4, 5))
OPENING = "For the following task, respond as the person described here."
BASELINE = "You are yourself, just as you usually are."

QUALIFIERS = {1: "a bit", 2: "quite", 3: "very", 4: "extremely"}

# trait -> (high-pole adjective pairs, low-pole adjective pairs); pair k of each pole are rough antonyms,
# so the neutral wording "neither especially HIGH nor especially LOW" uses the first word of each.
MARKERS: dict[str, tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]] = {
    "extraversion": ((("talkative", "outgoing"), ("energetic", "assertive"), ("sociable", "bold")),
                     (("quiet", "reserved"), ("withdrawn", "passive"), ("shy", "timid"))),
    "agreeableness": ((("kind", "warm"), ("cooperative", "considerate"), ("sympathetic", "generous")),
                      (("unkind", "cold"), ("uncooperative", "harsh"), ("unsympathetic", "selfish"))),
    "conscientiousness": ((("organized", "thorough"), ("reliable", "hardworking"), ("efficient", "systematic")),
                          (("disorganized", "careless"), ("unreliable", "lazy"), ("inefficient", "sloppy"))),
    "neuroticism": ((("anxious", "moody"), ("nervous", "insecure"), ("irritable", "temperamental")),
                    (("calm", "relaxed"), ("composed", "secure"), ("even-tempered", "emotionally stable"))),
    "openness": ((("imaginative", "creative"), ("curious", "intellectual"), ("artistic", "reflective")),
                 (("unimaginative", "uncreative"), ("incurious", "unintellectual"),
                  ("conventional", "unreflective"))),
    "machiavellianism": ((("manipulative", "calculating"), ("scheming", "cunning"),
                          ("deceitful", "cynical about others")),
                         (("straightforward", "honest"), ("sincere", "principled"),
                          ("candid", "trusting of others"))),
    "narcissism": ((("vain", "self-important"), ("boastful", "attention-seeking"), ("entitled", "arrogant")),
                   (("modest", "humble"), ("unassuming", "down-to-earth"), ("unpretentious", "self-effacing"))),
    "psychopathy": ((("callous", "reckless"), ("impulsive", "remorseless"), ("thrill-seeking", "cold-hearted")),
                    (("caring", "cautious"), ("self-controlled", "prudent"), ("empathetic", "gentle"))),
}
TRAITS = tuple(MARKERS)

FRAMES = ("You are {}.", "You seem {}.", "Others see you as {}.")

DESCRIPTION = (
    "Personas that shape all eight traits at once, written for psytest after the concurrent shaping of "
    "Serapio-García et al. (2023). Each of {profiles} profiles sets every Big Five domain (extraversion, "
    "agreeableness, conscientiousness, neuroticism, openness) and every Dark Triad trait (machiavellianism, "
    "narcissism, psychopathy) to one of nine levels, -4 to 4: extremely, very, quite or a bit toward the low "
    "pole, neutral, or a bit, quite, very or extremely toward the high pole, each said with two adjective "
    "markers of the pole (Big Five after Goldberg, 1992; Dark Triad after Paulhus & Williams, 2002, and Jones "
    "& Paulhus, 2014). The levels follow a balanced design: each level appears {low_count} or {high_count} "
    "times per trait, and the eight target columns are nearly uncorrelated (largest |r| between two traits "
    "= {max_r:.3f}; between their extremities, |level|, {max_extremity_r:.3f}), so that each trait's effect "
    "can be estimated while the others vary. Three adjective pairs "
    "per pole and three sentence frames are rotated within each level, so wording is not confounded with "
    "level. A baseline persona without targets comes first. Power: with the {profiles} profiles as "
    "respondents of one model, a correlation of r = .3 between a target level or a self-report and a "
    "behaviour score is detected at alpha = .05 (two-sided) with power {power:.2f} (Cohen, 1988; "
    "pwr.r.test formula). Generated by psychometrics/design/persona_generator.py (seed {seed}); the wording "
    "is original."
)
SOURCE = (
    "Serapio-García, G., Safdari, M., Crepy, C., Sun, L., Fitz, S., Romero, P., Abdulhai, M., Faust, A., & "
    "Matarić, M. (2023). Personality traits in large language models. arXiv:2307.00184; Goldberg, L. R. "
    "(1992). The development of markers for the Big-Five factor structure. Psychological Assessment, 4(1), "
    "26-42; Paulhus, D. L., & Williams, K. M. (2002). The Dark Triad of personality. Journal of Research in "
    "Personality, 36(6), 556-563; Jones, D. N., & Paulhus, D. L. (2014). Introducing the Short Dark Triad "
    "(SD3). Assessment, 21(1), 28-41."
)


def balanced_column(n: int) -> list[int]:
    """``n`` levels with each of -4..4 appearing ``n // 9`` times and the remainder spread symmetrically
    around 0 (0 first, then -1/1, ...), so the column sums to 0 whenever the remainder is odd or 0."""
    column = [level for level in LEVELS for _ in range(n // len(LEVELS))]
    extra = [0] + [sign * k for k in range(1, 5) for sign in (-1, 1)]
    column += extra[: n % len(LEVELS)]
    return column


def _dot(a: list[int], b: list[int], mean_a: float, mean_b: float) -> float:
    return sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b))


def design(n: int = PROFILES, seed: int = SEED, swaps: int = SWAPS) -> list[list[int]]:
    """Target columns (one list of ``n`` levels per trait in :data:`TRAITS` order), nearly uncorrelated.

    Each column starts as a seeded shuffle of :func:`balanced_column`; then, ``swaps`` times, two rows of
    one random column are exchanged when that lowers the largest absolute correlation between two columns
    (or keeps it and lowers the sum of squared correlations). Both the levels and their extremity
    (|level|) are decorrelated, so neither a linear nor a "how strongly shaped" effect of one trait is
    confounded with another. Marginals never change, so a correlation is the centred cross-product over
    the common sum of squares and a swap updates it in O(traits).
    """
    rng = random.Random(seed)
    columns = []
    for _ in TRAITS:
        column = balanced_column(n)
        rng.shuffle(column)
        columns.append(column)
    k = len(columns)
    views = [columns, [[abs(x) for x in c] for c in columns]]  # levels, extremity
    scales = []
    for view in views:
        mean = sum(view[0]) / n
        scales.append(_dot(view[0], view[0], mean, mean))
    pairs = list(combinations(range(k), 2))
    cross = [{(t, u): _dot(v[t], v[u], sum(v[t]) / n, sum(v[u]) / n) for t, u in pairs} for v in views]

    def score(products) -> tuple[float, float]:
        rs = [value / scale for table, scale in zip(products, scales) for value in table.values()]
        return max(abs(r) for r in rs), sum(r * r for r in rs)

    current = score(cross)
    for _ in range(swaps):
        t = rng.randrange(k)
        i, j = rng.randrange(n), rng.randrange(n)
        if columns[t][i] == columns[t][j]:
            continue
        changed = []
        for view, table in zip(views, cross):
            delta = view[t][j] - view[t][i]
            updated = dict(table)
            for u in range(k):
                if u != t:
                    key = (t, u) if t < u else (u, t)
                    # swapping rows i, j of column t changes sum_r x_t[r] y_u[r] by (x_j - x_i)(y_i - y_j)
                    updated[key] = table[key] + delta * (view[u][i] - view[u][j])
            changed.append(updated)
        candidate = score(changed)
        if candidate < current:
            for view in views:
                view[t][i], view[t][j] = view[t][j], view[t][i]
            cross, current = changed, candidate
    return columns


def correlations(columns: list[list[int]]) -> dict[tuple[str, str], float]:
    """Pearson r between every two target columns."""
    n = len(columns[0])
    means = [sum(c) / n for c in columns]
    ss = [_dot(c, c, m, m) for c, m in zip(columns, means)]
    return {(TRAITS[t], TRAITS[u]): _dot(columns[t], columns[u], means[t], means[u]) / (ss[t] * ss[u]) ** 0.5
            for t, u in combinations(range(len(columns)), 2)}


def extremity_correlations(columns: list[list[int]]) -> dict[tuple[str, str], float]:
    """Pearson r between the |level| columns of every two traits."""
    return correlations([[abs(x) for x in column] for column in columns])


def trait_sentence(trait: str, level: int, wording: int) -> str:
    """One sentence setting ``trait`` to ``level`` with adjective pair and frame chosen by ``wording`` (0..8)."""
    pair, frame = wording % 3, wording // 3
    high, low = MARKERS[trait]
    if level == 0:
        phrase = f"neither especially {high[pair][0]} nor especially {low[pair][0]}"
    else:
        words = (high if level > 0 else low)[pair]
        qualifier = QUALIFIERS[abs(level)]
        phrase = f"{qualifier} {words[0]} and {qualifier} {words[1]}"
    return FRAMES[frame].format(phrase)


def profiles(columns: list[list[int]]) -> list[dict]:
    """The personas: a baseline, then one profile per design row (ids ``mt-001`` ...)."""
    n = len(columns[0])
    turn: dict[tuple[str, int], int] = {}
    out = [{"id": "baseline", "text": f"{OPENING} {BASELINE}", "targets": {}}]
    for row in range(n):
        sentences, targets = [], {}
        for t, trait in enumerate(TRAITS):
            level = columns[t][row]
            # the k-th profile at this trait and level gets wording k mod 9; start points differ per trait
            count = turn.get((trait, level), 0)
            turn[(trait, level)] = count + 1
            sentences.append(trait_sentence(trait, level, (count + 2 * t) % 9))
            targets[trait] = level
        out.append({"id": f"mt-{row + 1:03d}", "text": " ".join([OPENING, *sentences]), "targets": targets})
    return out


def render(n: int = PROFILES, seed: int = SEED) -> str:
    """The YAML text of the set (written by hand for a stable layout; strings JSON-quoted, valid YAML)."""
    from psychometrics.statistics.correlation import power_r

    columns = design(n, seed)
    max_r = max(abs(r) for r in correlations(columns).values())
    max_extremity_r = max(abs(r) for r in extremity_correlations(columns).values())
    counts = [columns[0].count(level) for level in LEVELS]
    description = DESCRIPTION.format(profiles=n, low_count=min(counts), high_count=max(counts), max_r=max_r,
                                     max_extremity_r=max_extremity_r,
                                     power=power_r(n - 2), seed=seed)

    def q(text: str) -> str:
        return json.dumps(text, ensure_ascii=False)

    lines = [f"id: {SET_ID}", f"name: {q('Multi-trait personas')}", f"description: {q(description)}",
             f"source: {q(SOURCE)}", "personas:"]
    for persona in profiles(columns):
        targets = ", ".join(f"{trait}: {level}" for trait, level in persona["targets"].items())
        lines += [f"  - id: {persona['id']}", f"    text: {q(persona['text'])}", f"    targets: {{{targets}}}"]
    return "\n".join(lines) + "\n"


def default_path() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "personas" / f"{SET_ID}.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write (or --check) the shipped multi-trait persona set.")
    parser.add_argument("--out", type=Path, default=default_path())
    parser.add_argument("--check", action="store_true", help="only compare with --out; exit 1 if it differs")
    args = parser.parse_args(argv)
    from psychometrics.cli.terminal import echo

    text = render()
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == text
        echo(f"{args.out}: {'up to date' if same else 'differs from the generator output'}")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    echo(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
