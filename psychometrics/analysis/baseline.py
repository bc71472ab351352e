r"""Baselines and drift checks: does a new run still score where a reference run did, beyond the noise
a re-run of the same model and design would show?

``make_baseline(RUN)`` summarises a run as a small JSON document: the model and its settings, the
inventories and their content hashes, the design, and per inventory x answer mode x scale:

* ``mean``: the scale score averaged over the run's ``n`` scored cells (design cells: one complete
  questionnaire each, see :mod:`psychometrics.analysis.tables`); ``sd``: the SD of those cell scores.
* ``noise_sd`` (:math:`\sigma`): the **run-to-run noise of one cell score**, as in
  :mod:`psychometrics.analysis.compare`: the pooled within-cell SD over repeated samples (cells that
  differ only in the sample index), :math:`\sigma^2 = \sum_g \sum_i (x_{gi} - \bar x_g)^2 / \sum_g (n_g - 1)`
  (``noise_method = samples``, ``noise_df`` its degrees of freedom). With one sample per cell there are
  no repeats and the SD over cells stands in (``noise_method = cells``): it includes the design effects,
  so it overstates the noise and the check is conservative.
* ``noise_se`` :math:`= \sigma / \sqrt{n}`: the **standard error of the mean** from that noise, i.e. the
  SD of the means that re-runs of the same model under the same design (same cells, new samples) would
  give. This is the noise the check compares against.
* ``spread``: whether ``noise_se`` is above 0. A scale has **no spread** when it has one scored cell (no
  SD at all) or its repeated samples are identical (greedy decoding, or probabilities, which do not
  vary between samples). Such scales are listed in the file's ``warnings`` (and ``psytest baseline``
  prints one line about them on stderr): a re-run can be compared with them only in raw points.

``check_run(RUN, baseline)`` compares a new run with it, scale by scale.

Statistic and tolerance
-----------------------
``difference = current mean - baseline mean``. The noise of a difference of two means is

.. math:: SE_{diff} = \sqrt{\sigma_b^2 / n_b + \sigma_c^2 / n_c}

with the baseline's and the current run's noise SDs and cell counts (the baseline's :math:`\sigma_b`
stands in for :math:`\sigma_c` when the current run's cannot be estimated).

``unit="sd"`` (default): the difference is expressed in units of :math:`SE_{diff}` (``difference_sd``,
"SD of the run-to-run noise of a difference"), and a scale passes when
:math:`|difference| / SE_{diff} \le` tolerance, i.e. when :math:`|difference| \le` tolerance
:math:`\times SE_{diff}` points (``allowed``, shown with every scale). The default tolerance is
**3**: under normal sampling noise two re-runs of an unchanged model differ by more than
:math:`3\,SE_{diff}` with probability 0.27% per scale (about 1.3% for 5 scales, 8% for 30; the check
states that rate in a note). This is a test of "beyond run-to-run noise", not of size: with many cells
:math:`SE_{diff}` is small, and a real but tiny drift fails; use ``unit="raw"`` to allow a stated number
of points instead. With ``unit="sd"`` a baseline scale without spread (see above) is **refused** with a
one-line :class:`PsytestError` naming it (there is no noise to measure in), never reported as infinitely
many SDs.

``unit="raw"``: a scale passes when :math:`|difference| \le` tolerance score points (default 0.5);
when that tolerance is within :math:`2\,SE_{diff}` a note says false alarms are likely.

A check **fails** for a scale outside the tolerance, and for anything in the baseline the run cannot be
checked on: an inventory it did not administer or administered in a different version (content hash), an
answer mode it did not use, a scale with no scored cells. Scales the run has beyond the baseline are
listed in the notes and do not fail the check.

Files of format 1 (psytest before the noise SE was recorded) hold ``mean``, ``n`` and ``noise_sd`` and
are read as well: their ``noise_se`` is :math:`\sigma / \sqrt{n}`.
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

BASELINE_FORMAT = 2
#: Formats this psytest reads (format 1 lacks noise_se and spread, which are derived on reading).
READABLE_FORMATS = (1, 2)
#: Default tolerance per unit: 3 SDs of the run-to-run noise of a difference, or 0.5 score points
#: (see the module docstring for why).
DEFAULT_TOLERANCES = {"sd": 3.0, "raw": 0.5}
DEFAULT_TOLERANCE = DEFAULT_TOLERANCES["sd"]
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
        entry = {
            **{k: row[k] for k in SCALE_KEYS},
            "mean": _json_number(row["mean"]),
            "sd": _json_number(row["sd"]),
            "n": int(row["n"]),
            "noise_sd": _json_number(row["noise_sd"]),
            "noise_method": row["noise_method"],
            "noise_df": _json_number(row["noise_df"]),
        }
        entry["noise_se"] = _json_number(noise_se(entry))
        entry["spread"] = bool(entry["noise_se"])
        scales.append(entry)
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
        "noise": ("noise_sd: run-to-run SD of one cell's scale score (pooled within-cell SD over repeated "
                  "samples; SD over cells when each cell has one sample); noise_se = noise_sd / sqrt(n): the SE "
                  "of the scale mean that psytest check compares differences against"),
        "scales": scales,
        "warnings": spread_warnings(scales),
    }


def noise_se(entry: dict) -> float:
    """The run-to-run SE of a baseline scale's mean, ``noise_sd / sqrt(n)`` (NaN when it has none)."""
    sd, n = entry.get("noise_sd"), entry.get("n")
    if sd is None or not n or not math.isfinite(float(sd)):
        return math.nan
    return float(sd) / math.sqrt(int(n))


