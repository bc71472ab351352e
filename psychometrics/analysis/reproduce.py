"""Reproducing a run: are its derived tables, and optionally its raw answers, what the run's inputs give?

``reproduce(RUN)`` recomputes every derived table from ``manifest.json`` and ``responses.sqlite`` with
:func:`psychometrics.analysis.tables.analyze_run` into a temporary directory and compares the result with the
CSVs in ``RUN/analysis`` (and ``RUN/report/*.csv`` if present): the same files, the same columns in the
same order, the same number of rows, and every cell equal within the tolerance below.

Tolerance model. A run is committed on one machine and checked on another, with another CPU, BLAS kernel
(``OPENBLAS_CORETYPE``), numpy SIMD dispatch or library version: those change the order of sums and the use
of fused multiply-add, i.e. the rounding, not the mathematics. How far rounding moves a number depends on
its conditioning, so cells are compared by kind:

* Text (labels, notes, booleans) and integers (counts, degrees of freedom, ``n``: both cells written as
  integers) must be identical. They carry no rounding.
* Every other number must satisfy :math:`|a - b| \\le \\tau \\max(|a|, |b|, S)` with
  :math:`\\tau` = :data:`REL_TOL` = 1e-9, where :math:`S` is the scale of the operands the number was
  computed from. A backward-stable algorithm (sums, QR, Cholesky, symmetric eigensolvers) returns the
  exact result for data perturbed by a few units of :math:`\\epsilon = 2.2 \\cdot 10^{-16}` relative
  (Higham, 2002), so its absolute error is of order :math:`c\\,n\\,\\epsilon\\,S`, not
  :math:`\\epsilon |result|`: a well-conditioned result (a score, a mean, a residual sum of squares)
  keeps ~15 significant digits and is compared componentwise, but a result of cancellation (a small
  sum of squares beside a large one, a loading or a correlation near zero, a mean difference near zero)
  keeps only the digits of its operands' scale and is compared normwise. :math:`S` is estimated as the
  largest magnitude in the same column among the rows of the same inventory and answer mode (the whole
  column in tables without those columns): the operands of a sum of squares are the scale's total sum
  of squares, which its largest row holds to within the number of rows. Dimensionless coefficients,
  whose operands are standardized (p values, shares and rates, correlations, loadings, reliability and
  fit coefficients, effect sizes; :data:`UNIT_COLUMNS`), have :math:`S \\ge 1` (percentiles 100). While
  :math:`c\\,n \\le 4 \\cdot 10^5` the rounding stays below :math:`10^{-10} S`, ten times inside the
  tolerance.
* p values: :math:`p = \\bar F(x)` of a statistic :math:`x` with relative error :math:`\\rho` moves by
  :math:`|dp| = x f(x) \\rho`, and :math:`x f(x)` is bounded for the t, F and chi-square distributions
  (it vanishes in both tails and stays below :math:`\\sqrt{df}` in between), so the absolute tolerance
  :math:`\\tau` (:math:`S = 1`) covers any statistic that agrees to :math:`\\tau / \\sqrt{df}`; a p value
  near 1 is not compared relatively in :math:`1 - p`, which rounding of a statistic near zero
  legitimately changes. A real change of a p value also changes its statistic, which is compared too.
* What the tolerance cannot absorb is instability, a quantity whose computation amplifies rounding
  beyond its conditioning: the statistics are computed in stable forms instead (sums of squares from
  QR effects, survival functions, exact zeros where exact arithmetic gives zero, e.g.
  :func:`psychometrics.statistics.design_effects.variance_decomposition`), and the test suite recomputes every
  committed reference run under several BLAS kernels (``tests/test_reference_runs.py``).

A real change is far outside these bounds: an edited answer in the store or a changed scoring rule moves
a scale score by at least one response step over the number of items (>= 1e-3 relative), and scores are
compared with :math:`S` no larger than the largest score of the inventory and mode.

The analysis options a user may have chosen with ``psytest score`` are recovered from the stored tables
where possible: ``--by`` from the condition columns of ``scores.csv``, ``--no-structure`` from the absence
of ``cfa_fit.csv``. ``--reference-loadings`` cannot be recovered: pass the same file.

``reproduce(RUN, rerun=True)`` also re-sends every stored request, in the stored order (``rowid``), to a
deterministic backend and checks the raw replies: the model is resolved from the manifest's ``model`` (its
settings must equal ``backend_params``), the inventories from ``inventory_sources`` (checked against their
content hashes), the persona set from ``design.personas`` (checked likewise) and the design from
the manifest's ``design``; the plan is rebuilt with :func:`psychometrics.design.plan.plan_requests` so every stored
request id is found again, and the backend is called directly (nothing is stored). Deterministic backends
are simulated respondents (seeded per request at any temperature) and local models (``local/...``,
``gguf:...``) at temperature 0; remote litellm models are refused, as are local models sampling text at a
temperature above 0. Reply texts (and re-ask histories) must be identical; label log-probabilities must be
identical for simulated respondents and within ``1e-6`` absolute for local models, because llama.cpp
reuses the longest cached prompt prefix, so how a prompt is split into evaluated batches depends on the
request before it, which changes the floating-point evaluation order. The parsed outcome, position and
value of every stored item are re-derived from the new reply and must match too (so an edited ``value``
in the store is caught).

Across CPUs and llama.cpp builds there is no such tolerance, and ``--rerun`` of a local model is a check
on the machine and build that made the run (the manifest's ``backend_params`` pin the model file and the
llama-cpp-python version, not the CPU). llama.cpp picks its matrix kernels by CPU features (AVX2, AVX-512,
NEON) when it is compiled, and by batch size when it runs; the kernels quantize activations and
accumulate in different orders. Measured on the committed Qwen run (15 probability-mode prompts, one
build, this CPU): evaluating the prompt in batches of 7 or 1 tokens instead of 64 or more moved label
log-probabilities by up to 0.08 nats (median 0.015; up to 0.011 in probability) and changed the most
probable label of 1 prompt in 15; thread counts changed nothing. Another CPU or build takes other
kernels in the same way, so expect differences of that size (:data:`CROSS_BUILD_LOGPROB_SPREAD`, 0.1
nats, a measured envelope, not a bound) and different greedy replies where two options are that close.
The OpenBLAS kernel (``OPENBLAS_CORETYPE``) does not reach llama.cpp at all: it changes only the tables,
which the table comparison above covers.
Before any table is compared, the copy passes SQLite's full ``integrity_check``, and ``analysis/`` and
``report/`` are checked as sets (:func:`psychometrics.run.outputs.check_provenance`): a write cut short, a file
changed, missing or left from another write, or a set made from an earlier state of the store or
manifest is a mismatch, said first in the verdict. The options a set was made with (``--by``,
``--no-structure``, reference loadings) are read from its provenance record when it has one.

Nothing is written into the run directory: the manifest and the database (with its write-ahead log) are
copied into a temporary directory first, and everything is read from the copy.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from psychometrics.conditions import CONDITION_FIELDS
from psychometrics.errors import PsytestError
from psychometrics.models.local_batch import BATCH_LOGPROB_TOL, BATCH_PROB_TOL  # light: no llama.cpp import

if TYPE_CHECKING:
    from psychometrics.run.owner import Run

#: Relative tolerance of numbers in tables, applied to the larger of the value and its operands' scale.
REL_TOL = 1e-9
#: Absolute tolerance of a simulated respondent's re-derived item values (their arithmetic is the same).
ABS_TOL = 1e-12
#: Dimensionless coefficients: their operands are O(1) (standardized), so their scale is at least 1
#: (``table:column`` for a name that means this in one table only). Percentiles have scale 100.
UNIT_COLUMNS = frozenset({
    "p_value", "p_holm", "p_gg", "p", "pvalue", "share", "component_share", "share_passed", "rate",
    "option_mass", "entropy", "r", "r_drop", "r_cor", "alpha", "alpha_if_dropped", "alpha_ci_low",
    "alpha_ci_high", "std_alpha", "average_r", "lambda6", "split_half_min", "split_half_mean", "split_half_max",
    "omega_total", "omega_hierarchical", "icc2_1", "icc3_1", "icc2_k", "congruence_mean", "congruence_min",
    "mean_pattern_rho", "loading", "gg_epsilon", "cfi", "tli", "rmsea", "rmsea_ci_lower", "rmsea_ci_upper",
    "srmr", "rmsr", "effect_size", "effect_size_ci_low", "effect_size_ci_high", "retest.csv:ci_low",
    "retest.csv:ci_high",
})
#: The columns that say which computation a row belongs to: an operand scale is measured among its rows.
_PROBLEM_COLUMNS = ("inventory", "mode")
#: Log-probability tolerance (absolute) of local models on rerun; simulated respondents must be exact.
LOCAL_LOGPROB_TOL = 1e-6
#: How far llama.cpp's label log-probabilities moved between kernel paths of one build (nats): what a rerun
#: on another CPU or build may show (module docstring). Not applied: such a rerun is not a reproduction.
CROSS_BUILD_LOGPROB_SPREAD = 0.1

MISMATCH_COLUMNS = ["file", "column", "row", "row_key", "stored", "recomputed", "problem"]
#: Columns a table gained after runs were written, with the value each row of such a run must have (or
#: be empty): a run made before the ``truncated`` outcome existed has none, so its rate is 0. A stored
#: table without the column still reproduces when the recomputed one holds only that value.
ADDED_COLUMNS = {"response_styles.csv": {"truncated_rate": 0.0}}
#: Problems with a derived set as a whole (from its provenance record), and how the verdict says them.
SET_PROBLEMS = {
    "incomplete set": "a write was cut short",
    "changed since written": "changed after its set was written",
    "not of the set": "left from another write",
    "missing from set": "missing from its set",
    "stale": "made from an earlier state of the store or manifest",
}
RERUN_COLUMNS = ["rowid", "request_id", "item_id", "field", "stored", "replayed"]
#: Columns that identify a row of an analysis table, shown with a mismatch to help find it.
_ROW_KEY_COLUMNS = ("inventory", "mode", "kind", "scale", "item", "factor", "source", "factor_level", "group",
                    "persona", "option_order", "template", "wording", "item_order", "sample")


# ---------------------------------------------------------------------------------------------------
# results


@dataclass
class RerunResult:
    """Re-sent requests: ``mismatches`` has one row per differing field of a stored item (columns
    :data:`RERUN_COLUMNS`); ``n_mismatches`` counts all, beyond the rows kept."""

    model: str
    requests_checked: int
    items_checked: int
    skipped_failed: int
    not_in_plan: int
    logprob_tolerance: float
    mismatches: pd.DataFrame
    n_mismatches: int
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.n_mismatches == 0


@dataclass
class ReproduceResult:
    """Result of :func:`reproduce`.

    ``files_checked``: CSVs compared (relative to the run directory). ``mismatches``: one row per problem
    (columns :data:`MISMATCH_COLUMNS`; ``row`` is the 0-based data row, ``problem`` one of ``value``,
    ``missing file``, ``extra file``, ``missing column``, ``extra column``, ``column order``, ``row count``,
    or from the sets' provenance records ``incomplete set``, ``changed since written``, ``not of the set``,
    ``missing from set``, ``stale``);
    ``n_mismatches`` counts all of them, beyond the rows kept. ``unverified``: stored CSVs nothing
    recomputes (not failures). ``rerun``: the :class:`RerunResult` with ``rerun=True``, else ``None``.
    ``passed``: no table mismatch and (with rerun) no reply mismatch. ``verdict``: one line.
    """

    run_dir: Path
    files_checked: list[str]
    mismatches: pd.DataFrame
    n_mismatches: int
    unverified: list[str] = field(default_factory=list)
    rerun: RerunResult | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.n_mismatches == 0 and (self.rerun is None or self.rerun.passed)

    @property
    def verdict(self) -> str:
        parts = []
        sets = self.mismatches[self.mismatches["problem"].isin(SET_PROBLEMS)]
        if not sets.empty:  # the derived files are not one set made from this store: say so first
            seen = dict.fromkeys(f"{SET_PROBLEMS[p]}: {f}" for f, p in zip(sets["file"], sets["problem"]))
            parts.append(", ".join(list(seen)[:3]) + (" ..." if len(seen) > 3 else ""))
        tables = self.mismatches[~self.mismatches["problem"].isin(SET_PROBLEMS)]
        mismatched = self.n_mismatches - len(sets)
        if self.files_checked:
            if mismatched:
                files = list(dict.fromkeys(tables["file"]))
                parts.append(f"{mismatched} table mismatch{'es' if mismatched != 1 else ''} in "
                             f"{len(files)} file{'s' if len(files) != 1 else ''} ({', '.join(files[:4])}"
                             f"{' ...' if len(files) > 4 else ''})")
            elif not sets.empty:
                parts.append(f"the {len(self.files_checked)} tables themselves are identical")
            else:
                parts.append(f"{len(self.files_checked)} tables identical (numbers within {REL_TOL:g} of their scale)")
        if self.rerun is not None:
            r = self.rerun
            if r.passed:
                parts.append(f"{r.items_checked} answers to {r.requests_checked} re-sent requests identical")
            else:
                parts.append(f"{r.n_mismatches} answer field{'s' if r.n_mismatches != 1 else ''} differ on "
                             f"re-sending {r.requests_checked} requests")
        head = "REPRODUCED" if self.passed else "NOT REPRODUCED"
        return f"{head}: {'; '.join(parts) or 'nothing to check'}"

    def summary(self, max_rows: int = 20) -> str:
        """The mismatches (first ``max_rows`` of each kind), notes and the verdict, as plain text."""
        lines = []
        for record in self.mismatches.head(max_rows).to_dict(orient="records"):
            where = record["file"]
            if _present(record["column"]):
                where += f" column {record['column']}"
            if _present(record["row"]):
                where += f" row {int(record['row'])}"
                if _present(record["row_key"]) and record["row_key"]:
                    where += f" ({record['row_key']})"
            lines.append(f"{record['problem']}: {where}: stored {record['stored']!s}, recomputed {record['recomputed']!s}")
        if self.n_mismatches > max_rows:
            lines.append(f"... {self.n_mismatches - max_rows} more table mismatches")
        if self.rerun is not None:
            for record in self.rerun.mismatches.head(max_rows).to_dict(orient="records"):
                lines.append(f"reply {record['field']}: rowid {record['rowid']} request {str(record['request_id'])[:12]} "
                             f"item {record['item_id']}: stored {record['stored']!r}, replayed {record['replayed']!r}")
            if self.rerun.n_mismatches > max_rows:
                lines.append(f"... {self.rerun.n_mismatches - max_rows} more reply mismatches")
        lines += [f"unverified: {name} (nothing recomputes it)" for name in self.unverified]
        lines += [f"note: {n}" for n in self.notes + (self.rerun.notes if self.rerun else [])]
        lines.append(self.verdict)
        return "\n".join(lines)


def _present(value) -> bool:
    """Not None and not NaN (pandas turns missing entries of a column into either)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and value is not pd.NA


