"""Baselines and drift checks: does a new run still score where a reference run did?

``make_baseline(RUN)`` summarises a run as a small JSON document: the model and its settings, the
inventories and their content hashes, the design, and per inventory x answer mode x scale the mean over
design cells, the SD over cells, the number of scored cells and the run-to-run noise SD (the
sample-to-sample SD of cell scores, as in :mod:`psychometrics.analysis.compare`). ``check_run(RUN, baseline)``
compares a new run with it, scale by scale, and passes when every scale's mean is within the tolerance.

Tolerance
---------
``unit="sd"`` (default): the difference of means divided by the **baseline's SD over design cells**
(if that is zero, its noise SD; if both are zero, any nonzero difference is infinitely many SDs). The
default tolerance is **0.5 SD**, Cohen's "medium" effect: a shift of half the spread a model shows across
option orders, wordings, personas and samples is large enough to matter to anyone reading the scores,
while a re-run of an unchanged model moves the mean only by sampling noise, whose SE is
``noise_sd / sqrt(n cells)``, far below 0.5 SD once a design has a few dozen cells. When the tolerance is
within twice the noise SE of a difference, the check says so in a note (false alarms become likely: add
cells or samples, or raise the tolerance). ``unit="raw"``: the tolerance is in score points.

A check **fails** for a scale outside the tolerance, and for anything in the baseline the run cannot be
checked on: an inventory it did not administer or administered in a different version (content hash), an
answer mode it did not use, a scale with no scored cells. Scales the run has beyond the baseline are
listed in the notes and do not fail the check.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from psychometrics import __version__
from psychometrics.analysis.compare import SCALE_KEYS, load_run_scores, scale_statistics
from psychometrics.errors import PsytestError

BASELINE_FORMAT = 1
#: Default tolerance in SD units (see the module docstring for why).
DEFAULT_TOLERANCE = 0.5
UNITS = ("sd", "raw")

_SCALE_FIELDS = (*SCALE_KEYS, "mean", "sd", "n", "noise_sd", "noise_method")


def _json_number(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def make_baseline(run_dir: Path, *, include_facets: bool = False) -> dict:
    """A JSON-serialisable summary of a run to check later runs against (see the module docstring)."""
    run_dir = Path(run_dir)
    run = load_run_scores(run_dir)
    manifest = run.manifest
    stats = scale_statistics(run.scores, include_facets=include_facets)
    if stats.empty:
        raise PsytestError(f"{run_dir}: the run has no scored scales; administer it (or finish it) before making a baseline")
    cells = run.scores.drop_duplicates(
        [c for c in run.scores.columns if c not in ("kind", "scale", "score", "items_answered", "items_total")]
    ).groupby(["inventory", "mode"]).size()
    scales = []
    for row in stats.to_dict(orient="records"):
        scales.append({
            **{k: row[k] for k in SCALE_KEYS},
            "mean": _json_number(row["mean"]),
            "sd": _json_number(row["sd"]),
            "n": int(row["n"]),
            "noise_sd": _json_number(row["noise_sd"]),
            "noise_method": row["noise_method"],
        })
    return {
        "psytest_baseline": BASELINE_FORMAT,
        "psytest_version": __version__,
        "source_run": str(run_dir),
        "derived_from": run.run.inputs(),
        "run_created_at": manifest.created_at,
        "model": manifest.model,
        "backend_params": manifest.backend_params,
        "inventories": {entry.id: entry.content_hash for entry in manifest.inventories},
        "design": manifest.design.model_dump(mode="json"),
        "design_cells": [{"inventory": inv, "mode": mode, "cells": int(n)} for (inv, mode), n in cells.items()],
        "scales": scales,
    }


def write_baseline(run_dir: Path, path: Path, *, include_facets: bool = False) -> dict:
    """Make the baseline of ``run_dir`` and write it to ``path`` as JSON (whole, and only over a file that
    is a psytest baseline already); returns it."""
    from psychometrics.run.outputs import atomic_write, claim_file

    path = Path(path)
    if path.parent and not path.parent.is_dir():
        raise PsytestError(f"--out {path}: directory {path.parent} does not exist; create it or choose another path")
    claim_file(path, "--out", _is_baseline_file)
    baseline = make_baseline(run_dir, include_facets=include_facets)
    atomic_write(path, json.dumps(baseline, indent=2, ensure_ascii=False) + "\n", fsync=True)
    return baseline


def _is_baseline_file(path: Path) -> bool:
    """Whether ``path`` holds a psytest baseline (so ``baseline --out`` may replace it)."""
    try:
        return "psytest_baseline" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, TypeError):
        return False


def load_baseline(path: Path) -> dict:
    """Read and validate a baseline file written by :func:`write_baseline`."""
    from psychometrics.limits import read_json

    path = Path(path)
    try:
        data = read_json(path, "baseline file (write it again with psytest baseline)")
    except FileNotFoundError:
        raise PsytestError(f"--baseline {path}: no such file; write one with psytest baseline RUN --out {path}") from None
    except OSError as exc:
        raise PsytestError(f"--baseline {path}: cannot read ({exc.strerror or exc})") from None
    validate_baseline(data, f"--baseline {path}")
    return data


def validate_baseline(baseline: object, source: str = "baseline") -> None:
    """Raise a one-line :class:`PsytestError` unless ``baseline`` looks like :func:`make_baseline`'s output."""
    hint = "write it again with psytest baseline RUN"
    if not isinstance(baseline, dict) or "psytest_baseline" not in baseline:
        raise PsytestError(f"{source}: not a psytest baseline (no 'psytest_baseline' key); {hint}")
    if baseline["psytest_baseline"] != BASELINE_FORMAT:
        raise PsytestError(f"{source}: baseline format {baseline['psytest_baseline']!r} is not supported "
                           f"(this psytest reads format {BASELINE_FORMAT}); {hint}")
    for key, kind in (("model", str), ("inventories", dict), ("scales", list)):
        if not isinstance(baseline.get(key), kind):
            raise PsytestError(f"{source}: '{key}' is missing or not a {kind.__name__}; {hint}")
    if not baseline["scales"]:
        raise PsytestError(f"{source}: the baseline lists no scales; {hint}")
    for index, entry in enumerate(baseline["scales"]):
        missing = [k for k in _SCALE_FIELDS if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise PsytestError(f"{source}: scales[{index}] lacks {', '.join(missing)}; {hint}")
        for key in ("mean", "sd", "n", "noise_sd"):
            value = entry[key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise PsytestError(f"{source}: scales[{index}].{key} must be a number; {hint}")
        for key in (*SCALE_KEYS, "noise_method"):
            if entry[key] is not None and not isinstance(entry[key], str):
                raise PsytestError(f"{source}: scales[{index}].{key} must be text; {hint}")
    for key, value in baseline["inventories"].items():
        if not isinstance(value, str):
            raise PsytestError(f"{source}: inventories.{key} must be a content hash (text); {hint}")
    if not isinstance(baseline.get("design", {}), dict) or not isinstance(baseline.get("backend_params") or {}, dict):
        raise PsytestError(f"{source}: 'design' and 'backend_params' must be objects; {hint}")


# ---------------------------------------------------------------------------------------------------
# checking


CHECK_COLUMNS = [
    *SCALE_KEYS, "baseline_mean", "current_mean", "difference", "baseline_sd", "baseline_noise_sd", "sd_unit",
    "sd_unit_from", "difference_sd", "tolerance", "unit", "n_baseline", "n_current", "within", "reason",
]


@dataclass
class CheckResult:
    """Result of :func:`check_run`.

    ``rows``: one row per baseline scale (columns :data:`CHECK_COLUMNS`; ``difference`` = current -
    baseline; ``difference_sd`` = difference / ``sd_unit``; ``within`` is the pass/fail of that scale and
    ``reason`` says why it failed). ``passed``: every scale within. ``verdict``: one line starting with
    PASS or FAIL. ``notes``: caveats that do not fail the check.
    """

    run_dir: Path
    tolerance: float
    unit: str
    rows: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(len(self.rows)) and bool(self.rows["within"].all())

    @property
    def failures(self) -> pd.DataFrame:
        return self.rows[~self.rows["within"]]

    @property
    def verdict(self) -> str:
        total = len(self.rows)
        bound = f"{self.tolerance:g} SD" if self.unit == "sd" else f"{self.tolerance:g} points"
        if self.passed:
            largest = self.rows.loc[self.rows["difference"].abs().idxmax()]
            return (f"PASS: all {total} scales within {bound} of the baseline (largest change "
                    f"{_scale_name(largest)} {_change(largest, self.unit)})")
        failures = self.failures
        shown = "; ".join(
            f"{_scale_name(r)} {_change(r, self.unit)}" if r["reason"] == "outside tolerance"
            else f"{_scale_name(r)}: {r['reason']}"
            for r in failures.head(5).to_dict(orient="records")
        )
        more = f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
        return f"FAIL: {len(failures)} of {total} scales outside {bound} of the baseline or missing: {shown}{more}"

    def summary(self) -> str:
        """A plain-text table for a terminal, then the notes and the verdict."""
        header = ["inventory", "mode", "scale", "baseline", "current", "diff", "diff SD", "within", "reason"]
        table = [header]
        for r in self.rows.to_dict(orient="records"):
            table.append([
                str(r["inventory"]), str(r["mode"]), str(r["scale"]) + (" (facet)" if r["kind"] == "facet" else ""),
                _fmt(r["baseline_mean"]), _fmt(r["current_mean"]), _fmt(r["difference"], True),
                _fmt(r["difference_sd"], True), "yes" if r["within"] else "NO",
                r["reason"] if isinstance(r["reason"], str) else "",
            ])
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in table]
        lines += [f"note: {n}" for n in self.notes]
        lines.append(self.verdict)
        return "\n".join(lines)


def _fmt(value, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _scale_name(row) -> str:
    return f"{row['inventory']}/{row['mode']}/{row['scale']}"


def _change(row, unit: str) -> str:
    if unit == "raw" or row["difference_sd"] is None or (isinstance(row["difference_sd"], float)
                                                          and math.isnan(row["difference_sd"])):
        return f"{row['difference']:+.3f} points"
    value = row["difference_sd"]
    shown = ("+inf" if value > 0 else "-inf") if math.isinf(value) else f"{value:+.2f}"
    return f"{shown} SD ({row['difference']:+.3f} points)"


def _validate_tolerance(tolerance: float, unit: str) -> None:
    if unit not in UNITS:
        raise PsytestError(f"--unit {unit}: must be sd (baseline SDs over design cells) or raw (score points)")
    try:
        ok = math.isfinite(float(tolerance)) and float(tolerance) >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise PsytestError(f"--tolerance {tolerance}: must be a non-negative number (default {DEFAULT_TOLERANCE} SD)")


def check_run(run_dir: Path, baseline: dict, tolerance: float = DEFAULT_TOLERANCE,
              unit: Literal["sd", "raw"] = "sd") -> CheckResult:
    """Check a run against a baseline (from :func:`make_baseline` or :func:`load_baseline`).

    ``unit="sd"``: a scale passes when ``|current - baseline| / sd_unit <= tolerance``, where ``sd_unit``
    is the baseline's SD over design cells, or its noise SD when that SD is zero; with both zero, any
    nonzero difference is infinitely many SDs (fails) and no difference passes. ``unit="raw"``: passes
    when ``|current - baseline| <= tolerance`` score points.
    """
    _validate_tolerance(tolerance, unit)
    tolerance = float(tolerance)
    validate_baseline(baseline)
    run_dir = Path(run_dir)
    run = load_run_scores(run_dir)
    manifest = run.manifest
    include_facets = any(entry["kind"] == "facet" for entry in baseline["scales"])
    current = scale_statistics(run.scores, include_facets=include_facets)
    by_key = {tuple(r[k] for k in SCALE_KEYS): r for r in current.to_dict(orient="records")}
    run_hashes = {entry.id: entry.content_hash for entry in manifest.inventories}
    run_modes = {(inv, mode) for inv, mode in run.scores[["inventory", "mode"]].drop_duplicates().itertuples(index=False)}
    rows = []
    noisy = []
    for entry in baseline["scales"]:
        key = tuple(entry[k] for k in SCALE_KEYS)
        inventory, mode = entry["inventory"], entry["mode"]
        base_mean = math.nan if entry["mean"] is None else float(entry["mean"])
        base_sd = math.nan if entry["sd"] is None else float(entry["sd"])
        base_noise = math.nan if entry["noise_sd"] is None else float(entry["noise_sd"])
        row = {**dict(zip(SCALE_KEYS, key)), "baseline_mean": base_mean, "current_mean": math.nan,
               "difference": math.nan, "baseline_sd": base_sd, "baseline_noise_sd": base_noise,
               "sd_unit": math.nan, "sd_unit_from": None, "difference_sd": math.nan, "tolerance": tolerance,
               "unit": unit, "n_baseline": int(entry["n"]), "n_current": 0, "within": False, "reason": None}
        expected_hash = baseline["inventories"].get(inventory)
        found = by_key.get(key)
        if inventory not in run_hashes:
            row["reason"] = f"inventory {inventory} was not administered in this run"
        elif expected_hash is not None and run_hashes[inventory] != expected_hash:
            row["reason"] = (f"inventory {inventory} differs from the baseline's version (content hash "
                             f"{run_hashes[inventory][:12]} vs {expected_hash[:12]}); re-baseline if the change is intended")
        elif (inventory, mode) not in run_modes:
            row["reason"] = f"no {mode}-mode answers for {inventory} in this run"
        elif found is None:
            row["reason"] = f"scale {entry['scale']} was not scored in this run"
        elif found["n"] == 0:
            row["reason"] = "no scored cells in this run (too few valid answers in every cell)"
            row["n_current"] = 0
        elif not math.isfinite(base_mean):
            row["reason"] = "the baseline has no mean for this scale (no scored cells); re-baseline"
            row["current_mean"], row["n_current"] = found["mean"], int(found["n"])
        else:
            cur = float(found["mean"])
            diff = cur - base_mean
            if abs(diff) <= 1e-12 * max(1.0, abs(cur), abs(base_mean)):
                diff = 0.0
            row.update(current_mean=cur, difference=diff, n_current=int(found["n"]))
            if math.isfinite(base_sd) and base_sd > 0:
                row.update(sd_unit=base_sd, sd_unit_from="baseline SD over cells")
            elif math.isfinite(base_noise) and base_noise > 0:
                row.update(sd_unit=base_noise, sd_unit_from="baseline noise SD (SD over cells is zero)")
            else:
                row.update(sd_unit=0.0, sd_unit_from="none (baseline SD and noise SD are zero)")
            unit_sd = row["sd_unit"]
            row["difference_sd"] = diff / unit_sd if unit_sd > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
            within = abs(diff) <= tolerance if unit == "raw" else abs(row["difference_sd"]) <= tolerance
            row["within"] = bool(within)
            row["reason"] = None if within else "outside tolerance"
            noise_now = found["noise_sd"]
            if math.isfinite(base_noise) and math.isfinite(noise_now) and int(entry["n"]) and found["n"]:
                noise_se = math.sqrt(base_noise**2 / int(entry["n"]) + noise_now**2 / found["n"])
                allowed = tolerance if unit == "raw" else tolerance * unit_sd
                if math.isfinite(allowed) and noise_se > 0 and allowed < 2 * noise_se:
                    noisy.append(_scale_name(row))
        rows.append(row)
    notes = []
    if noisy:
        notes.append(f"tolerance is within twice the run-to-run noise SE for {', '.join(noisy[:5])}"
                     f"{' ...' if len(noisy) > 5 else ''}: false alarms are likely; add design cells or samples, "
                     "or raise the tolerance")
    if manifest.model != baseline["model"]:
        notes.append(f"model differs from the baseline's ({manifest.model} vs {baseline['model']})")
    elif baseline.get("backend_params") is not None and manifest.backend_params != baseline["backend_params"]:
        notes.append("model settings (backend params) differ from the baseline's")
    design = baseline.get("design")
    if isinstance(design, dict):
        current_design = manifest.design.model_dump(mode="json")
        differing = sorted(k for k in set(design) | set(current_design)
                           if k != "seed" and design.get(k) != current_design.get(k))
        if differing:
            notes.append(f"design differs from the baseline's in {', '.join(differing)}; means over cells can "
                         "differ for that reason alone")
    baseline_keys = {tuple(e[k] for k in SCALE_KEYS) for e in baseline["scales"]}
    extra = [k for k in by_key if k not in baseline_keys]
    if extra:
        notes.append(f"{len(extra)} scale(s) in the run are not in the baseline and were not checked "
                     f"(e.g. {'/'.join(map(str, extra[0][:2]))}/{extra[0][3]})")
    return CheckResult(run_dir, tolerance, unit, pd.DataFrame(rows, columns=CHECK_COLUMNS), notes)
