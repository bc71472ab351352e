"""The shipped inventory library, and resolution of an inventory argument (a name or a path).

Installed from a wheel, the inventories sit inside the package (``psychometrics/_inventories``); in a
source checkout or an editable install they are the repository's top-level ``inventories/``. Every
place that accepts an inventory name also accepts a path to the user's own YAML file.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from psychometrics.errors import PsytestError
from psychometrics.inventories.model import Inventory, load_inventory

_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the psychometrics package


def inventory_dir() -> Path:
    """The directory of shipped inventories, installed or in a checkout."""
    for candidate in (_PACKAGE_DIR / "_inventories", _PACKAGE_DIR.parent / "inventories"):
        if candidate.is_dir():
            return candidate
    raise PsytestError(
        f"no shipped inventories found next to {_PACKAGE_DIR}; reinstall psytest (pip install --force-reinstall psytest)"
    )


def shipped_names() -> list[str]:
    """Names of the shipped inventories (file stems), sorted."""
    return sorted(path.stem for path in inventory_dir().glob("*.yaml"))


@lru_cache(maxsize=64)
def _load_cached(path: str, mtime_ns: int) -> Inventory:
    return load_inventory(Path(path))


def resolve_inventory(name_or_path: str) -> Inventory:
    """Load a shipped inventory by name (``mini-ipip``) or a user's inventory file by path."""
    candidate = Path(name_or_path).expanduser()
    looks_like_path = candidate.suffix in (".yaml", ".yml") or "/" in name_or_path or "\\" in name_or_path
    if looks_like_path:
        if not candidate.is_file():
            raise PsytestError(f"{name_or_path}: no such inventory file; check the path")
        path = candidate
    else:
        path = inventory_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(shipped_names())
            raise PsytestError(
                f"unknown inventory '{name_or_path}'; choose one of: {known} (or give a path to a YAML file)"
            )
    resolved = path.resolve()
    return _load_cached(str(resolved), resolved.stat().st_mtime_ns)


def load_all_shipped() -> list[Inventory]:
    """Every shipped inventory, loaded and validated."""
    return [resolve_inventory(name) for name in shipped_names()]
