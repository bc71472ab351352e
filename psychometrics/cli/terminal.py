"""Everything psytest prints goes through here: plain lines (:func:`echo`), rich tables (:func:`console`),
JSON (:func:`print_json`), the live progress bar and the closing summary tables.

Text from files, servers and models is untrusted: an escape sequence in an item text or a reply
(``ESC ] 52 ;`` writes the clipboard, ``ESC ] 0 ;`` retitles the window, 8-bit CSI ``\x9b`` recolours)
must not reach the terminal. :func:`printable` writes every character that a terminal acts on or does
not show as its escape (``\x1b``, ``\u202e``): C0 and C1 controls and DEL, Unicode format characters
(bidi overrides and isolates, zero-width spaces and joiners, tag characters), line and paragraph
separators, lone surrogates, unassigned code points, variation selectors and invisible fillers. Tabs
and newlines stay where the layout wants them. ``--json`` output keeps the exact data and writes the
same characters as JSON escapes (``\u202e``), which any JSON reader turns back into them.

Commands never call ``print``, ``typer.echo`` or ``rich.console.Console`` themselves
(``tests/test_terminal_output.py`` checks the source and runs every command on hostile input).
"""

from __future__ import annotations

import math
import time

from psychometrics.textsafe import hidden, json_escaped, json_text, printable  # noqa: F401 - re-exported


def echo(message: object = "", err: bool = False) -> None:
    """Print ``message`` and a newline on stdout (or stderr), made :func:`printable`."""
    import typer

    typer.echo(printable(str(message)), err=err)


def echo_fast(text: str) -> None:
    """``text``, made :func:`printable`, on stdout as it is (no newline added) without importing typer: for
    the answers that must start instantly (``psytest --help`` and ``--version``, :mod:`psychometrics.cli.fast_help`)."""
    import sys

    sys.stdout.write(printable(text))
    sys.stdout.flush()