def _mismatch_frame(records: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(records, columns=MISMATCH_COLUMNS)
    frame["row"] = frame["row"].astype("Int64")
    return frame


# ---------------------------------------------------------------------------------------------------
# snapshot


def _snapshot(run_dir: Path, into: Path) -> Path:
    """Copy the manifest and the database (and its write-ahead log) so reading never touches the run."""
    from psychometrics.run.manifest import MANIFEST
    from psychometrics.run.owner import RESPONSES

    copy = into / "run"
    copy.mkdir()
    shutil.copy2(run_dir / MANIFEST, copy / MANIFEST)
    for suffix in ("", "-wal"):
        source = run_dir / f"{RESPONSES}{suffix}"
        if source.exists():
            shutil.copy2(source, copy / source.name)
    if (copy / RESPONSES).exists():  # the full check (indexes against tables too), on the copy
        from psychometrics.run.store import check_integrity

        conn = sqlite3.connect(copy / RESPONSES)
        try:
            check_integrity(conn, copy / RESPONSES, full=True, name=run_dir / RESPONSES)
        finally:
            conn.close()
    return copy


# ---------------------------------------------------------------------------------------------------
# tables


def _read_csv(path: Path) -> pd.DataFrame:
    from psychometrics.limits import ITEM_DATA_BYTES, check_regular_file

    try:
        check_regular_file(path, ITEM_DATA_BYTES, "CSV table psytest wrote")
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise PsytestError(f"{path}: cannot read as CSV ({exc}); delete it and run psytest score again") from None


def _row_key(frame: pd.DataFrame, row: int) -> str:
    parts = [f"{c}={frame.at[row, c]}" for c in _ROW_KEY_COLUMNS if c in frame.columns and frame.at[row, c] != ""]
    return ", ".join(parts[:6])


_INTEGER = re.compile(r"[+-]?\d+")


def _operand_scale(name: str, column: str, stored: pd.DataFrame, magnitude: np.ndarray) -> np.ndarray:
    """Per row, the scale :math:`S` of the operands a cell was computed from (see the module docstring):
    the largest magnitude in the column among the rows of the same inventory and answer mode (the whole
    column in a table without those columns), at least the column's unit scale."""
    keys = [c for c in _PROBLEM_COLUMNS if c in stored.columns]
    filled = pd.Series(np.where(np.isnan(magnitude), 0.0, magnitude))
    scale = filled.groupby([stored[c] for c in keys], sort=False).transform("max").to_numpy() if keys \
        else np.full(len(filled), float(filled.max()) if len(filled) else 0.0)
    return np.maximum(scale, _unit_scale(Path(name).name, column))


def _unit_scale(table: str, column: str) -> float:
    if column == "percentile":
        return 100.0
    dimensionless = column in UNIT_COLUMNS or f"{table}:{column}" in UNIT_COLUMNS or column.endswith("_rate")
    return 1.0 if dimensionless else 0.0


def compare_csv(stored_path: Path, recomputed_path: Path, name: str, limit: int) -> tuple[list[dict], int]:
    """Mismatches between two CSV files (at most ``limit`` rows kept) and their total count.

    Text and integers must be identical; other numbers agree when :math:`|a - b| \\le` :data:`REL_TOL`
    :math:`\\cdot \\max(|a|, |b|, S)`, :math:`S` the operands' scale (:func:`_operand_scale`)."""
    stored, recomputed = _read_csv(stored_path), _read_csv(recomputed_path)
    found: list[dict] = []
    total = 0

    def add(**record) -> None:
        nonlocal total
        total += 1
        if len(found) < limit:
            found.append({c: record.get(c) for c in MISMATCH_COLUMNS})

    for column in stored.columns:
        if column not in recomputed.columns:
            add(file=name, column=column, problem="extra column", stored="present", recomputed="absent")
    added = ADDED_COLUMNS.get(Path(name).name, {})
    for column in recomputed.columns:
        if column in added and column not in stored.columns:
            values = pd.to_numeric(recomputed[column], errors="coerce")
            if (values.isna() | (values == added[column])).all():
                continue
        if column not in stored.columns:
            add(file=name, column=column, problem="missing column", stored="absent", recomputed="present")
    common = [c for c in stored.columns if c in recomputed.columns]
    if common != [c for c in recomputed.columns if c in stored.columns]:
        add(file=name, problem="column order", stored=",".join(common),
            recomputed=",".join(c for c in recomputed.columns if c in stored.columns))
    if len(stored) != len(recomputed):
        add(file=name, problem="row count", stored=len(stored), recomputed=len(recomputed))
        return found, total
    for column in common:
        a = stored[column].to_numpy(dtype=object)
        b = recomputed[column].to_numpy(dtype=object)
        same_text = a == b
        if same_text.all():
            continue
        x = pd.to_numeric(stored[column], errors="coerce").to_numpy(dtype=float)
        y = pd.to_numeric(recomputed[column], errors="coerce").to_numpy(dtype=float)
        numeric = ~np.isnan(x) & ~np.isnan(y)
        integer = np.array([bool(_INTEGER.fullmatch(u)) and bool(_INTEGER.fullmatch(v)) for u, v in zip(a, b)])
        magnitude = np.fmax(np.abs(x), np.abs(y))
        scale = _operand_scale(name, column, stored, magnitude)
        with np.errstate(invalid="ignore"):
            close = (x == y) | (~integer & (np.abs(x - y) <= REL_TOL * np.maximum(magnitude, scale)))
        ok = np.where(numeric, close, same_text)
        for row in np.flatnonzero(~ok):
            add(file=name, column=column, row=int(row), row_key=_row_key(stored, int(row)),
                stored=a[row], recomputed=b[row], problem="value")
    return found, total


def _infer_options(analysis_dir: Path) -> tuple[list[str] | None, bool | None, bool]:
    """(by, structure, used reference loadings) as far as the stored tables show them."""
    by = structure = None
    used_reference = False
    scores = analysis_dir / "scores.csv"
    if scores.is_file():
        header = _read_csv(scores).columns
        factors = [c for c in header if c in CONDITION_FIELDS]
        if factors and set(factors) != set(CONDITION_FIELDS):
            by = factors
    if analysis_dir.is_dir() and any(analysis_dir.glob("*.csv")):
        structure = (analysis_dir / "cfa_fit.csv").is_file()
    efa = analysis_dir / "efa_fit.csv"
    if efa.is_file():
        table = _read_csv(efa)
        used_reference = "congruence_with" in table.columns and (table["congruence_with"] == "reference loadings").any()
    return by, structure, used_reference


def _check_tables(run_dir: Path, snapshot: Path, work: Path, *, by, structure, reference_loadings,
                  report_tables, limit: int, notes: list[str]):
    from psychometrics.analysis.tables import analyze_run, write_tables

    analysis_dir, report_dir = run_dir / "analysis", run_dir / "report"
    stored_analysis = sorted(p.name for p in analysis_dir.glob("*.csv")) if analysis_dir.is_dir() else []
    stored_report = sorted(p.name for p in report_dir.glob("*.csv")) if report_dir.is_dir() else []
    inferred_by, inferred_structure, used_reference = _infer_options(analysis_dir)
    from psychometrics.run.outputs import read_provenance

    recorded = (read_provenance(analysis_dir) or {}).get("options") if analysis_dir.is_dir() else None
    if recorded:  # the options the tables were written with, as their provenance record keeps them
        inferred_by = recorded.get("by") or None
        inferred_structure = recorded.get("structure", inferred_structure)
        used_reference = bool(recorded.get("reference_loadings_sha256"))
    if by is None and inferred_by:
        by = inferred_by
        notes.append(f"scores.csv is grouped by {','.join(by)}: recomputed with --by {','.join(by)}")
    if structure is None:
        structure = True if inferred_structure is None else inferred_structure
        if not structure:
            notes.append("no cfa_fit.csv: recomputed without EFA and CFA (--no-structure)")
    if used_reference and reference_loadings is None:
        raise PsytestError(f"{run_dir}/analysis/efa_fit.csv: the tables were computed with --reference-loadings; "
                           "pass the same file to reproduce them")
    tables = analyze_run(snapshot, by, structure=structure, reference_loadings=reference_loadings)
    recomputed_dir = work / "analysis"
    recomputed = sorted(p.name for p in write_tables(tables, recomputed_dir))
    found: list[dict] = []
    total = 0
    checked: list[str] = []
    unverified: list[str] = []

    def record(**r):
        nonlocal total
        total += 1
        if len(found) < limit:
            found.append({c: r.get(c) for c in MISMATCH_COLUMNS})

    if stored_analysis:
        for name in recomputed:
            if name not in stored_analysis:
                record(file=f"analysis/{name}", problem="missing file", stored="absent", recomputed="present")
        for name in stored_analysis:
            if name not in recomputed:
                record(file=f"analysis/{name}", problem="extra file", stored="present", recomputed="absent")
                continue
            rows, count = compare_csv(analysis_dir / name, recomputed_dir / name, f"analysis/{name}", limit - len(found))
            found += rows
            total += count
            checked.append(f"analysis/{name}")
    if stored_report:
        # The report analyses with the defaults; recompute that too if RUN/analysis used other options.
        report_dir_recomputed, report_names = recomputed_dir, set(recomputed)
        if by is not None or not structure or reference_loadings is not None:
            report_dir_recomputed = work / "report-analysis"
            report_names = {p.name for p in write_tables(analyze_run(snapshot), report_dir_recomputed)}
        extra = {p.name: p for p in write_tables((report_tables or _auto_report_tables)(snapshot), work / "report")}
        for name in stored_report:
            source = extra.get(name) or (report_dir_recomputed / name if name in report_names else None)
            if source is None:
                unverified.append(f"report/{name}")
                continue
            rows, count = compare_csv(report_dir / name, source, f"report/{name}", limit - len(found))
            found += rows
            total += count
            checked.append(f"report/{name}")
    return checked, found, total, unverified


def _auto_report_tables(run: Path) -> dict[str, pd.DataFrame]:
    """The report's tables beyond the analysis ones (``responses.csv``, ``verdict.csv``,
    ``persona_profile.csv``), if the report module provides them."""
    try:
        from psychometrics.report import responses_table, verdict_tables
    except ImportError:
        return {}
    from psychometrics.run.owner import open_run

    opened = open_run(run)
    return {"responses": responses_table(opened), **verdict_tables(opened)}


# ---------------------------------------------------------------------------------------------------
# rerun


def backend_kind(model: str) -> str:
    """``sim``, ``local`` or ``remote`` for a ``--model`` string."""
    if model == "sim" or model.startswith("sim/"):
        return "sim"
    if model.startswith(("local/", "gguf:")):
        return "local"
    return "remote"


def _refuse_nondeterministic(model: str, design) -> None:
    kind = backend_kind(model)
    if kind == "remote":
        raise PsytestError(
            f"reproduce --rerun: {model} is a remote model whose replies are not deterministic; re-sending cannot "
            "verify them (reproduce without --rerun checks the derived tables)"
        )
    if kind == "local" and max(design.temperatures) > 0 and "text" in design.modes:
        raise PsytestError(
            f"reproduce --rerun: the run sampled text from {model} at temperature {max(design.temperatures):g}, which is "
            "not bit-reproducible; only temperature 0 (or probs mode) can be re-sent and verified"
        )


def _rebuild_plan(run: "Run"):
    """(backend, design, {request id: planned request}) rebuilt from the run's manifest, every input checked."""
    from psychometrics.models import resolve_model

    manifest = run.questionnaire
    model, design = manifest.model, manifest.design
    _refuse_nondeterministic(model, design)
    backend = resolve_model(model, inventories=run.inventories)
    from psychometrics.run.identity import identity_params

    params = identity_params(json.loads(json.dumps(backend.params)), manifest)
    if params != manifest.backend_params:
        differing = sorted(k for k in set(params) | set(manifest.backend_params)
                           if params.get(k) != manifest.backend_params.get(k))
        raise PsytestError(
            f"reproduce --rerun: {model} now has different settings than in the run ({', '.join(differing)}); "
            "re-sending needs the same model file and runtime"
        )
    backend.prepare(run.inventories, run.persona_set)
    return backend, design, {p.request_id: p for p in run.plan()}


def _stored_requests(database: Path) -> list[list[dict]]:
    """Stored rows grouped by request, in the order of their first rowid."""
    conn = sqlite3.connect(database)  # the snapshot: opening it may recover its write-ahead log
    try:
        cursor = conn.execute(
            "SELECT rowid, request_id, item_id, item_index, mode, raw_reply, choice_logprobs, outcome, position, "
            "value, error, reasks, reask_replies FROM responses ORDER BY rowid"
        )
        names = [d[0] for d in cursor.description]
        grouped: dict[str, list[dict]] = {}
        for record in cursor:
            row = dict(zip(names, record))
            for column in ("choice_logprobs", "reask_replies"):
                if row[column] is not None:
                    row[column] = json.loads(row[column])
            grouped.setdefault(row["request_id"], []).append(row)
    finally:
        conn.close()
    return list(grouped.values())


def _values_differ(a, b, abs_tol: float) -> bool:
    if a is None or b is None:
        return (a is None) != (b is None)
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) != math.isnan(b)
    return not (a == b or abs(a - b) <= abs_tol + REL_TOL * max(abs(a), abs(b)))


