"""What a study is made of: ``psytest inventories list|show|validate``, ``templates`` and ``personas list|show``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from psychometrics.cli.common import JsonFlag
from psychometrics.cli.terminal import echo, echo_error, print_json
from psychometrics.errors import PsytestError

inventories_app = typer.Typer(
    help="List, show and validate personality inventories.", no_args_is_help=True, rich_markup_mode=None
)
personas_app = typer.Typer(help="List and show persona sets.", no_args_is_help=True, rich_markup_mode=None)


@inventories_app.command("list")
def inventories_list(as_json: JsonFlag = False) -> None:
    """List the shipped inventories."""
    from psychometrics import api

    summaries = [inv.summary() for inv in api.list_inventories()]
    if as_json:
        print_json(summaries)
        return
    from psychometrics.cli.terminal import print_inventory_list

    print_inventory_list(summaries)


def _inventory_record(inv) -> dict:
    """Everything ``inventories show --json`` prints about an inventory."""
    return {
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


@inventories_app.command("show")
def inventories_show(
    name: Annotated[str, typer.Argument(help="A shipped inventory name (see 'list') or a path to a YAML file.")],
    as_json: JsonFlag = False,
) -> None:
    """Show an inventory: metadata, scales, facets, norms and every item."""
    from psychometrics import api

    inv = api.get_inventory(name)
    if as_json:
        print_json(_inventory_record(inv))
        return
    from psychometrics.cli.terminal import print_inventory

    print_inventory(inv)


@inventories_app.command("validate")
def inventories_validate(
    paths: Annotated[list[Path], typer.Argument(help="One or more inventory YAML files.")],
) -> None:
    """Validate inventory files: structure, keys, scale membership, response range, norms."""
    from psychometrics import api

    failed = 0
    for path in paths:
        try:
            inv = api.validate_inventory(path)
        except PsytestError as exc:
            failed += 1
            echo_error(exc)
            continue
        echo(
            f"{path}: ok ({inv.id}: {len(inv.items)} items, "
            f"{sum(i.reverse_keyed for i in inv.items)} reverse-keyed, {len(inv.scales)} scales, "
            f"{len(inv.facets)} facets)"
        )
    if failed:
        raise typer.Exit(2)  # an input error, each already printed on its own line


def templates(
    inventory: Annotated[str, typer.Option("--inventory", "-i", help="Inventory used for the example.")] = "mini-ipip",
    as_json: JsonFlag = False,
) -> None:
    """List the instruction templates, each with the prompt it renders for a first item."""
    from psychometrics import api

    rendered = api.render_templates(inventory)
    if as_json:
        print_json([
            {"id": t.id, "label_style": t.label_style,
             "messages": [{"role": m.role, "content": m.content} for m in t.prompt.messages],
             "choices": list(t.prompt.choices)}
            for t in rendered
        ])
        return
    for t in rendered:
        echo(f"== {t.id} (labels: {t.label_style})")
        for message in t.prompt.messages:
            echo(f"[{message.role}]\n{message.content}")
        echo("")


@personas_app.command("list")
def personas_list(as_json: JsonFlag = False) -> None:
    """List the shipped persona sets."""
    from psychometrics import api

    rows = [{"id": s.id, "name": s.name, "personas": len(s.personas), "description": s.description}
            for s in api.list_persona_sets()]
    if as_json:
        print_json(rows)
        return
    from psychometrics.cli.tables import Column, print_fitted

    print_fitted("Persona sets", rows, [Column("id", kind="key"), Column("personas"),
                                        Column("description", kind="text")], max_rows=1000)


@personas_app.command("show")
def personas_show(
    name: Annotated[str, typer.Argument(help="A shipped persona set or a path to a YAML file.")],
    as_json: JsonFlag = False,
) -> None:
    """Show every persona of a set with its trait targets."""
    from psychometrics import api

    persona_set = api.get_persona_set(name)
    if as_json:
        print_json(persona_set.model_dump(mode="json"))
        return
    from psychometrics.cli.tables import print_wrapped

    # Prose wrapped at the terminal's width, one block per persona: the id and targets, then the text
    # indented under them (a multi-trait persona has eight targets and 80 words: one line would not do).
    print_wrapped(f"{persona_set.name} ({persona_set.id}): {len(persona_set.personas)} personas")
    if persona_set.description:
        print_wrapped(persona_set.description)
    for persona in persona_set.personas:
        targets = ", ".join(f"{k} {v:+d}" for k, v in persona.targets.items()) or "no targets"
        echo("")
        print_wrapped(f"- {persona.id} [{targets}]", indent="    ")
        print_wrapped(f"  {persona.text}", indent="  ")


def register(app: typer.Typer) -> None:
    """Add ``inventories``, ``templates`` and ``personas`` to the main app (in the order ``--help`` lists them)."""
    app.add_typer(inventories_app, name="inventories")
    app.add_typer(personas_app, name="personas")
    app.command()(templates)
