"""The terminal output at 80 columns: numbers never cut, lines within the width, rows bounded, notes once,
and at 200 columns nothing left out; the dry run's plan per factor; every option's default in --help."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

NUMBER = re.compile(r"^[+-]?(\d+(\.\d+)?|inf)(\.\.[+-]?(\d+(\.\d+)?|inf|-))?$")


def _run(argv, columns: int, check: bool = True) -> str:
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1"}
    result = subprocess.run([sys.executable, "-m", "psychometrics", *argv], capture_output=True, env=env, timeout=600)
    if check:
        assert result.returncode in (0, 1), result.stderr.decode()
    return result.stdout.decode("utf-8")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two small simulated runs whose reliabilities carry many notes (3 respondents for 4-9 items)."""
    root = tmp_path_factory.mktemp("width")
    common = ["-i", "mini-ipip", "-i", "sd3", "--option-orders", "original,reversed", "--templates",
              "numbered,lettered", "--samples", "2", "--temperature", "0.7", "--personas", "trait-shaping",
              "--persona-ids", "baseline,extraversion-very-high,extraversion-very-low", "--mode", "both"]
    for name, model in (("a", "sim/e=1,seed=1"), ("b", "sim/e=0,seed=1")):
        _run(["administer", "-m", model, *common, "--out", str(root / name), "--json"], 80)
    _run(["baseline", str(root / "a"), "--out", str(root / "base.json")], 80)
    return root


def _commands(root):
    return [
        ["score", str(root / "a"), "--by", "persona,mode"],
        ["score", str(root / "a")],
        ["compare", str(root / "a"), str(root / "b")],
        ["check", str(root / "b"), "--baseline", str(root / "base.json"), "--unit", "raw"],
        ["reproduce", str(root / "a")],
        ["inventories", "list"], ["tasks", "list"], ["personas", "list"], ["inventories", "show", "sd3"],
        ["administer", "-m", "sim/e=1", "-i", "mini-ipip", "-i", "sd3", "--option-orders",
         "original,reversed,latin-square", "--personas", "trait-shaping", "--dry-run"],
    ]


def _cells(line: str) -> list[str]:
    return [c for c in re.split(r"\s{2,}", line.strip()) if c]


def test_every_table_fits_80_columns_with_whole_numbers(runs):
    for argv in _commands(runs):
        out = _run(argv, 80)
        lines = out.splitlines()
        assert lines, argv
        assert max(len(line) for line in lines) <= 80, (argv, max(lines, key=len))
        assert "…" not in out, argv  # nothing elided, numbers least of all
        assert len(lines) <= 400, (argv, len(lines))  # bounded, whatever the number of groups (26 tasks listed whole: 319)
        notes = [line for line in lines if line.startswith("note: ")]
        assert len(notes) == len(set(notes)), argv  # each note printed once


def test_numbers_shown_at_80_are_the_csv_values(runs):
    import pandas as pd

    out = _run(["score", str(runs / "a")], 80)
    summary = pd.read_csv(runs / "a" / "analysis" / "reliability.csv")
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Reliability"))
    header = _cells(lines[start + 1])
    # the design cell's columns (option order and template vary here) come before the scale
    assert header[:5] == ["inventory", "mode", "option_order", "template", "scale"] and header[5:7] == ["n", "alpha"]
    shown = [_cells(line) for line in lines[start + 2:]]
    rows = [c for c in shown if len(c) >= 7 and c[0] in ("mini-ipip", "sd3") and c[1] in ("text", "probs")
            and c[5].isdigit() and (NUMBER.match(c[6]) or c[6] == "-")]
    assert len(summary) == (5 + 3) * 4 * 2  # scales x design cells x modes: one row per cell
    assert len(rows) == min(len(summary), 40)  # the terminal shows the first 40 rows
    for cells in rows:
        row = summary[(summary["inventory"] == cells[0]) & (summary["mode"] == cells[1])
                      & (summary["option_order"] == cells[2]) & (summary["template"] == cells[3])
                      & (summary["scale"] == cells[4])]
        assert len(row) == 1 and int(cells[5]) == row["n_respondents"].iloc[0] == 6
        alpha = row["alpha"].iloc[0]
        assert cells[6] == ("-" if pd.isna(alpha) else f"{alpha:.3f}")


def test_at_200_columns_nothing_is_left_out(runs):
    for argv in _commands(runs)[:4]:
        out = _run(argv, 200)
        assert "left out at this width" not in out, argv
        assert "…" not in out
    wide = _run(["score", str(runs / "a")], 200)
    assert "omega_h" in wide and "split-half" in wide
    narrow = _run(["score", str(runs / "a")], 80)
    assert "left out at this width: " in narrow and "reliability.csv" in narrow