def _logprobs_differ(stored: dict | None, replayed: dict | None, tol: float, prob_tol: float | None = None) -> bool:
    """Whether two label log-probability maps differ: beyond ``tol`` absolute (exactly when 0); with
    ``prob_tol`` (a batched local run) a label differs when its probability moved by more than ``prob_tol``
    or, for a label of probability at least ``prob_tol``, its log-probability by more than ``tol``."""
    if stored is None or replayed is None:
        return (stored is None) != (replayed is None)
    if set(stored) != set(replayed):
        return True
    if prob_tol is not None:
        for k in stored:
            a, b = stored[k], replayed[k]
            if a is None or b is None:
                if (a is None) != (b is None):
                    return True
                continue
            pa, pb = math.exp(a), math.exp(b)
            if abs(pa - pb) > prob_tol or (max(pa, pb) >= prob_tol and abs(a - b) > tol):
                return True
        return False
    return any(_values_differ(stored[k], replayed[k], tol) if tol else stored[k] != replayed[k] for k in stored)


class _CompareSink:
    """A sink of the send engine (:class:`psychometrics.engine.pool.Sink`) that compares each re-sent
    request's rows with the stored ones instead of storing anything: the run is never written. Every
    stored request is to be sent (none counts as answered), and no other process shares the work."""

    def __init__(self, stored: dict[str, list[dict]], by_id: dict, *, logprob_tol: float, value_tol: float,
                 prob_tol: float | None = None):
        self.stored, self.by_id = stored, by_id
        self.logprob_tol, self.value_tol, self.prob_tol = logprob_tol, value_tol, prob_tol
        self.differences: dict[str, list[tuple]] = {}  # request id -> (stored row, field, stored, replayed)

    def answered_ids(self) -> set[str]:
        return set()

    def failed_attempts(self) -> dict[str, int]:
        return {}

    def claims(self, *, since=None, lease_s=None):
        from psychometrics.engine.pool import Unshared

        return Unshared()

    def write_and_claim(self, items, claims) -> list[str | None]:
        for rows, _, _ in items:
            self.differences[rows[0].request_id] = self._compare(rows)
        return [None if following is None else claims.claim_in_transaction(following) for *_, following in items]

    def _compare(self, replayed: list) -> list[tuple]:
        planned = self.by_id[replayed[0].request_id]
        found = []
        for row in self.stored[replayed[0].request_id]:
            index = row["item_index"]
            if index >= len(planned.items) or planned.items[index].id != row["item_id"]:
                found.append((row, "item_id", row["item_id"], planned.items[index].id if index < len(planned.items) else None))
                continue
            now = replayed[index]
            if now.error is not None:  # the re-send failed (after retries): no reply to compare
                found.append((row, "error", row["error"], now.error))
                continue
            if row["raw_reply"] != now.raw_reply:
                found.append((row, "raw_reply", row["raw_reply"], now.raw_reply))
            if (row["reask_replies"] or None) != (now.reask_replies or None):
                found.append((row, "reask_replies", row["reask_replies"], now.reask_replies or None))
            if _logprobs_differ(row["choice_logprobs"], now.choice_logprobs, self.logprob_tol, self.prob_tol):
                found.append((row, "choice_logprobs", row["choice_logprobs"], now.choice_logprobs))
            if row["outcome"] != now.outcome:
                found.append((row, "outcome", row["outcome"], now.outcome))
            if row["position"] != now.position:
                found.append((row, "position", row["position"], now.position))
            if _values_differ(row["value"], now.value, self.value_tol):
                found.append((row, "value", row["value"], now.value))
        return found