def echo_error(message: object) -> None:
    """``psytest: error: MESSAGE`` on stderr, as one line (runs of whitespace, newlines too, become a space)."""
    echo("psytest: error: " + " ".join(str(message).split()), err=True)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for the command line: a library's warning (whose text may quote a file or a
    reply) as one escaped line on stderr."""
    echo(f"psytest: warning: {category.__name__}: {message}", err=True)


def print_json(payload: object) -> None:
    """Print ``payload`` as JSON (:func:`json_text`) on stdout."""
    import typer

    typer.echo(json_text(payload))


def print_json_text(text: str) -> None:
    """Print a JSON document read from a file, its hidden characters escaped as in :func:`json_text`."""
    import typer

    typer.echo(json_escaped(text.rstrip("\n")))


def console(stderr: bool = False):
    """A rich Console for a command's output: what it prints is never read as markup, emoji codes or
    highlighted, and every piece of text is made :func:`printable` on its way out. Callers still escape
    cells themselves (:func:`cell`) so that rich measures the widths of what is shown."""
    from rich.console import Console, RenderHook

    class _Escaping(RenderHook):
        def process_renderables(self, renderables):
            return [_Escaped(r) for r in renderables]

    out = Console(stderr=stderr, markup=False, emoji=False, highlight=False)
    out.push_render_hook(_Escaping())
    return out


class _Escaped:
    """A renderable whose text segments are made :func:`printable` (rich's own control segments, such as
    cursor moves, pass as they are: user text never becomes one)."""

    def __init__(self, renderable):
        self.renderable = renderable

    def __rich_console__(self, console, options):
        from rich.segment import Segment

        for segment in console.render(self.renderable, options):
            if segment.control or not segment.text:
                yield segment
            else:
                yield Segment(printable(segment.text), segment.style)


def cell(value: object, style: str = ""):
    """``value`` as a rich Text: never markup, hidden characters escaped (so table widths are right)."""
    from rich.text import Text

    return Text(printable(str(value)), style=style)


def print_inventory_list(summaries: list[dict]) -> None:
    """``psytest inventories list``: one row per shipped inventory."""
    from psychometrics.cli.tables import Column, print_fitted

    columns = [
        Column("id", kind="key"), Column("items"), Column("reverse_keyed", "rev"),
        Column("facets", drop=2), Column("paraphrased_items", "para", drop=3), Column("norm_groups", "norms", drop=4),
        Column("scales", kind="text", drop=1, fmt=lambda r: " ".join(r["scales"])),
        Column("name", kind="text"),
    ]
    print_fitted("Shipped inventories", summaries, columns, where="--json")


def print_inventory(inv) -> None:
    """``psytest inventories show``: metadata, scales, norms and every item (text from the file is shown as
    written, escaped, never as rich markup)."""
    from rich.text import Text

    from psychometrics.cli.tables import Column, print_fitted

    out = console()
    out.print(Text.assemble(cell(inv.name, "bold"), cell(f" ({inv.id}, version {inv.version})")))
    if inv.description:
        out.print(inv.description)
    out.print(f"Citation: {inv.citation}")
    out.print(f"Licence: {inv.licence}")
    if inv.stem:
        out.print(f"Stem: {inv.stem}")
    rs = inv.response_scale
    out.print("Responses: " + ", ".join(f"{v} {rs.labels[v]}" for v in rs.values))
    scales = [{"id": s.id, "name": s.name, "trait": (("-" if s.trait_sign < 0 else "") + s.trait) if s.trait else "",
               "scoring": s.scoring, "items": len(s.items),
               "reversed": sum(inv.item_by_id[i].reverse_keyed for i in s.items)} for s in inv.scales]
    print_fitted("Scales", scales, [Column("id", kind="key"), Column("name", kind="text"), Column("trait", kind="key"),
                                    Column("scoring", kind="key", drop=1), Column("items"), Column("reversed", "rev")],
                 max_rows=1000)
    if inv.norms:
        out.print(f"Norms: {len(inv.norms)} group(s): " + "; ".join(n.group for n in inv.norms))
    items = [{**r, "scale": r["scale"] or "", "facet": r["facet"] or "", "R": "R" if r["reverse_keyed"] else "",
              "paraphrases": len(r["paraphrases"])} for r in inv.item_records()]
    print_fitted("Items", items, [Column("id", kind="key"), Column("text", kind="text"), Column("scale", kind="key"),
                                  Column("facet", kind="key", drop=1), Column("R", kind="key"),
                                  Column("paraphrases", "para", drop=2)], max_rows=10_000, where="--json")


class RunProgress:
    """A rich progress bar on stderr: done/total, items/s, ETA and failures."""

    def __init__(self, label: str = "administering", unit: str = "items/s") -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.failures = 0
        self.progress = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} " + unit),
            TimeRemainingColumn(),
            TextColumn("failures: {task.fields[failures]}"),
            console=console(stderr=True),
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

    def stop(self, finished: bool = True) -> None:
        """End the bar; ``finished`` (the run sent everything) shows requests answered earlier as done."""
        if self.task is None:  # never started (the run failed before sending): print nothing, not a blank line
            return
        if finished:
            task = self.progress.tasks[0]
            if task.completed < (task.total or 0):
                # Requests answered in an earlier run: show them as done.
                self.progress.update(self.task, completed=task.total)
        self.progress.stop()


def print_run_summary(payload: dict, summary, verdict=None) -> None:
    """The closing lines of ``psytest administer``: counts, then the verdict (the scale scores without one)."""
    from psychometrics.cli.tables import print_wrapped

    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(payload["outcomes"].items())) or "none"
    print_wrapped(
        f"Run {payload['run_dir']}: {payload['requests_planned']} requests planned, "
        f"{payload['already_answered']} already answered, {payload['sent']} sent "
        f"({payload['items_per_second']} items/s), {payload['failed']} failed"
        + (f", {payload['claimed_elsewhere']} left to another process on this run directory"
           if payload.get("claimed_elsewhere") else "")
        + f"; outcomes: {outcomes}"
    )
    verdict = verdict if verdict is not None else []
    if len(verdict):
        print_verdict(verdict)
    else:
        _print_scores("Scale scores (mean over respondents, 95% t interval)", summary,
                      f"{payload['analysis_dir']}/score_summary.csv")
    from psychometrics.cost.actual import describe_run_cost

    cost_line = describe_run_cost(payload.get("cost"))
    if cost_line and not (payload["cost"].get("cost") == 0 and not payload["cost"].get("cached_input_tokens")):
        print_wrapped(cost_line[:1].upper() + cost_line[1:])
    print_wrapped(f"Every table (reliability, sensitivity, structure, norms, ...): {payload['analysis_dir']}/; "
                  f"the report with the evidence: psytest report {payload['run_dir']}")


def print_verdict(verdict) -> None:
    """The verdict per inventory x mode x scale (``psychometrics.analysis.verdict``), and its rules in short."""
    from psychometrics.analysis.verdict import FRAGILE_SD, MAX_FLIP_EXCESS, MIN_VALID_SHARE
    from psychometrics.cli.tables import Column, interval, print_fitted, print_wrapped, records_of

    def percent(key):
        return lambda row: "-" if row.get(key) is None or row.get(key) != row.get(key) else f"{row[key]:.0%}"

    columns = [Column("inventory", kind="key"), Column("mode", kind="key"), Column("scale", kind="key"),
               Column("score"),
               *([Column("ci", "95% CI", drop=1, fmt=interval("ci_low", "ci_high"))]
                 if verdict["ci_low"].notna().any() else []),  # one respondent: no interval anywhere
               Column("movement_points", "moved", drop=3), Column("valid_share", "valid", drop=2, fmt=percent("valid_share")),
               Column("flip_rate", "flips", drop=4, fmt=percent("flip_rate")), Column("label", "verdict", kind="text"),
               Column("reason", kind="note")]
    print_fitted("Verdict: can these scores be read? (score over respondents; moved: range over design cells, "
                 "points)", records_of(verdict), columns, where="psytest report RUN writes it as verdict.csv")
    print_wrapped(f"Rules, first that holds: not measurable (< {MIN_VALID_SHARE:.0%} valid, or option-order flips "
                  f"{MAX_FLIP_EXCESS:.0%} above chance); fragile (the design or the interval moves the score by "
                  f">= {FRAGILE_SD:g} human SD, or 1/8 of the range without norms); untested (one design cell); "
                  "interpretable.")


def _fmt(value) -> str:
    from psychometrics.cli.tables import number

    return number(value)


def _print_scores(title: str, scales, where: str) -> None:
    from psychometrics.cli.tables import Column, interval, print_fitted, records_of

    columns = [Column("inventory", kind="key"), Column("mode", kind="key"), Column("scale", kind="key"),
               Column("mean"), Column("sd"), Column("n"), Column("ci", "95% CI", fmt=interval("ci_low", "ci_high")),
               Column("note", kind="note")]
    print_fitted(title, records_of(scales), columns, where=where)


def print_analysis(tables: dict, written: list) -> None:
    """The headline tables of an analysis (bounded in rows, fitted to the width), and where the full CSVs are."""
    from psychometrics.cli.tables import Column, interval, print_fitted, print_wrapped, records_of

    where = str(written[0].parent) if written else "-"
    summary = tables.get("score_summary")
    if summary is not None and not summary.empty:
        scales = summary[summary["kind"] == "scale"]
        _print_scores("Scale scores (mean over respondents, 95% t interval)", scales,
                      f"{where}/score_summary.csv")
    reliability = tables.get("reliability")
    if reliability is not None and not reliability.empty:
        varied = [c for c in ("option_order", "template", "wording", "item_order")
                  if c in reliability and reliability[c].nunique() > 1]  # the design cell, where it varies
        columns = [Column("inventory", kind="key"), Column("mode", kind="key"),
                   *(Column(c, kind="key") for c in varied), Column("scale", kind="key"),
                   Column("n_respondents", "n"), Column("alpha"),
                   Column("alpha_ci", "alpha 95% CI", drop=5, fmt=interval("alpha_ci_low", "alpha_ci_high")),
                   Column("omega_total", "omega", drop=4), Column("omega_hierarchical", "omega_h", drop=1),
                   Column("lambda6", "lambda6", drop=2), Column("split_half_mean", "split-half", drop=3),
                   Column("note", kind="note")]
        print_fitted("Reliability (across respondents within each design cell)",
                     records_of(reliability), columns, where=f"{where}/reliability.csv")
    variance = tables.get("variance_decomposition")
    if variance is not None and not variance.empty:
        print_wrapped(f"Sensitivity to design factors: see variance_decomposition.csv and factor_effects.csv "
                      f"({len(variance)} rows)")
    print_wrapped(f"{len(written)} tables written to {where}")


def print_behavior_summary(payload: dict, summary) -> None:
    """The closing lines of ``psytest behave``: counts, then one row per task."""
    from rich.table import Table

    out = console()
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(payload["outcomes"].items())) or "none"
    out.print(
        f"Behaviour run {payload['run_dir']}: {payload['conversations_planned']} conversations planned, "
        f"{payload['already_answered']} already answered, {payload['sent']} sent ({outcomes}); "
        f"{payload['failed']} failed, {payload['retries']} retries, "
        f"{payload['conversations_per_second']:.2f} conversations/s."
    )
    table = Table(title="Behaviour scores (valid conversations only; parse failures are missing, not zero)")
    for column in ("task", "trait", "dir", "valid", "mean", "sd", "first option", "chance", "cut off"):
        table.add_column(column, justify="left" if column in ("task", "trait") else "right")
    for row in summary.itertuples():
        # text: share of choices of the first displayed option; probs: its mean probability
        first = getattr(row, "first_option_share", math.nan)
        if not isinstance(first, float) or math.isnan(first):
            first = getattr(row, "first_option_probability", math.nan)
        table.add_row(
            cell(row.task), cell(row.trait), "+" if row.direction > 0 else "-",
            f"{row.valid}/{row.conversations}", _fmt_g(row.mean), _fmt_g(row.sd), _fmt_g(first),
            _fmt_g(getattr(row, "first_option_chance", math.nan)), _fmt_g(row.truncated_share),
        )
    out.print(table)
    out.print("first option: share of choices of the option displayed first (probs mode, TASK@probs: its mean "
              "probability); chance: 1/k")
    out.print(f"Tables: {payload['analysis_dir']}")


def _fmt_g(value) -> str:  # not _fmt: that name is the run tables' formatter above
    import math

    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def print_validity(result) -> None:
    """``psytest validity``: the conclusions per scope (and the sentence of each pair that is not
    interpretable), the declared pairs, the dissociation indices, then where the files are."""
    from rich.table import Table

    out = console()
    headline = result.headline()
    for row in headline["conclusions"]:
        said = ", ".join(f"{row[rule['label']]} {rule['label']}" for rule in headline["conclusion_rules"]
                         if row.get(rule["label"]))
        out.print(printable(f"{row['scope']}: of {row['declared']} declared self-report/behaviour pairs, {said}."))
    for row in headline["dissociation"]:
        beyond = (f"; beyond the persona's targets {row['confirmed_incremental']} (dissociation index "
                  f"{_fmt(row['dissociation_incremental'])})" if row.get("confirmed_incremental") is not None else "")
        out.print(
            f"{row['scope']}: {row['confirmed']} of {row['tested']} declared self-report/behaviour "
            f"associations confirmed by r (dissociation index {_fmt(row['dissociation'])}){beyond}."
        )
    scopes = {row["scope"] for row in headline["declared_pairs"]}
    for scope in sorted(scopes):
        table = Table(title=printable(f"{scope}: declared pairs, r across respondents (model x persona)"))
        for column in ("trait", "task", "n", "r", "95% CI", "p BH", "r beyond persona", "p BH ", "conclusion",
                       "r corr."):
            table.add_column(column, justify="left" if column in ("trait", "task", "conclusion") else "right")
        gated: dict[str, str] = {}
        for row in headline["declared_pairs"]:
            if row["scope"] != scope:
                continue
            table.add_row(
                cell(row["trait"]), cell(row["task"]), str(row["n"]), _fmt2(row["r"]),
                f"{_fmt2(row['ci_low'])}..{_fmt2(row['ci_high'])}", _fmt2(row["p_bh_declared"], 3),
                _fmt2(row.get("partial_r")), _fmt2(row.get("p_bh_incremental"), 3), cell(row.get("conclusion") or ""),
                _fmt2(row.get("r_corrected")),
            )
            if row.get("conclusion") == "not interpretable":
                gated[row["trait"]] = row["reason"]
        out.print(table)
        for trait, sentence in gated.items():
            out.print(printable(f"{scope}, {trait}: {sentence}"))
    if headline["conclusion_rules"] and headline["conclusions"]:
        out.print("Conclusions, the first rule that holds:")
        for number, rule in enumerate(headline["conclusion_rules"], 1):
            out.print(f"  {number}. {rule['label']}: {rule['rule']}")
    for note in headline["notes"]:
        out.print(f"note ({note['table']}): {note['note']}")
    out.print(f"Tables and validity.html: {result.out_dir}")


def _fmt2(value, digits: int = 2) -> str:
    import math

    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _scale_label(record: dict) -> str:
    return str(record.get("scale")) + (" (facet)" if record.get("kind") == "facet" else "")


def print_comparison(result) -> None:
    """``psytest compare``: two runs as one fitted table per scale; three or more as a matrix per inventory
    and mode (runs x scales, the difference from the reference, ``*`` beyond noise), so twenty models stay
    readable at 80 columns; then the notes once and the verdict."""
    from psychometrics.cli.tables import print_wrapped

    directories = result.directories or result.runs
    print_wrapped(f"reference: {result.runs[0]} ({directories[0]})")
    if len(result.runs) > 2:
        _print_comparison_matrix(result)
    else:
        _print_comparison_pairs(result)
    for note in dict.fromkeys(result.notes):
        print_wrapped(f"note: {note}")
    print_wrapped("exceeds noise = |diff| > 2 x noise SE (from repeated samples) and the Welch 95% CI excludes 0")
    print_wrapped(result.verdict)


def _print_comparison_pairs(result) -> None:
    from psychometrics.cli.tables import Column, number, print_fitted, print_wrapped, records_of

    columns = [
        Column("inventory", kind="key"), Column("mode", kind="key"), Column("scale", kind="key", fmt=_scale_label),
        Column("mean_ref", "ref"), Column("mean_run", "run"),
        Column("diff", "diff", fmt=lambda r: number(r.get("diff"), signed=True)),
        Column("diff_ci", "diff 95% CI", drop=3, fmt=lambda r: f"{number(r.get('diff_ci_low'), signed=True)}.."
               f"{number(r.get('diff_ci_high'), signed=True)}"),
        Column("hedges_g", "g", drop=2, fmt=lambda r: number(r.get("hedges_g"), 2, signed=True)),
        Column("noise_se", "noise SE", drop=1),
        Column("exceeds_noise", "exceeds", kind="key", fmt=lambda r: "YES" if r.get("exceeds_noise") else "no"),
    ]
    for run, directory in zip(result.runs[1:], (result.directories or result.runs)[1:]):
        part = result.differences[result.differences["run"] == run]
        print_wrapped("")
        print_wrapped(f"{run} ({directory}) vs reference: {int(part['exceeds_noise'].sum())} of {len(part)} "
                      "exceed noise")
        print_fitted("", records_of(part), columns, max_rows=60, where="compare --json or --out DIR")


#: Width of a scale column of the comparison matrix ("+1.23*" and a gap).
_MATRIX_CELL = 8


def _print_comparison_matrix(result) -> None:
    """Per inventory x mode: one row per compared run, one column per scale (as many scales per table as
    fit the width; more tables below for the rest), each cell the difference from the reference."""
    from psychometrics.cli.tables import Column, number, print_fitted, print_wrapped

    width = console().width
    differences = result.differences
    for (inventory, mode), part in differences.groupby(["inventory", "mode"], sort=False):
        scales = list(dict.fromkeys(part["scale"] + part["kind"].map(lambda k: "" if k == "scale" else " (facet)")))
        label = part["scale"] + part["kind"].map(lambda k: "" if k == "scale" else " (facet)")
        cells = {(run, scale): row for run, scale, row in zip(part["run"], label, part.to_dict(orient="records"))}
        per_table = max(1, (width - 24) // _MATRIX_CELL)
        for start in range(0, len(scales), per_table):
            shown = scales[start:start + per_table]
            records = []
            for run in result.runs[1:]:
                record = {"run": run}
                for scale in shown:
                    row = cells.get((run, scale))
                    record[scale] = ("" if row is None else
                                     number(row["diff"], 2, signed=True) + ("*" if row["exceeds_noise"] else " "))
                records.append(record)
            columns = [Column("run", "model", kind="text")] + [
                Column(scale, scale, kind="num", fmt=lambda r, s=scale: r[s]) for scale in shown]
            print_wrapped("")
            more = f", scales {start + 1}-{start + len(shown)} of {len(scales)}" if len(scales) > len(shown) else ""
            print_wrapped(f"{inventory} ({mode}): difference from the reference{more}; * exceeds noise")
            print_fitted("", records, columns, max_rows=len(records), where="compare --json or --out DIR")
    counts = differences.groupby("run", sort=False)["exceeds_noise"].agg(["sum", "size"])
    print_wrapped("")
    for run in result.runs[1:]:
        if run in counts.index:
            print_wrapped(f"{run}: {int(counts.loc[run, 'sum'])} of {int(counts.loc[run, 'size'])} exceed noise")


def print_check(result) -> None:
    """``psytest check``: the scales against the baseline (fitted), the notes once, the verdict."""
    from psychometrics.cli.tables import Column, number, print_fitted, print_wrapped, records_of

    columns = [
        Column("inventory", kind="key"), Column("mode", kind="key"), Column("scale", kind="key", fmt=_scale_label),
        Column("baseline_mean", "baseline"), Column("current_mean", "current"),
        Column("difference", "diff", fmt=lambda r: number(r.get("difference"), signed=True)),
        Column("difference_sd", "diff SD", drop=1, fmt=lambda r: number(r.get("difference_sd"), 2, signed=True)),
        Column("within", "within", kind="key", fmt=lambda r: "yes" if r.get("within") else "NO"),
        Column("reason", kind="note"),
    ]
    rows = records_of(result.rows)
    present = set(result.rows.columns)
    print_fitted("", rows, [c for c in columns if c.key in present], max_rows=60, where="check --json")
    for note in dict.fromkeys(result.notes):
        print_wrapped(f"note: {note}")
    print_wrapped(result.verdict)


def print_lines(text: str) -> None:
    """Plain text (a result's summary), each line wrapped at the console's width, repeated lines once."""
    from psychometrics.cli.tables import print_wrapped

    seen: set[str] = set()
    for line in str(text).split("\n"):
        if line.startswith("note: ") and line in seen:
            continue
        seen.add(line)
        print_wrapped(line, indent="  ")


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def money(value: float | None, currency: str = "USD") -> str:
    """An amount for a terminal (:func:`psychometrics.cost.prices.format_money`)."""
    from psychometrics.cost.prices import format_money

    return format_money(value, currency)


def _cost_span(span) -> str:
    if span is None:
        return "unknown"
    low, high = span
    return money(low) if abs(high - low) <= 0.005 * max(high, 1e-12) else f"{money(low)}-{money(high)}"


def print_costs(estimates: list[dict], title: str | None = None) -> None:
    """The cost table a paying user reads first: per model the requests to send, input tokens (of which
    served from the provider's prompt cache), output tokens at most, the input and output cost and the
    total (an upper bound: output counted at max_tokens); a total row for several models; then per
    model its prices and how each number was made."""
    from psychometrics.cli.tables import Column, print_fitted, print_wrapped

    rows = list(estimates)
    known = [e["cost"] for e in estimates if e["cost"] is not None]
    total = None if len(known) < len(estimates) else sum(known)
    if title is None:
        batch = ", batch prices" if any(e.get("batch") for e in estimates) else ""
        title = (f"Estimated cost: up to {money(total)} (USD{batch}) for "
                 f"{sum(e['requests'] for e in estimates):,} requests")
    if total is None:
        unknown = [e["model"] for e in estimates if e["cost"] is None]
        title = (f"Estimated cost: UNKNOWN for {', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''} (no "
                 f"price); up to {money(sum(known))} (USD) for the {len(known)} priced model(s)")
    if len(estimates) > 1:
        def add(key):
            values = [e.get(key) for e in estimates]
            return None if any(v is None for v in values) else sum(values)

        rows.append({"model": "total", **{key: add(key) for key in (
            "requests", "input_tokens", "cached_input_tokens", "output_tokens_max", "input_cost", "output_cost_max",
            "cost")}})
    print_fitted(title, rows, [
        Column("model", kind="text"), Column("requests", fmt=lambda r: f"{r['requests']:,}"),
        Column("input_tokens", "input tokens", fmt=lambda r: f"{r['input_tokens']:,}"),
        Column("cached_input_tokens", "cached", drop=2, fmt=lambda r: f"{r['cached_input_tokens']:,}"),
        Column("output_tokens_max", "output (max)", drop=3, fmt=lambda r: f"{r['output_tokens_max']:,}"),
        Column("input_cost", "input $", drop=1, fmt=lambda r: money(r.get("input_cost"))),
        Column("output_cost_max", "output $", drop=1, fmt=lambda r: money(r.get("output_cost_max"))),
        Column("cost", "cost", fmt=lambda r: money(r["cost"])),
    ], max_rows=200)
    for e in estimates:
        if e["cost"] is None:
            print_wrapped(f"{e['model']}: price unknown (not in litellm's price map): give --prices FILE.yaml with "
                          "its input and output prices per 1M tokens; it is not counted as free", indent="  ")
            continue
        if e["cost"] == 0 and e["price"]["input_per_million"] == 0:
            print_wrapped(f"{e['model']}: {e['price']['source']}", indent="  ")
            continue
        saving = f"; caching saves about {money(e['caching_saving'])}" if e.get("caching_saving") else ""
        print_wrapped(f"{e['model']}: {e['price']['described']} ({e['price']['source']}); tokens: "
                      f"{e['token_basis']}{'' if 'max_tokens' in e['token_basis'] else '; output at most max_tokens per request'}; "
                      f"cache: {e['cache_basis']}{saving}; "
                      f"{e['batch_basis']}", indent="  ")


def print_factor_costs(estimate: dict) -> None:
    """What each design factor costs: its levels and the cost of one level (what dropping one saves)."""
    from psychometrics.cli.tables import Column, print_fitted
    from psychometrics.cost.estimate import factor_costs
    from psychometrics.design.breakdown import short_names

    rows = factor_costs(estimate)
    if not rows or estimate.get("cost") is None or not estimate["cost"]:
        return
    print_fitted("Cost per design factor (one level of a factor: what dropping it saves)", rows, [
        Column("factor", kind="key"), Column("levels", kind="key", fmt=lambda r: str(r["levels"])),
        Column("cost_per_level", "cost per level", fmt=lambda r: _cost_span(r["cost_per_level"])),
        Column("requests_per_level", "requests per level", drop=2,
               fmt=lambda r: f"{r['requests_per_level'][0]:,}" if r["requests_per_level"][0] == r["requests_per_level"][1]
               else f"{r['requests_per_level'][0]:,}-{r['requests_per_level'][1]:,}"),
        Column("names", "level names", kind="text", drop=1, fmt=lambda r: short_names(r["names"])),
    ], max_rows=100)


def print_plan(plan: dict) -> None:
    """``administer --dry-run``: the cost first (what a paying user needs before anything else), the cost
    per design factor, then every factor with its levels, the product per inventory, tokens and time."""
    from psychometrics.cli.tables import Column, print_fitted, print_wrapped
    from psychometrics.design.breakdown import short_names

    def levels(row: dict) -> str:
        value = row["levels"]
        return ", ".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, dict) else str(value)

    cost = plan.get("cost")
    free = cost is not None and cost["cost"] == 0 and (cost["price"] or {}).get("input_per_million") == 0
    if cost is not None and not free:  # a paying user reads the money first
        print_costs([cost])
        print_max_cost(plan)
        print_factor_costs(cost)
    print_fitted(f"Plan (nothing is sent): {plan['requests_planned']:,} requests", plan["factors"], [
        Column("factor", kind="key"), Column("levels", kind="key", fmt=levels),
        Column("names", "level names", kind="text",
               fmt=lambda r: short_names(r["names"]) + (f" ({r['note']})" if r.get("note") else "")),
    ], max_rows=100)
    for row in plan["inventories"]:
        print_wrapped(f"{row['inventory']}: {row['formula']}; to send {row['to_send']:,}", indent="  ")
    if plan.get("extension"):
        grown = plan["extension"]
        changes = [f"{key} {_level_text(c['from'])} -> {_level_text(c['to'])}" for key, c in grown["changed"].items()]
        changes += [f"inventory {name} added" for name in grown["inventories_added"]]
        print_wrapped(f"The run grows ({'; '.join(changes)}): {grown['requests_added']:,} requests added to its "
                      f"{grown['requests_before']:,}.")
    reused = f", {plan['to_reuse']:,} reused from other runs (--reuse)" if "to_reuse" in plan else ""
    tokens = (f"{cost['input_tokens']:,} input tokens ({cost['token_basis']})" if cost is not None else
              f"about {plan['estimated_input_tokens']:,} input tokens ({plan['token_basis']})")
    output = cost["output_tokens_max"] if cost is not None else plan["estimated_output_tokens_max"]
    print_wrapped(f"total: {plan['requests_planned']:,} requests planned, {plan['already_answered']:,} already "
                  f"answered{reused}, {plan['to_send']:,} to send; {tokens} and at most {output:,} output tokens",
                  indent="  ")
    _print_time(plan.get("time"))
    if free:
        print_wrapped(f"cost: none ({cost['price']['source']})", indent="  ")
    print_wrapped("Nothing was sent.")


def _level_text(value: object) -> str:
    """A design option's value in a sentence: a list as a comma list (made inert for the terminal)."""
    from psychometrics.textsafe import printable

    if isinstance(value, list):
        return ",".join(_level_text(v) for v in value) or "(none)"
    return printable(f"{value:g}" if isinstance(value, float) else str(value), keep="")[:80]
def print_max_cost(plan: dict) -> None:
    """Under the cost table of a dry run: whether ``--max-cost`` would let the run start."""
    from psychometrics.cli.tables import print_wrapped

    limit = plan.get("max_cost")
    if limit is None:
        return
    cost = plan["cost"]["cost"]
    if cost is None:
        print_wrapped(f"--max-cost {money(limit)}: a real run would refuse to start (the price is unknown)", indent="  ")
    elif cost > limit:
        print_wrapped(f"--max-cost {money(limit)}: a real run would refuse to start (estimate {money(cost)})", indent="  ")
    else:
        print_wrapped(f"--max-cost {money(limit)}: within it", indent="  ")


def print_cost_line(estimate: dict) -> None:
    """One line at the start of a real run: what the requests to send will cost, at most."""
    from psychometrics.cli.tables import print_wrapped

    if estimate["cost"] == 0 and estimate["price"] and estimate["price"]["input_per_million"] == 0:
        return
    batch = " (batch prices)" if estimate.get("batch") and "batch prices" in estimate["batch_basis"] else ""
    print_wrapped(f"Estimated cost: up to {money(estimate['cost'])}{batch} for {estimate['requests']:,} requests to "
                  f"{estimate['model']} ({estimate['input_tokens']:,} input tokens, {estimate['cached_input_tokens']:,} "
                  f"of them cached; at most {estimate['output_tokens_max']:,} output tokens)"
                  + ("" if estimate["cost"] is not None else "; give --prices FILE.yaml to price it"))


def _print_time(time: dict | None) -> None:
    from psychometrics.cli.tables import print_wrapped

    if not time:
        return
    if time.get("seconds") is None:
        print_wrapped(f"time: no estimate ({time['basis']})", indent="  ")
    else:
        print_wrapped(f"time: about {duration(time['seconds'])} (an estimate, {time['basis']})", indent="  ")


def print_behavior_plan(plan: dict) -> None:
    """``behave --dry-run``: tasks, variants, personas and samples, conversations, tokens and time."""
    from psychometrics.cli.tables import Column, print_fitted, print_wrapped
    from psychometrics.design.breakdown import short_names

    cost = plan.get("cost")
    if cost is not None and not (cost["cost"] == 0 and (cost["price"] or {}).get("input_per_million") == 0):
        print_costs([cost])
    print_fitted(f"Plan (nothing is sent): {plan['conversations_planned']:,} conversations", plan["factors"], [
        Column("factor", kind="key"), Column("levels", kind="key"),
        Column("names", "level names", kind="text",
               fmt=lambda r: short_names(r["names"]) + (f" ({r['note']})" if r.get("note") else "")),
    ], max_rows=100)
    print_wrapped(plan["formula"], indent="  ")
    print_wrapped(f"total: {plan['conversations_planned']:,} conversations planned, {plan['already_answered']:,} "
                  f"already answered, {plan['to_send']:,} to send ({plan['turns_to_send']:,} turns); about "
                  f"{plan['estimated_input_tokens']:,} input tokens and at most "
                  f"{plan['estimated_output_tokens_max']:,} output tokens (estimated: {plan['token_basis']})",
                  indent="  ")
    _print_time(plan.get("time"))
    print_wrapped("Nothing was sent.")