def test_rows_are_bounded_and_say_where_the_rest_is(tmp_path):
    """A table longer than the bound shows its first rows and a line naming how many more and where."""
    from psychometrics.cli.tables import Column, fitted

    records = [{"scale": f"s{i}", "value": i / 7} for i in range(500)]
    table, lines = fitted("t", records, [Column("scale", kind="key"), Column("value")], width=80, where="x.csv")
    assert table.row_count == 40
    assert "... 460 more rows (x.csv)" in lines


def test_notes_are_footnotes_printed_once():
    """A note shared by many rows is printed once; a row carrying several points to each; '; ' inside
    parentheses stays in its note."""
    from psychometrics.cli.tables import Column, fitted

    shared = "too few respondents (3 for 4 items; add samples)"
    records = [{"scale": f"s{i}", "alpha": 0.5, "note": f"{shared}; constant item q{i % 2}"} for i in range(30)]
    _, lines = fitted("t", records, [Column("scale", kind="key"), Column("alpha"), Column("note", kind="note")],
                      width=80)
    assert lines == [f"[1] {shared}", "[2] constant item q0", "[3] constant item q1"]


def test_dry_run_plan_per_factor():
    argv = ["administer", "-m", "sim/e=1", "-i", "mini-ipip", "-i", "sd3", "--option-orders",
            "original,reversed,latin-square", "--templates", "numbered,lettered", "--samples", "2", "--mode", "both",
            "--dry-run"]
    plan = json.loads(_run([*argv, "--json"], 80))
    factors = {f["factor"]: f for f in plan["factors"]}
    # 5 options: the Williams square has 10 rows (odd K adds the mirrored ones), none equal to original/reversed
    assert factors["option_order"]["levels"] == 12 and "latin-square: 10 orders for 5 options" in factors["option_order"]["note"]
    assert factors["template"]["levels"] == 2 and factors["mode"]["levels"] == 2 and factors["sample"]["levels"] == 2
    per = {row["inventory"]: row for row in plan["inventories"]}
    assert per["mini-ipip"]["requests"] == 20 * 12 * 2 * 2 * 2 and per["sd3"]["requests"] == 27 * 12 * 2 * 2 * 2
    assert plan["requests_planned"] == sum(r["requests"] for r in plan["inventories"]) == plan["to_send"]
    assert plan["estimated_input_tokens"] == sum(r["input_tokens"] for r in plan["inventories"]) > 0
    assert "characters" in plan["token_basis"] and plan["time"]["seconds"] is None
    text = _run(argv, 80)
    assert "latin-square: 10 orders" in text and f"{plan['requests_planned']:,} requests" in text
    assert "20 items x 12 option orders x 2 templates" in text


def test_every_option_shows_its_default():
    import typer.main

    from psychometrics.cli import app

    def walk(command, path):
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])
        if not hasattr(command, "commands"):
            yield path, command

    missing = []
    for path, command in walk(typer.main.get_command(app), []):
        for param in command.params:
            if param.param_type_name != "option" or param.name == "help" or (param.is_flag and not param.secondary_opts):
                continue
            if not (isinstance(param.show_default, str) or (param.show_default is not False and param.default is not None)):
                missing.append(f"{' '.join(path)} {param.opts[0]}")
    assert not missing
    help_text = " ".join(_run(["administer", "--help"], 200).split())
    for shown in ("[default: (original)]", "[default: (numbered)]", "[default: (text)]", "[default: (missing)]"):
        assert shown in help_text


def test_shown_design_defaults_are_the_designs():
    """The defaults --help states for design options are the Design's own (they are written out there so
    that --help does not import pydantic)."""
    import typer.main

    from psychometrics.cli import app
    from psychometrics.design.plan import Design

    command = typer.main.get_command(app).commands["administer"]
    shown = {p.name: p.show_default for p in command.params}
    design = Design()
    assert shown["option_orders"] == ",".join(design.option_orders)
    assert shown["templates"] == ",".join(design.templates)
    assert shown["mode"] == ",".join(design.modes)
    assert shown["paraphrases"] == design.paraphrases and shown["invalid"] == design.invalid
    assert float(shown["temperature"]) == design.temperature and int(shown["samples"]) == design.samples
    assert int(shown["seed"]) == design.seed and int(shown["items_per_request"]) == design.items_per_request