def _rerun(run: "Run", snapshot: Path, limit: int) -> RerunResult:
    """Re-send every stored answered request through the send engine, one at a time, with the unit of work
    and retries ``administer`` uses (:class:`psychometrics.engine.send.RequestWork`), comparing instead of
    storing."""
    from psychometrics.engine.pool import send_all
    from psychometrics.engine.send import RequestWork
    from psychometrics.run.owner import RESPONSES

    backend, design, by_id = _rebuild_plan(run)
    kind = backend_kind(run.manifest.model)
    in_flight = getattr(run.manifest, "most_in_flight", None) or 1
    batched = kind == "local" and in_flight > 1
    logprob_tol = (BATCH_LOGPROB_TOL if batched else LOCAL_LOGPROB_TOL) if kind == "local" else 0.0
    # Expected values move by at most about twice the log-probability error times the largest response value;
    # in a batched run by the options' probability changes times the values (five options of value <= 5).
    value_tol = (25 * BATCH_PROB_TOL if batched else 20 * logprob_tol) if kind == "local" else ABS_TOL
    stored = _stored_requests(snapshot / RESPONSES)
    found: list[dict] = []
    counts = {"total": 0, "requests": 0, "items": 0, "failed": 0, "not_in_plan": 0}

    def add(row: dict, field_name: str, was, now) -> None:
        counts["total"] += 1
        if len(found) < limit:
            found.append({"rowid": row["rowid"], "request_id": row["request_id"], "item_id": row["item_id"],
                          "field": field_name, "stored": was, "replayed": now})

    to_send = [rows for rows in stored if not any(r["error"] is not None for r in rows) and rows[0]["request_id"] in by_id]
    sink = _CompareSink({rows[0]["request_id"]: rows for rows in to_send}, by_id, logprob_tol=logprob_tol,
                        value_tol=value_tol, prob_tol=BATCH_PROB_TOL if batched else None)

    async def send():
        try:
            return await send_all([by_id[rows[0]["request_id"]] for rows in to_send], sink, RequestWork(design.reasks, longer=design.longer_reasks),
                           backend=backend, concurrency=1)
        finally:
            await backend.aclose()

    stats = asyncio.run(send())
    for rows in stored:  # in stored order, as the rows were written
        first = rows[0]
        if any(r["error"] is not None for r in rows):
            counts["failed"] += 1
        elif first["request_id"] not in by_id:
            counts["not_in_plan"] += 1
            add(first, "request", "stored", "not in the plan rebuilt from the manifest")
        else:
            counts["requests"] += 1
            counts["items"] += len(rows)
            for difference in sink.differences[first["request_id"]]:
                add(*difference)
    notes = []
    answered = {rows[0]["request_id"] for rows in stored}
    unanswered = sum(1 for request_id in by_id if request_id not in answered)
    if unanswered:
        notes.append(f"{unanswered} planned requests have no stored answer (the run is incomplete); they were not sent")
    if counts["failed"]:
        notes.append(f"{counts['failed']} requests stored as failures were skipped (no reply to compare)")
    if stats.retries:
        notes.append(f"{stats.retries} transient failures of the model were retried while re-sending")
    if batched:
        notes.append(f"local model run with up to {in_flight} requests in flight, evaluated together in llama.cpp "
                     "batches whose kernels depend on the batch: re-sent one at a time, label probabilities compared "
                     f"within {BATCH_PROB_TOL:g} (log-probabilities of labels of probability >= {BATCH_PROB_TOL:g} within "
                     f"{BATCH_LOGPROB_TOL:g}), texts exactly (a greedy reply may differ where two tokens are that close); "
                     "for a bitwise reproducible run administer with --concurrency 1")
    elif kind == "local":
        notes.append(f"local model: log-probabilities compared within {LOCAL_LOGPROB_TOL:g} absolute (the prompt-cache "
                     "path changes the evaluation order); texts compared exactly. This holds on the CPU and llama.cpp "
                     f"build that made the run: elsewhere other kernels move log-probabilities by up to about "
                     f"{CROSS_BUILD_LOGPROB_SPREAD:g} and may change greedy replies")
    frame = pd.DataFrame(found, columns=RERUN_COLUMNS)
    return RerunResult(run.manifest.model, counts["requests"], counts["items"], counts["failed"], counts["not_in_plan"],
                       logprob_tol, frame, counts["total"], notes)


