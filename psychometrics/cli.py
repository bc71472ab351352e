"""The ``psytest`` command line.

Commands are thin: they parse options, call the library and print. Anything heavy is imported inside
the command that needs it, so ``psytest --help`` and ``psytest --version`` start instantly. Errors the
user can fix (:class:`~psychometrics.errors.PsytestError`, and click's usage errors) are printed as one
line on stderr with exit code 2 and no traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from psychometrics import __version__
from psychometrics.errors import PsytestError

app = typer.Typer(
    name="psytest",
    help="Measure the personality an LLM presents, with the rigour of a psychometrics lab.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
inventories_app = typer.Typer(
    help="List, show and validate personality inventories.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(inventories_app, name="inventories")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"psytest {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Measure the personality an LLM presents, with the rigour of a psychometrics lab."""


def _print_json(payload: object) -> None:
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))


# ---------------------------------------------------------------------------------------------------
# inventories


@inventories_app.command("list")
def inventories_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List the shipped inventories."""
    from psychometrics.library import load_all_shipped

    summaries = [inv.summary() for inv in load_all_shipped()]
    if as_json:
        _print_json(summaries)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Shipped inventories")
    table.add_column("id", no_wrap=True)
    for column in ("items", "reversed"):
        table.add_column(column, justify="right")
    table.add_column("scales")
    for column in ("facets", "paraphrased", "norm groups"):
        table.add_column(column, justify="right")
    table.add_column("name")
    for s in summaries:
        table.add_row(
            s["id"],
            str(s["items"]),
            str(s["reverse_keyed"]),
            " ".join(s["scales"]),
            str(s["facets"]),
            str(s["paraphrased_items"]),
            str(s["norm_groups"]),
            s["name"],
        )
    Console().print(table)


@inventories_app.command("show")
def inventories_show(
    name: Annotated[str, typer.Argument(help="A shipped inventory name (see 'list') or a path to a YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show an inventory: metadata, scales, facets, norms and every item."""
    from psychometrics.library import resolve_inventory

    inv = resolve_inventory(name)
    if as_json:
        payload = {
            **{k: v for k, v in inv.summary().items() if k not in ("scales",)},
            "description": inv.description,
            "citation": inv.citation,
            "url": inv.url,
            "instructions": inv.instructions,
            "stem": inv.stem,
            "content_hash": inv.content_hash,
            "response_scale": inv.response_scale.model_dump(mode="json"),
            "scales": [s.model_dump(mode="json") for s in inv.scales],
            "facets": [f.model_dump(mode="json") for f in inv.facets],
            "norms": [n.model_dump(mode="json", exclude_none=True) for n in inv.norms],
            "items": inv.item_records(),
        }
        _print_json(payload)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{inv.name}[/bold] ({inv.id}, version {inv.version})", highlight=False)
    if inv.description:
        console.print(inv.description, highlight=False)
    console.print(f"Citation: {inv.citation}", highlight=False)
    console.print(f"Licence: {inv.licence}", highlight=False)
    if inv.stem:
        console.print(f"Stem: {inv.stem}", highlight=False)
    rs = inv.response_scale
    console.print(
        "Responses: " + ", ".join(f"{v} {rs.labels[v]}" for v in rs.values), highlight=False
    )
    scales = Table(title="Scales")
    for column in ("id", "name", "trait", "scoring", "items", "reversed"):
        scales.add_column(column)
    for s in inv.scales:
        reversed_count = sum(inv.item_by_id[i].reverse_keyed for i in s.items)
        trait = (("-" if s.trait_sign < 0 else "") + s.trait) if s.trait else ""
        scales.add_row(s.id, s.name, trait, s.scoring, str(len(s.items)), str(reversed_count))
    console.print(scales)
    if inv.norms:
        console.print(
            f"Norms: {len(inv.norms)} group(s): " + "; ".join(n.group for n in inv.norms), highlight=False
        )
    items = Table(title="Items")
    for column in ("id", "text", "scale", "facet", "R", "paraphrases"):
        items.add_column(column)
    for record in inv.item_records():
        items.add_row(
            record["id"],
            record["text"],
            record["scale"] or "",
            record["facet"] or "",
            "R" if record["reverse_keyed"] else "",
            str(len(record["paraphrases"])),
        )
    console.print(items)


@inventories_app.command("validate")
def inventories_validate(
    paths: Annotated[list[Path], typer.Argument(help="One or more inventory YAML files.")],
) -> None:
    """Validate inventory files: structure, keys, scale membership, response range, norms."""
    from psychometrics.inventory import load_inventory

    failed = 0
    for path in paths:
        try:
            inv = load_inventory(path)
        except PsytestError as exc:
            failed += 1
            typer.echo(f"psytest: error: {exc}", err=True)
            continue
        typer.echo(
            f"{path}: ok ({inv.id}: {len(inv.items)} items, "
            f"{sum(i.reverse_keyed for i in inv.items)} reverse-keyed, {len(inv.scales)} scales, "
            f"{len(inv.facets)} facets)"
        )
    if failed:
        raise typer.Exit(2)


# ---------------------------------------------------------------------------------------------------
# entry point


def _click_exceptions():
    """click's exception classes as typer uses them (typer >= 0.29 vendors click as ``typer._click``)."""
    try:
        from typer._click import exceptions
    except ImportError:  # older typer depends on click itself
        from click import exceptions
    return exceptions


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors become one line on stderr and exit code 2."""
    click_exceptions = _click_exceptions()
    try:
        result = app(args=argv, prog_name="psytest", standalone_mode=False)
    except PsytestError as exc:
        typer.echo(f"psytest: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click_exceptions.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "psytest"
        typer.echo(f"psytest: error: {exc.format_message()} (see '{command} --help')", err=True)
        sys.exit(2)
    except click_exceptions.Abort:
        typer.echo("psytest: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("psytest: interrupted", err=True)
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
