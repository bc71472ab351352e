"""What a run shows in the terminal: a live progress bar and the closing summary tables."""

from __future__ import annotations


class RunProgress:
    """A rich progress bar on stderr: done/total, items/s, ETA and failures."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.failures = 0
        self.progress = Progress(
            TextColumn("[bold]administering"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} items/s"),
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
        import time

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
        if self.task is not None:
            task = self.progress.tasks[0]
            if task.completed < (task.total or 0):
                # Requests answered in an earlier run: show them as done.
                self.progress.update(self.task, completed=task.total)
        self.progress.stop()


def print_run_summary(payload: dict, summary) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(payload["outcomes"].items())) or "none"
    console.print(
        f"Run {payload['run_dir']}: {payload['requests_planned']} requests planned, "
        f"{payload['already_answered']} already answered, {payload['sent']} sent "
        f"({payload['items_per_second']} items/s), {payload['failed']} failed; outcomes: {outcomes}",
        highlight=False,
    )
    table = Table(title="Scale scores over design cells")
    for column in ("inventory", "mode", "scale", "mean", "sd", "scored/cells"):
        table.add_column(column, justify="right" if column in ("mean", "sd", "scored/cells") else "left")
    for record in summary.to_dict(orient="records"):
        sd = record["sd"]
        table.add_row(
            record["inventory"], record["mode"], record["scale"],
            "-" if record["mean"] != record["mean"] else f"{record['mean']:.2f}",
            "-" if sd != sd else f"{sd:.2f}",
            f"{record['scored']}/{record['respondents']}",
        )
    console.print(table)