# ---------------------------------------------------------------------------------------------------
# entry point


def reproduce(
    run_dir: Path,
    rerun: bool = False,
    *,
    by: list[str] | None = None,
    structure: bool | None = None,
    reference_loadings: pd.DataFrame | None = None,
    report_tables: Callable[[Path], dict[str, pd.DataFrame]] | None = None,
    max_mismatches: int = 1000,
) -> ReproduceResult:
    """Check that a run's derived tables (and, with ``rerun``, its raw answers) reproduce.

    ``by``, ``structure``: the ``psytest score`` options the tables were made with (default: inferred from
    the stored tables). ``reference_loadings``: the same loadings if ``--reference-loadings`` was used.
    ``report_tables``: a function that recomputes the report's own tables (beyond the analysis tables)
    from a run directory (a copy of the run is passed), for ``RUN/report/*.csv``; by default
    ``psychometrics.report.responses_table`` gives ``responses.csv`` when the report module has it. Report
    CSVs named like an analysis table are compared with that table (analysed with the default options, as
    the report does); the CSVs present are checked, and any nothing recomputes (``run_info.csv``, which
    holds the report's creation time) are listed as unverified. ``max_mismatches``: how many mismatch
    rows to keep (all are counted). Raises :class:`PsytestError` for a directory that is not a run, a run
    with no tables to check and no ``rerun``, and (``rerun``) a non-deterministic or changed model or inputs.
    """
    from psychometrics.run.owner import open_run

    run_dir = Path(run_dir)
    run = open_run(run_dir)
    with run.store() as store:  # checked here: what follows reads a copy, whose name would mean nothing to the user
        store.check_contents()
    has_tables = any((run_dir / "analysis").glob("*.csv")) or any((run_dir / "report").glob("*.csv"))
    if not has_tables and not rerun:
        raise PsytestError(f"{run_dir}: no analysis/*.csv to check; run psytest score {run_dir} first, or use --rerun "
                           "to check the raw answers")
    if rerun:  # refuse before any work
        _refuse_nondeterministic(run.manifest.model, run.questionnaire.design)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="psytest-reproduce-") as tmp:
        work = Path(tmp)
        snapshot = _snapshot(run_dir, work)
        try:
            checked, found, total, unverified = [], [], 0, []
            if has_tables:
                checked, found, total, unverified = _check_tables(
                    run_dir, snapshot, work, by=by, structure=structure, reference_loadings=reference_loadings,
                    report_tables=report_tables, limit=max_mismatches, notes=notes)
            else:
                notes.append("no analysis/*.csv: only the raw answers were checked")
            copy = open_run(snapshot)
            provenance = _check_sets(run_dir, copy, notes) + _check_request_ids(run_dir, copy, notes)
            total += len(provenance)
            found = provenance + found  # first: a stale or mixed set explains the mismatches after it
            rerun_result = _rerun(copy, snapshot, max_mismatches) if rerun else None
        except PsytestError as exc:  # name the run's own files, not the snapshot's
            raise PsytestError(str(exc).replace(str(snapshot), str(run_dir))) from None
    return ReproduceResult(run_dir, checked, _mismatch_frame(found[:max_mismatches]), total, unverified,
                           rerun_result, notes)


