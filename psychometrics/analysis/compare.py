"""Comparing runs: is run B's score on a scale different from run A's, beyond run-to-run noise?

``compare_runs([A, B, C, ...])`` takes the first run as the reference and compares every other run with
it, for every inventory x answer mode x scale that both runs scored. Runs are labelled by their model
(:func:`run_labels`): a model given twice is told apart by its run directory's name (then its path). The unit of analysis is the design
cell (one complete questionnaire, see :mod:`psychometrics.analysis.tables`); each run's score on a scale is the
mean over its cells.

For each pair and scale (``diff`` = other run's mean - reference mean):

* **Mean difference with a 95% Welch CI over design cells**:
  :math:`SE = \\sqrt{s_A^2/n_A + s_B^2/n_B}`, Welch-Satterthwaite df, :math:`diff \\pm t_{.975,df}\\,SE`.
  This treats the cells as a sample of conditions, so the interval includes the spread caused by the
  design factors (option order, wording, persona, ...): it is wide when the score depends on the design.
* **Hedges' g with a noncentral-t CI** (:func:`psychometrics.statistics.norms.hedges_g`, other run vs reference,
  pooled SD over cells): the difference in units of the spread over cells.
* **Run-to-run noise**, measured inside each run. The *noise SD* of a run on a scale is the
  sample-to-sample SD of cell scores: cells that differ only in the sample index (same option order,
  template, persona, wording, item order and mode) are repeated measurements, and the noise variance is
  their pooled within-group variance, :math:`\\sigma^2 = \\sum_g \\sum_i (x_{gi} - \\bar x_g)^2 /
  \\sum_g (n_g - 1)`. When a run has one sample per cell there are no repeats, and the noise SD falls back
  to the SD across design cells (``noise_method`` = ``cells``, with a note): that includes the design
  effects, so it overstates sampling noise and the comparison becomes conservative.
  Re-running an unchanged model under the same design changes only the sampling draws (the design cells
  are the same), so the run-to-run noise of a run's mean is :math:`\\sigma/\\sqrt{n}`, and of the
  difference of two means :math:`SE_{noise} = \\sqrt{\\sigma_A^2/n_A + \\sigma_B^2/n_B}`.

A difference **exceeds noise** when both

1. :math:`|diff| > 2\\,SE_{noise}` (larger than about 95% of the differences two re-runs of the same
   model would show), and
2. the 95% Welch CI of the difference excludes 0 (the difference is not explained by the spread over
   design cells either).

Both must hold; a difference that cannot be assessed (fewer than two scored cells in a run) does not
exceed noise and says why in ``note``. No correction for the number of scales is applied: with many
scales, an occasional scale of two re-runs of the same model may pass both tests by chance (the second
test makes that rare).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import pandas as pd

from psychometrics.conditions import CONDITION_FIELDS
from psychometrics.errors import PsytestError

if TYPE_CHECKING:
    from psychometrics.design.plan import Design
    from psychometrics.run.manifest import QuestionnaireManifest
    from psychometrics.run.owner import Run

#: Columns that identify one scored quantity of a run.
SCALE_KEYS = ("inventory", "mode", "kind", "scale")

#: Differences smaller than this (relative to the scale of the means) are treated as exactly zero, so
#: identical runs whose means differ only in floating-point rounding never "exceed noise".
_ZERO = 1e-12

NOISE_NOTE_CELLS = (
    "one sample per cell: noise is the SD across design cells, which includes design effects "
    "(conservative); use --samples 2 or more to measure sampling noise"
)


# ---------------------------------------------------------------------------------------------------
# loading runs


@dataclass
class RunScores:
    """A run (:class:`psychometrics.run.owner.Run`) and its scale scores per design cell (every condition)."""

    run: "Run"
    scores: pd.DataFrame

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def manifest(self) -> "QuestionnaireManifest":
        return self.run.questionnaire

    @property
    def label(self) -> str:
        return str(self.run_dir)


def load_run_scores(run_dir: Path) -> RunScores:
    """Scale and facet scores of every design cell of a run, as the run owner gives them
    (:meth:`psychometrics.run.owner.Run.scores`: the store, never ``analysis/scores.csv``, which ``psytest
    score --by`` may have grouped; the run's invalid-answer policy applied)."""
    from psychometrics.run.owner import open_run

    run = open_run(run_dir)
    return RunScores(run, run.scores())


# ---------------------------------------------------------------------------------------------------
# per-scale statistics and noise


def noise_sd(scores: pd.DataFrame) -> tuple[float, float, str | None]:
    """(noise SD, its df, method) of one scale's cell scores (columns: condition fields and ``score``).

    ``method`` is ``samples`` (pooled within-cell SD over repeated samples), ``cells`` (one sample per
    cell: SD across cells) or ``None`` (fewer than two scored cells: NaN).
    """
    valid = scores[scores["score"].notna()]
    cell = [f for f in CONDITION_FIELDS if f != "sample" and f in valid.columns]
    if not valid.empty and "sample" in valid.columns and valid["sample"].nunique() > 1:
        grouped = valid.groupby(cell, dropna=False)["score"]
        sizes = grouped.transform("size")
        repeated = valid[sizes > 1]
        if not repeated.empty:
            centred = repeated["score"] - repeated.groupby(cell, dropna=False)["score"].transform("mean")
            df = float(len(repeated) - repeated.groupby(cell, dropna=False).ngroups)
            return math.sqrt(float((centred**2).sum()) / df), df, "samples"
    if len(valid) > 1:
        return float(valid["score"].std(ddof=1)), float(len(valid) - 1), "cells"
    return math.nan, 0.0, None


def scale_statistics(scores: pd.DataFrame, *, include_facets: bool = False) -> pd.DataFrame:
    """Per inventory x mode x kind x scale: scored cells ``n``, ``mean``, ``sd`` over cells, ``noise_sd``,
    ``noise_df``, ``noise_method`` and a ``note``."""
    columns = [*SCALE_KEYS, "n", "mean", "sd", "noise_sd", "noise_df", "noise_method", "note"]
    if scores.empty:
        return pd.DataFrame(columns=columns)
    part = scores if include_facets else scores[scores["kind"] == "scale"]
    rows = []
    for key, group in part.groupby(list(SCALE_KEYS), sort=False):
        values = group["score"].to_numpy(dtype=float)
        values = values[~np.isnan(values)]
        noise, df, method = noise_sd(group)
        sd = float(values.std(ddof=1)) if values.size > 1 else math.nan
        scale_of_values = max(1.0, float(np.abs(values).max())) if values.size else 1.0
        # SDs at the level of floating-point rounding are exactly zero (e.g. identical cells whose mean
        # was summed in a different order).
        sd = 0.0 if sd <= _ZERO * scale_of_values else sd
        noise = 0.0 if noise <= _ZERO * scale_of_values else noise
        note = None
        if values.size == 0:
            note = "no scored cells (too few valid answers in every cell)"
        elif values.size == 1:
            note = "one scored cell: no SD and no noise estimate"
        elif method == "cells":
            note = NOISE_NOTE_CELLS
        rows.append({**dict(zip(SCALE_KEYS, key)), "n": int(values.size),
                     "mean": float(values.mean()) if values.size else math.nan,
                     "sd": sd, "noise_sd": noise, "noise_df": df, "noise_method": method, "note": note})
    table = pd.DataFrame(rows, columns=columns)
    # Inventories in run order, then answer mode, scales before facets, scales in the inventory's order.
    rank = {name: i for i, name in enumerate(dict.fromkeys(table["inventory"]))}
    order = table.assign(_inv=table["inventory"].map(rank), _kind=(table["kind"] != "scale").astype(int))
    order = order.sort_values(["_inv", "mode", "_kind"], kind="stable")
    return table.loc[order.index].reset_index(drop=True)


def welch_interval(m1: float, s1: float, n1: int, m2: float, s2: float, n2: int, confidence: float = 0.95):
    """(diff = m2 - m1, low, high, df) of the Welch interval; NaN bounds when either n < 2."""
    from scipy import stats

    diff = m2 - m1
    if n1 < 2 or n2 < 2 or not (math.isfinite(s1) and math.isfinite(s2)):
        return diff, math.nan, math.nan, math.nan
    v1, v2 = s1 * s1 / n1, s2 * s2 / n2
    se = math.sqrt(v1 + v2)
    if se == 0:
        return diff, diff, diff, math.nan
    df = (v1 + v2) ** 2 / (v1 * v1 / (n1 - 1) + v2 * v2 / (n2 - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return diff, diff - half, diff + half, df


def _is_zero(diff: float, *means: float) -> bool:
    return abs(diff) <= _ZERO * max(1.0, *(abs(m) for m in means if math.isfinite(m)))


def _compare_scale(ref: dict, other: dict) -> dict:
    from psychometrics.statistics.norms import hedges_g

    n1, n2 = int(ref["n"]), int(other["n"])
    m1, m2, s1, s2 = ref["mean"], other["mean"], ref["sd"], other["sd"]
    row = {"n_ref": n1, "n_run": n2, "mean_ref": m1, "mean_run": m2, "sd_ref": s1, "sd_run": s2}
    notes = [n for n in (ref.get("note"), other.get("note")) if isinstance(n, str) and n]
    diff, low, high, df = welch_interval(m1, s1, n1, m2, s2, n2)
    if _is_zero(diff, m1, m2):
        diff = 0.0
        if low == low and low == high:  # both runs constant: the degenerate interval is the point
            low = high = 0.0
    row.update(diff=diff, diff_ci_low=low, diff_ci_high=high, welch_df=df)
    g = g_low = g_high = math.nan
    if n1 >= 2 and n2 >= 2:
        pooled = math.sqrt(((n1 - 1) * s1**2 + (n2 - 1) * s2**2) / (n1 + n2 - 2))
        if pooled > 0:
            g, g_low, g_high = hedges_g(m2, s2, n2, m1, s1, n1)
        else:
            notes.append("no spread over cells in either run: Hedges' g undefined")
    row.update(hedges_g=g, g_ci_low=g_low, g_ci_high=g_high)
    noise1, noise2 = ref["noise_sd"], other["noise_sd"]
    methods = {m for m in (ref["noise_method"], other["noise_method"]) if isinstance(m, str) and m}  # NaN: unscored
    row.update(noise_sd_ref=noise1, noise_sd_run=noise2,
               noise_method="+".join(sorted(methods)) if methods else None)
    if n1 >= 1 and n2 >= 1 and math.isfinite(noise1) and math.isfinite(noise2):
        noise_se = math.sqrt(noise1**2 / n1 + noise2**2 / n2)
    else:
        noise_se = math.nan
    row["noise_se"] = noise_se
    if math.isfinite(noise_se) and noise_se > 0:
        row["diff_over_noise_se"] = diff / noise_se
    else:
        row["diff_over_noise_se"] = math.nan if not math.isfinite(noise_se) or diff == 0 else math.copysign(math.inf, diff)
    if not math.isfinite(noise_se) or not math.isfinite(low):
        exceeds = False
        notes.append("fewer than two scored cells in a run: cannot tell the difference from noise")
    else:
        beyond_noise = abs(diff) > 2 * noise_se
        ci_excludes_zero = low > 0 or high < 0
        exceeds = bool(beyond_noise and ci_excludes_zero)
    row["exceeds_noise"] = exceeds
    row["note"] = "; ".join(dict.fromkeys(notes)) or None
    return row


DIFFERENCE_COLUMNS = [
    "reference", "run", *SCALE_KEYS, "n_ref", "n_run", "mean_ref", "mean_run", "sd_ref", "sd_run", "diff",
    "diff_ci_low", "diff_ci_high", "welch_df", "hedges_g", "g_ci_low", "g_ci_high", "noise_sd_ref", "noise_sd_run",
    "noise_method", "noise_se", "diff_over_noise_se", "exceeds_noise", "note",
]


def compare_statistics(ref_stats: pd.DataFrame, other_stats: pd.DataFrame, ref_label: str, other_label: str) -> pd.DataFrame:
    """The ``differences`` rows of one pair, from two :func:`scale_statistics` tables."""
    other_by_key = {tuple(r[k] for k in SCALE_KEYS): r for r in other_stats.to_dict(orient="records")}
    rows = []
    for ref in ref_stats.to_dict(orient="records"):
        key = tuple(ref[k] for k in SCALE_KEYS)
        other = other_by_key.get(key)
        if other is None:
            continue
        rows.append({"reference": ref_label, "run": other_label, **dict(zip(SCALE_KEYS, key)),
                     **_compare_scale(ref, other)})
    return pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS)


# ---------------------------------------------------------------------------------------------------
# comparing runs


@dataclass
class CompareResult:
    """Result of :func:`compare_runs`.

    ``differences``: one row per (other run, inventory, mode, kind, scale) in both runs (columns
    :data:`DIFFERENCE_COLUMNS`). ``statistics``: per run and scale the mean, SD, n and noise SD used.
    ``notes``: run-level caveats (designs or models that differ, scales only one run has, one sample per
    cell). ``runs``: each run's label (:func:`run_labels`), ``directories`` its run directory, in the order
    given. ``verdict``: one line. ``summary()``: a terminal-friendly table.
    """

    runs: list[str]
    models: list[str]
    differences: pd.DataFrame
    statistics: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    directories: list[str] = field(default_factory=list)

    @property
    def n_compared(self) -> int:
        return len(self.differences)

    @property
    def n_exceeding(self) -> int:
        return int(self.differences["exceeds_noise"].sum()) if not self.differences.empty else 0

    @property
    def verdict(self) -> str:
        pairs = [(run, part) for run, part in self.differences.groupby("run", sort=False)]
        what = "facet and scale" if (self.differences["kind"] == "facet").any() else "scale"
        head = (f"{self.n_exceeding} of {self.n_compared} {what} differences exceed run-to-run noise"
                if self.n_exceeding else f"no {what} difference exceeds run-to-run noise ({self.n_compared} compared)")
        if 1 < len(pairs) <= 4:
            head += " (" + "; ".join(f"{run}: {int(p['exceeds_noise'].sum())} of {len(p)}" for run, p in pairs) + ")"
        elif len(pairs) > 4:  # twenty models: a count, the per-run numbers are in the table
            differing = sum(1 for _, p in pairs if p["exceeds_noise"].any())
            head += f" ({differing} of {len(pairs)} runs differ from the reference on at least one)"
        return f"{head}; reference {self.runs[0]}"

    def summary(self) -> str:
        """Plain-text tables, one per compared run, for a terminal (no colours, fixed width)."""
        lines = [f"reference: {self.runs[0]} ({self.directories[0] if self.directories else ''})"]
        header = ["inventory", "mode", "scale", "ref", "run", "diff [95% CI]", "g [95% CI]", "noise SE", "exceeds"]
        for run, directory in zip(self.runs[1:], (self.directories or self.runs)[1:]):
            part = self.differences[self.differences["run"] == run]
            lines.append("")
            lines.append(f"{run} ({directory}) vs reference: {int(part['exceeds_noise'].sum())} of {len(part)} "
                         "exceed noise")
            table = [header]
            for r in part.to_dict(orient="records"):
                scale = r["scale"] if r["kind"] == "scale" else f"{r['scale']} (facet)"
                table.append([
                    str(r["inventory"]), str(r["mode"]), scale, _num(r["mean_ref"]), _num(r["mean_run"]),
                    f"{_num(r['diff'], signed=True)} [{_num(r['diff_ci_low'])}, {_num(r['diff_ci_high'])}]",
                    f"{_num(r['hedges_g'], signed=True)} [{_num(r['g_ci_low'])}, {_num(r['g_ci_high'])}]",
                    _num(r["noise_se"]), "YES" if r["exceeds_noise"] else "no",
                ])
            lines += _format_table(table)
        lines += [f"note: {n}" for n in self.notes]
        lines.append("exceeds noise = |diff| > 2 x noise SE (from repeated samples) and the Welch 95% CI excludes 0")
        lines.append(self.verdict)
        return "\n".join(lines)


def _num(value, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        if isinstance(value, float) and math.isinf(value):
            return "+inf" if value > 0 else "-inf"
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _format_table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def check_same_inventories(manifests: Sequence["QuestionnaireManifest"], labels: Sequence[str]) -> None:
    """Refuse runs that used different content under the same inventory id."""
    seen: dict[str, tuple[str, str]] = {}
    for manifest, label in zip(manifests, labels):
        for entry in manifest.inventories:
            first = seen.setdefault(entry.id, (entry.content_hash, label))
            if first[0] != entry.content_hash:
                raise PsytestError(
                    f"{label}: inventory '{entry.id}' differs from the one in {first[1]} (content hash "
                    f"{entry.content_hash[:12]} vs {first[0][:12]}); compare only runs of the same inventory version"
                )


def design_differences(a: "Design", b: "Design") -> list[str]:
    """Design options (but the seed) whose values differ between two runs."""
    x, y = a.model_dump(mode="json"), b.model_dump(mode="json")
    return [k for k in sorted(set(x) | set(y)) if k != "seed" and x.get(k) != y.get(k)]


def run_labels(models: Sequence[str], run_dirs: Sequence[Path]) -> list[str]:
    """A label per run: its model; a model given more than once becomes ``model [directory name]``, then
    ``model [path]`` when two different directories have the same name; the same directory given again
    gets ``#2``, ``#3``.

    The labels are distinct, so tables keyed by them (``differences.csv``) never mix two runs."""
    def counts(labels: list[str]) -> dict[str, int]:
        seen: dict[str, int] = {}
        for label in labels:
            seen[label] = seen.get(label, 0) + 1
        return seen

    named = counts(list(models))
    labels = [f"{model} [{Path(path).name}]" if named[model] > 1 else model for model, path in zip(models, run_dirs)]
    places: dict[str, set[str]] = {}
    for label, path in zip(labels, run_dirs):
        places.setdefault(label, set()).add(str(Path(path).resolve()))
    labels = [f"{model} [{path}]" if len(places[label]) > 1 else label
              for label, model, path in zip(labels, models, run_dirs)]
    seen: dict[str, int] = {}
    distinct = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        distinct.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return distinct


def compare_runs(run_dirs: Iterable[Path], *, include_facets: bool = False) -> CompareResult:
    """Compare every run with the first (the reference); see the module docstring for the statistics.

    Raises :class:`PsytestError` for fewer than two runs, a directory that is not a run, runs that used
    different content under the same inventory id, or runs with no inventory x mode x scale in common.
    """
    run_dirs = [Path(p) for p in run_dirs]
    if len(run_dirs) < 2:
        raise PsytestError("compare needs at least two run directories: the reference first, then the runs to compare")
    from psychometrics.run.owner import open_run

    opened = [open_run(p) for p in run_dirs]
    manifests = [r.questionnaire for r in opened]
    check_same_inventories(manifests, [str(p) for p in run_dirs])
    labels = run_labels([m.model for m in manifests], run_dirs)
    runs = [RunScores(r, r.scores()) for r in opened]
    stats = [scale_statistics(r.scores, include_facets=include_facets) for r in runs]
    notes: list[str] = []
    parts = []
    ref_keys = {tuple(r) for r in stats[0][list(SCALE_KEYS)].itertuples(index=False)}
    for index in range(1, len(runs)):
        pair = compare_statistics(stats[0], stats[index], labels[0], labels[index])
        if pair.empty:
            raise PsytestError(
                f"{run_dirs[index]} and {run_dirs[0]} share no inventory and answer mode; compare runs that "
                "administered the same inventory in the same mode"
            )
        parts.append(pair)
        keys = {tuple(r) for r in stats[index][list(SCALE_KEYS)].itertuples(index=False)}
        only_ref, only_run = len(ref_keys - keys), len(keys - ref_keys)
        if only_ref or only_run:
            notes.append(f"{labels[index]}: {only_ref} scale(s) only in the reference and {only_run} only in this run "
                         "were not compared")
        differing = design_differences(manifests[0].design, manifests[index].design)
        hashes = [m.personas.content_hash if m.personas else None for m in (manifests[0], manifests[index])]
        if "personas" not in differing and hashes[0] != hashes[1]:
            differing.append("personas (the same name, other content)")
        if differing:
            notes.append(f"{labels[index]}: design differs from the reference in {', '.join(differing)}; means over "
                         "cells can differ for that reason alone")
    single = [label for label, table in zip(labels, stats) if (table["noise_method"] == "cells").any()]
    if single:  # once, not once per run: a study of twenty models would repeat it twenty times
        which = single[0] if len(single) == 1 else ("all runs" if len(single) == len(labels) else
                                                    f"{len(single)} runs ({', '.join(single[:3])}{' ...' if len(single) > 3 else ''})")
        notes.append(f"{which}: {NOISE_NOTE_CELLS}")
    # Labels, not paths, in the tables: a comparison's CSVs do not depend on where the runs were read from
    statistics = pd.concat([t.assign(run=label) for label, t in zip(labels, stats)], ignore_index=True)
    statistics = statistics[["run", *[c for c in statistics.columns if c != "run"]]]
    differences = pd.concat(parts, ignore_index=True)
    return CompareResult(labels, [m.model for m in manifests], differences, statistics, notes,
                         [str(p) for p in run_dirs])


def as_json_records(frame: pd.DataFrame) -> list[dict]:
    """A table as JSON-ready records (NaN and infinities become null)."""
    return json.loads(frame.to_json(orient="records"))
