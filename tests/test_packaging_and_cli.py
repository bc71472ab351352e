"""The package as a user meets it: an installed wheel finds its inventories; the CLI starts and answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from psychometrics.testing.waiting import HANG_GUARD_S

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "psychometrics", *args],
        capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=cwd, env=env,
    )


@pytest.fixture(scope="module")
def unpacked_wheel(tmp_path_factory) -> Path:
    """Build the wheel from this checkout and unpack it, as pip would install it."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=HANG_GUARD_S,
    )
    (wheel,) = out.glob("psytest-*.whl")
    site = out / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def test_wheel_carries_every_inventory(unpacked_wheel):
    shipped = sorted(p.name for p in (unpacked_wheel / "psychometrics" / "_inventories").glob("*.yaml"))
    assert shipped == sorted(p.name for p in (ROOT / "inventories").glob("*.yaml"))
    entry_points = next(unpacked_wheel.glob("psytest-*.dist-info")) / "entry_points.txt"
    assert "psytest = psychometrics.cli:main" in entry_points.read_text()


def test_installed_package_finds_its_inventories_outside_the_checkout(unpacked_wheel, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(unpacked_wheel)}
    probe = (
        "import psychometrics, json; from psychometrics.inventories.library import inventory_dir, load_all_shipped;"
        "print(json.dumps([psychometrics.__file__, str(inventory_dir()), len(load_all_shipped())]))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    module_file, directory, count = json.loads(result.stdout)
    assert module_file.startswith(str(unpacked_wheel))
    assert directory == str(unpacked_wheel / "psychometrics" / "_inventories")
    assert count == 8
    listed = run_cli("inventories", "list", "--json", cwd=tmp_path, env=env)
    assert [s["id"] for s in json.loads(listed.stdout)][:2] == ["bfi-2", "bfi-44"]


def test_version_and_help():
    from psychometrics import __version__

    assert run_cli("--version").stdout.strip() == f"psytest {__version__}"
    help_text = run_cli("--help").stdout
    assert "inventories" in help_text and "Usage:" in help_text


def test_help_does_not_import_heavy_libraries():
    """Start-up stays instant: --help loads none of the heavy libraries."""
    probe = (
        "import sys; from psychometrics.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('numpy', 'pandas', 'litellm', 'llama_cpp', 'pydantic', 'yaml', 'rich') if m in sys.modules]\n"
        "print('HEAVY:' + ','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "HEAVY:"


def test_list_json():
    summaries = json.loads(run_cli("inventories", "list", "--json").stdout)
    by_id = {s["id"]: s for s in summaries}
    assert by_id["ipip-neo-120"]["items"] == 120 and by_id["ipip-neo-120"]["facets"] == 30
    assert by_id["sd3"]["scales"] == ["M", "N", "P"]


def test_show_json_lists_every_item_with_its_fields():
    payload = json.loads(run_cli("inventories", "show", "mini-ipip", "--json").stdout)
    assert len(payload["items"]) == 20
    first = payload["items"][0]
    assert set(first) == {"id", "text", "scale", "facet", "reverse_keyed", "paraphrases"}
    assert first["text"] == "Am the life of the party." and first["scale"] == "E"
    assert payload["response_scale"]["labels"]["5"] == "Very accurate"


def test_show_accepts_a_user_file():
    path = ROOT / "tests" / "data" / "inventories" / "valid-minimal.yaml"
    payload = json.loads(run_cli("inventories", "show", str(path), "--json").stdout)
    assert payload["id"] == "tiny"
    assert [i["facet"] for i in payload["items"]] == ["E1", "E1", None, None, None]


def test_show_human_readable_output():
    result = run_cli("inventories", "show", "bfi-44")
    assert result.returncode == 0
    assert "I see myself as someone who..." in result.stdout and "Is talkative." in result.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (("inventories", "show", "nope"), "unknown inventory 'nope'; choose one of:"),
        (("inventories", "list", "--jsn"), "No such option: --jsn"),
        (("inventories", "frobnicate"), "No such command 'frobnicate'"),
        (("inventories", "show", "missing/file.yaml"), "missing/file.yaml: no such inventory file"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, expected):
    result = run_cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert expected in result.stderr