def no_spread(scales: list[dict]) -> list[str]:
    """Names (inventory/mode/scale) of the scored baseline scales whose mean has no run-to-run noise."""
    return [_scale_name(e) for e in scales
            if e.get("mean") is not None and not (noise_se(e) > 0)]


def spread_warnings(scales: list[dict]) -> list[str]:
    """The one-line warning about scales without spread (empty when there are none)."""
    names = no_spread(scales)
    if not names:
        return []
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return [f"{len(names)} scale(s) have no run-to-run spread ({shown}): one scored cell, or identical "
            "repeated samples (greedy decoding or probabilities); check against them with --unit raw, or "
            "baseline a run with --samples 2 or more at temperature > 0"]


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
    version = baseline["psytest_baseline"]
    if isinstance(version, bool) or version not in READABLE_FORMATS:
        raise PsytestError(f"{source}: baseline format {repr(version)[:40]} is not supported "
                           f"(this psytest reads formats {', '.join(map(str, READABLE_FORMATS))}); {hint}")
    for key, kind in (("model", str), ("inventories", dict), ("scales", list)):
        if not isinstance(baseline.get(key), kind):
            raise PsytestError(f"{source}: '{key}' is missing or not a {kind.__name__}; {hint}")
    if not baseline["scales"]:
        raise PsytestError(f"{source}: the baseline lists no scales; {hint}")
    for index, entry in enumerate(baseline["scales"]):
        missing = [k for k in _SCALE_FIELDS if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise PsytestError(f"{source}: scales[{index}] lacks {', '.join(missing)}; {hint}")
        for key in ("mean", "sd", "n", "noise_sd", *(k for k in ("noise_se", "noise_df") if k in entry)):
            value = entry[key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise PsytestError(f"{source}: scales[{index}].{key} must be a number; {hint}")
            if key in ("n", "noise_sd", "sd", "noise_se") and value is not None and value < 0:
                raise PsytestError(f"{source}: scales[{index}].{key} must not be negative; {hint}")
        if entry["n"] is None or entry["n"] != int(entry["n"]):
            raise PsytestError(f"{source}: scales[{index}].n must be a whole number; {hint}")
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
    *SCALE_KEYS, "baseline_mean", "current_mean", "difference", "baseline_sd", "baseline_noise_sd",
    "baseline_noise_se", "current_noise_sd", "noise_se", "difference_sd", "allowed", "tolerance", "unit",
    "n_baseline", "n_current", "within", "reason",
]


@dataclass
class CheckResult:
    """Result of :func:`check_run`.

    ``rows``: one row per baseline scale (columns :data:`CHECK_COLUMNS`; ``difference`` = current -
    baseline in score points; ``noise_se`` = :math:`SE_{diff}`, the run-to-run noise of that difference;
    ``difference_sd`` = difference / ``noise_se``; ``allowed`` = the largest difference that passes, in
    points; ``within`` is the pass/fail of that scale and ``reason`` says why it failed). ``passed``:
    every scale within. ``verdict``: one line starting with PASS or FAIL. ``notes``: caveats that do not
    fail the check.
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
    def bound(self) -> str:
        """The tolerance in words."""
        if self.unit == "sd":
            return f"{self.tolerance:g} SD of run-to-run noise"
        return f"{self.tolerance:g} points"

    @property
    def verdict(self) -> str:
        total = len(self.rows)
        if self.passed:
            largest = self.rows.loc[self.rows["difference"].abs().idxmax()]
            return (f"PASS: all {total} scales within {self.bound} of the baseline (largest change "
                    f"{_scale_name(largest)} {_change(largest, self.unit)})")
        failures = self.failures
        shown = "; ".join(
            f"{_scale_name(r)} {_change(r, self.unit)}" if r["reason"] == "outside tolerance"
            else f"{_scale_name(r)}: {r['reason']}"
            for r in failures.head(5).to_dict(orient="records")
        )
        more = f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
        return f"FAIL: {len(failures)} of {total} scales outside {self.bound} of the baseline or missing: {shown}{more}"

    def summary(self) -> str:
        """A plain-text table for a terminal, then the notes and the verdict."""
        header = ["inventory", "mode", "scale", "baseline", "current", "diff", "noise SE", "diff SD", "allowed",
                  "within", "reason"]
        table = [header]
        for r in self.rows.to_dict(orient="records"):
            table.append([
                str(r["inventory"]), str(r["mode"]), str(r["scale"]) + (" (facet)" if r["kind"] == "facet" else ""),
                _fmt(r["baseline_mean"]), _fmt(r["current_mean"]), _fmt(r["difference"], True),
                _fmt(r["noise_se"]), _fmt(r["difference_sd"], True),
                "-" if _missing(r["allowed"]) else f"±{r['allowed']:.3f}", "yes" if r["within"] else "NO",
                r["reason"] if isinstance(r["reason"], str) else "",
            ])
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in table]
        lines += [f"note: {n}" for n in self.notes]
        lines.append(self.verdict)
        return "\n".join(lines)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def _fmt(value, signed: bool = False) -> str:
    if _missing(value):
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _scale_name(row) -> str:
    return f"{row['inventory']}/{row['mode']}/{row['scale']}"


def _change(row, unit: str) -> str:
    allowed = "" if _missing(row["allowed"]) else f", allowed ±{row['allowed']:.3f}"
    if unit == "raw" or _missing(row["difference_sd"]):
        return f"{row['difference']:+.3f} points{allowed}"
    return f"{row['difference_sd']:+.2f} SD ({row['difference']:+.3f} points{allowed})"


def _validate_tolerance(tolerance: float, unit: str) -> None:
    if unit not in UNITS:
        raise PsytestError(f"--unit {unit}: must be sd (SDs of the run-to-run noise of a difference) or raw "
                           "(score points)")
    try:
        ok = math.isfinite(float(tolerance)) and float(tolerance) >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise PsytestError(f"--tolerance {tolerance}: must be a non-negative number (default "
                           f"{DEFAULT_TOLERANCES['sd']:g} with --unit sd, {DEFAULT_TOLERANCES['raw']:g} with --unit raw)")


def _number(value) -> float:
    return math.nan if value is None else float(value)


def refuse_without_spread(baseline: dict) -> None:
    """Raise a one-line :class:`PsytestError` when a scored scale of ``baseline`` has no run-to-run
    spread, so differences cannot be expressed in units of it (``--unit sd``)."""
    names = no_spread(baseline["scales"])
    if names:
        others = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
        raise PsytestError(
            f"--unit sd: the baseline has no run-to-run spread for {names[0]}{others} (one scored cell, or "
            "identical repeated samples): there is no noise to measure a change in; use --unit raw (a tolerance "
            "in score points), or a baseline of a run with repeated samples (--samples 2 or more at temperature > 0)"
        )


def check_run(run_dir: Path, baseline: dict, tolerance: float | None = None,
              unit: Literal["sd", "raw"] = "sd") -> CheckResult:
    """Check a run against a baseline (from :func:`make_baseline` or :func:`load_baseline`).

    ``unit="sd"``: a scale passes when ``|current - baseline| / SE_diff <= tolerance`` (default 3), with
    ``SE_diff`` the run-to-run noise of a difference of two means (module docstring); a baseline scale
    without spread raises :class:`PsytestError`. ``unit="raw"``: passes when ``|current - baseline| <=
    tolerance`` score points (default 0.5).
    """
    if unit in DEFAULT_TOLERANCES and tolerance is None:
        tolerance = DEFAULT_TOLERANCES[unit]
    _validate_tolerance(tolerance, unit)  # type: ignore[arg-type]
    tolerance = float(tolerance)  # type: ignore[arg-type]
    validate_baseline(baseline)
    run_dir = Path(run_dir)
    run = load_run_scores(run_dir)  # a run that cannot be read is named before the baseline's spread
    if unit == "sd":
        refuse_without_spread(baseline)
    manifest = run.manifest
    include_facets = any(entry["kind"] == "facet" for entry in baseline["scales"])
    current = scale_statistics(run.scores, include_facets=include_facets)
    by_key = {tuple(r[k] for k in SCALE_KEYS): r for r in current.to_dict(orient="records")}
    run_hashes = {entry.id: entry.content_hash for entry in manifest.inventories}
    run_modes = {(inv, mode) for inv, mode in run.scores[["inventory", "mode"]].drop_duplicates().itertuples(index=False)}
    rows = []
    noisy = []
    few_samples = []
    for entry in baseline["scales"]:
        key = tuple(entry[k] for k in SCALE_KEYS)
        inventory, mode = entry["inventory"], entry["mode"]
        base_mean = _number(entry["mean"])
        base_noise, n_base = _number(entry["noise_sd"]), int(entry["n"])
        row = {**dict(zip(SCALE_KEYS, key)), "baseline_mean": base_mean, "current_mean": math.nan,
               "difference": math.nan, "baseline_sd": _number(entry["sd"]), "baseline_noise_sd": base_noise,
               "baseline_noise_se": noise_se(entry), "current_noise_sd": math.nan, "noise_se": math.nan,
               "difference_sd": math.nan, "allowed": math.nan, "tolerance": tolerance, "unit": unit,
               "n_baseline": n_base, "n_current": 0, "within": False, "reason": None}
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
        elif not math.isfinite(base_mean):
            row["reason"] = "the baseline has no mean for this scale (no scored cells); re-baseline"
            row["current_mean"], row["n_current"] = found["mean"], int(found["n"])
        else:
            cur, n_cur = float(found["mean"]), int(found["n"])
            diff = cur - base_mean
            if abs(diff) <= 1e-12 * max(1.0, abs(cur), abs(base_mean)):
                diff = 0.0
            noise_now = float(found["noise_sd"])
            row.update(current_mean=cur, difference=diff, n_current=n_cur, current_noise_sd=noise_now)
            # The baseline's noise SD stands in for the current run's when that cannot be estimated.
            sigma_now = noise_now if math.isfinite(noise_now) else base_noise
            se = math.sqrt(base_noise**2 / n_base + sigma_now**2 / n_cur) if math.isfinite(base_noise) else math.nan
            row["noise_se"] = se
            if se > 0:
                row["difference_sd"] = diff / se
            if unit == "sd":
                allowed = tolerance * se
                within = abs(diff) <= allowed
            else:
                allowed = tolerance
                within = abs(diff) <= tolerance
                if se > 0 and allowed < 2 * se:
                    noisy.append(_scale_name(row))
            row.update(allowed=allowed, within=bool(within), reason=None if within else "outside tolerance")
            if unit == "sd" and entry["noise_method"] == "samples" and (_number(entry.get("noise_df")) < 10):
                few_samples.append(_scale_name(row))
        rows.append(row)
    notes = []
    checked = sum(1 for r in rows if math.isfinite(r["difference"]))
    if unit == "sd" and checked:
        from scipy.stats import norm

        per_scale = 2 * float(norm.sf(tolerance))
        overall = 1 - (1 - per_scale) ** checked
        notes.append(f"with {checked} scale(s) checked at {tolerance:g} SD, a re-run of an unchanged model fails "
                     f"by chance with probability about {overall:.1%} (normal noise; {per_scale:.2%} per scale)")
    if few_samples:
        notes.append(f"the baseline's noise rests on fewer than 10 degrees of freedom for {', '.join(few_samples[:3])}"
                     f"{' ...' if len(few_samples) > 3 else ''}: the noise SE is itself uncertain; add samples")
    if any(e["noise_method"] == "cells" for e in baseline["scales"]):
        notes.append("the baseline has one sample per cell: its noise is the SD across design cells, which "
                     "includes design effects (conservative)")
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