def _check_sets(run_dir: Path, copy: "Run", notes: list[str]) -> list[dict]:
    """Problems with the derived sets of ``run_dir`` (analysis/, report/) as their provenance records show
    them (:func:`psychometrics.run.outputs.check_provenance`): a write cut short, a file changed or left from
    another set, or a set made from an earlier state of the store."""
    from psychometrics.run.outputs import check_provenance

    current = copy.state()
    found = []
    for name in ("analysis", "report"):
        directory = run_dir / name
        if not directory.is_dir():
            continue
        problems, set_notes = check_provenance(directory, current, name)
        notes += set_notes
        for problem in problems:
            found.append({c: problem.get(c) for c in MISMATCH_COLUMNS})
            if problem.get("note"):
                notes.append(problem["note"])
    return found


def _check_request_ids(run_dir: Path, copy: "Run", notes: list[str]) -> list[dict]:
    """The run planned again from its manifest and inputs (:meth:`psychometrics.run.owner.Run.plan`): every
    stored request id must be one of the plan's (else the store holds answers to prompts this run does not
    send: a template or rendering changed, or another study was mixed in), and the plan's hash must be the
    one the manifest recorded (format 2 on)."""
    from psychometrics.run.identity import plan_hash, unplanned
    from psychometrics.run.manifest import MANIFEST
    from psychometrics.run.owner import RESPONSES

    planned = [p.request_id for p in copy.plan()]
    found = []
    strays = unplanned(copy.stored_ids(), planned)
    if strays:
        found.append({"file": RESPONSES, "column": "request_id", "problem": "not planned",
                      "stored": f"{len(strays)} request ids", "recomputed": "not in the plan rebuilt from the manifest",
                      "row_key": f"e.g. {strays[0][:12]}"})
    recorded = copy.questionnaire.prompts
    if recorded is not None and recorded.plan != plan_hash(planned):
        found.append({"file": MANIFEST, "column": "prompts.plan", "problem": "plan",
                      "stored": recorded.plan[:12], "recomputed": plan_hash(planned)[:12]})
    if not found:
        notes.append(f"the {len(planned):,} planned requests, rebuilt from the manifest, include every stored one")
    return [{c: r.get(c) for c in MISMATCH_COLUMNS} for r in found]
