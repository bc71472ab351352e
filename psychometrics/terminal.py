"""What a run shows in the terminal: a live progress bar and the closing summary tables."""

from __future__ import annotations

import time


class RunProgress:
    """A rich progress bar on stderr: done/total, items/s, ETA and failures."""

    def __init__(self, label: str = "administering", unit: str = "items/s") -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.failures = 0
        self.progress = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} " + unit),
            TimeRemainingColumn(),
            TextColumn("failures: {task.fields[failures]}"),
            console=Console(stderr=True),
            transient=False,
        )
        self.task = None

    def start(self, total: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("run", total=total, rate="-", failures=0)
        self._t0 = None

    def advance(self, rows) -> None:
        if self._t0 is None:
            self._t0 = time.perf_counter()
            self._n = 0
        self._n += len(rows)
        if rows[0].error is not None:
            self.failures += 1
        elapsed = time.perf_counter() - self._t0
        rate = f"{self._n / elapsed:.1f}" if elapsed > 0 else "-"
        self.progress.update(self.task, advance=1, rate=rate, failures=self.failures)

    def stop(self) -> None:
        if self.task is None:  # never started (the run failed before sending): print nothing, not a blank line
            return
        if self.task is not None:
            task = self.progress.tasks[0]
            if task.completed < (task.total or 0):
                # Requests answered in an earlier run: show them as done.
                self.progress.update(self.task, completed=task.total)
        self.progress.stop()


def print_run_summary(payload: dict, summary) -> None:
    from rich.console import Console

    console = Console()
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(payload["outcomes"].items())) or "none"
    console.print(
        f"Run {payload['run_dir']}: {payload['requests_planned']} requests planned, "
        f"{payload['already_answered']} already answered, {payload['sent']} sent "
        f"({payload['items_per_second']} items/s), {payload['failed']} failed"
        + (f", {payload['claimed_elsewhere']} left to another process on this run directory"
           if payload.get("claimed_elsewhere") else "")
        + f"; outcomes: {outcomes}",
        highlight=False, markup=False,
    )
    console.print(_table("Scale scores over design cells (mean, SD, bootstrap 95% CI of the mean)", summary,
                         ["inventory", "mode", "scale", "mean", "sd", "n", "ci_low", "ci_high"]))
    console.print(f"Every table (reliability, sensitivity, structure, norms, ...): {payload['analysis_dir']}/",
                  highlight=False, markup=False)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _table(title: str, frame, columns: list[str]):
    from rich.table import Table
    from rich.text import Text

    from psychometrics.errors import printable

    table = Table(title=title)
    present = [c for c in columns if c in frame.columns]
    for column in present:
        table.add_column(column)
    for record in frame[present].to_dict(orient="records"):
        # Text, not str: a cell is never read as rich markup, and control characters are escaped
        table.add_row(*(Text(printable(_fmt(record[c]))) for c in present))
    return table


def print_analysis(tables: dict, written: list) -> None:
    """The headline tables of an analysis, and where the full CSVs are."""
    from rich.console import Console

    console = Console()
    summary = tables.get("score_summary")
    if summary is not None and not summary.empty:
        scales = summary[summary["kind"] == "scale"]
        console.print(_table("Scale scores (mean over respondents, bootstrap 95% CI)", scales,
                             ["inventory", "mode", "scale", "mean", "sd", "n", "ci_low", "ci_high"]))
    reliability = tables.get("reliability")
    if reliability is not None and not reliability.empty:
        console.print(_table("Reliability", reliability,
                             ["inventory", "mode", "scale", "n_respondents", "alpha", "alpha_ci_low", "alpha_ci_high",
                              "omega_total", "omega_hierarchical", "lambda6", "split_half_mean", "note"]))
    variance = tables.get("variance_decomposition")
    if variance is not None and not variance.empty:
        console.print(f"Sensitivity to design factors: see variance_decomposition.csv and factor_effects.csv "
                      f"({len(variance)} rows)", highlight=False)
    console.print(f"{len(written)} tables written to {written[0].parent if written else '-'}", highlight=False,
                  markup=False)


def print_behavior_summary(payload: dict, summary) -> None:
    """The closing lines of ``psytest behave``: counts, then one row per task."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    console = Console()
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(payload["outcomes"].items())) or "none"
    console.print(
        f"Behaviour run {escape(payload['run_dir'])}: {payload['conversations_planned']} conversations planned, "
        f"{payload['already_answered']} already answered, {payload['sent']} sent ({outcomes}); "
        f"{payload['failed']} failed, {payload['retries']} retries, "
        f"{payload['conversations_per_second']:.2f} conversations/s.",
        highlight=False,
    )
    table = Table(title="Behaviour scores (valid conversations only; parse failures are missing, not zero)")
    for column in ("task", "trait", "dir", "valid", "mean", "sd", "first option", "cut off"):
        table.add_column(column, justify="left" if column in ("task", "trait") else "right")
    for row in summary.itertuples():
        table.add_row(
            Text(str(row.task)), Text(str(row.trait)), "+" if row.direction > 0 else "-",  # a user's task id is text
            f"{row.valid}/{row.conversations}",
            _fmt_g(row.mean), _fmt_g(row.sd), _fmt_g(row.first_option_share), _fmt_g(row.truncated_share),
        )
    console.print(table)
    console.print(f"Tables: {escape(payload['analysis_dir'])}", highlight=False)


def _fmt_g(value) -> str:  # not _fmt: that name is the run tables' formatter above
    import math

    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def print_validity(result) -> None:
    """``psytest validity``: the dissociation index and the declared pairs, then where the files are."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    headline = result.headline()
    for row in headline["dissociation"]:
        console.print(
            f"{escape(str(row['scope']))}: {row['confirmed']} of {row['tested']} declared self-report/behaviour "
            f"associations confirmed (dissociation index {_fmt(row['dissociation'])}).",
            highlight=False,
        )
    scopes = {row["scope"] for row in headline["declared_pairs"]}
    for scope in sorted(scopes):
        table = Table(title=f"{escape(str(scope))}: declared pairs, r across respondents (model x persona)")
        for column in ("trait", "task", "n", "r", "95% CI", "p BH", "ok", "r corr."):
            table.add_column(column, justify="left" if column in ("trait", "task") else "right")
        for row in headline["declared_pairs"]:
            if row["scope"] != scope:
                continue
            table.add_row(
                row["trait"], escape(str(row["task"])), str(row["n"]), _fmt2(row["r"]),
                f"{_fmt2(row['ci_low'])}..{_fmt2(row['ci_high'])}", _fmt2(row["p_bh_declared"], 3),
                "yes" if row["confirmed"] else "no", _fmt2(row.get("r_corrected")),
            )
        console.print(table)
    for note in headline["notes"]:
        console.print(f"note ({escape(str(note['table']))}): {escape(str(note['note']))}", highlight=False)
    console.print(f"Tables and validity.html: {escape(str(result.out_dir))}", highlight=False)


def _fmt2(value, digits: int = 2) -> str:
    import math

    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
