"""Where psytest writes: directories it owns, files written whole, and what each set of derived files came from.

* **Ownership.** psytest writes into a directory only if it is new, empty, or already a psytest
  directory of the same kind: a run directory has psytest's ``manifest.json``; a directory of derived
  files (tables, a report, a comparison, validity tables) has its provenance record,
  :data:`PROVENANCE`, naming its kind. The default places inside a run directory (``RUN/analysis``,
  ``RUN/report``, ``RUN/validity``) are psytest's too. Anything else is refused with one line, so
  ``--out`` pointing at a folder of someone's files never overwrites them. An output *file*
  (``baseline --out``, ``export --csv``) is replaced only if psytest wrote it.
* **Whole files.** Every file is written to a temporary file beside it and renamed over the target
  (:func:`atomic_write`): a reader or a crash sees the old file or the new one, never part of one.
  Files whose loss would lose work (manifests, baselines, provenance records, exports) are fsynced first.
* **Provenance.** A directory of derived files is written as one set (:class:`DerivedSet`): its record
  is first marked ``writing`` (keeping the names the previous set had), then every file is written,
  files of the previous set that this call did not write are removed (so the directory holds exactly
  what the last call wrote), and the record is rewritten ``complete`` with each file's sha256 and what
  the set was derived from: the inputs' fingerprints (:meth:`psychometrics.run.store.RunStore.fingerprint`,
  the manifest's sha256), the options and the psytest version. A set cut short (SIGKILL, a full disk)
  stays ``writing``; a file changed or replaced later no longer matches its hash; a store that changed
  since has another fingerprint. :func:`check_provenance` finds all three (``psytest reproduce`` runs it).

Two writers of one directory (two runs finishing together) take turns: the directory is locked
(``flock``) while a set is written.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import secrets
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psychometrics.errors import PsytestError

if TYPE_CHECKING:
    import pandas as pd

PROVENANCE = "provenance.json"
PROVENANCE_FORMAT = 1
#: Kinds of derived directories (a directory of one kind is never written as another).
KINDS = ("analysis", "behavior-analysis", "item-analysis", "report", "comparison", "validity", "study-report")
#: Test hook: after this many files of a derived set, the writing process SIGKILLs itself (a real kill
#: between two writes of the real code path; used by tests/test_hostile_data_loss.py).
KILL_AFTER_FILES = "PSYTEST_TEST_KILL_AFTER_FILES"
_TEMPORARY = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}\.tmp$")


def is_temporary(name: str) -> bool:
    """Whether a file name is one of :func:`atomic_write`'s temporary files (left by a write cut short)."""
    return bool(_TEMPORARY.match(name))


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temporary_path(path: Path) -> Path:
    """A temporary name beside ``path`` (same directory, so the rename is atomic), unique per process."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def atomic_write(path: Path, data: bytes | str, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` whole: a temporary file beside it, then ``os.replace`` (with ``fsync``,
    flushed to disk before the rename and the directory after it). Returns ``path``."""
    path = Path(path)
    tmp = temporary_path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with open(tmp, "wb") as handle:
            handle.write(payload)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_directory(path.parent)
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_provenance(directory: Path) -> dict | None:
    """The provenance record of ``directory``, None when it has none; a one-line error when unreadable."""
    path = Path(directory) / PROVENANCE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PsytestError(f"{path}: unreadable provenance record ({exc}); delete the directory's files and "
                           "write them again") from None
    if not isinstance(record, dict) or record.get("psytest_provenance") != PROVENANCE_FORMAT:
        raise PsytestError(f"{path}: not a psytest provenance record; give another directory")
    return record


def _refuse(option: str, directory: Path, why: str) -> PsytestError:
    return PsytestError(f"{option} {directory}: {why}; give a new or empty directory (psytest writes only into "
                        "directories it made)")


def claim_directory(directory: Path, kind: str, *, owned: bool = False, option: str = "--out",
                    create: bool = True) -> dict | None:
    """Check that psytest may write a ``kind`` set into ``directory`` and (``create``) create it if
    needed; returns its current provenance record (None if it has none). ``owned``: the default place
    inside a run directory, psytest's even without a record (made by an older psytest)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise PsytestError(f"{option} {directory}: is a file, not a directory; give a directory")
    if not directory.exists():
        if create:
            directory.mkdir(parents=True, exist_ok=True)
        return None
    record = read_provenance(directory)
    if record is not None:
        if record.get("kind") != kind:
            raise PsytestError(f"{option} {directory}: holds psytest's {record.get('kind')} files, not {kind} "
                               "files; give this output its own directory")
        return record
    if owned:
        return None
    entries = sorted(p.name for p in directory.iterdir() if not _TEMPORARY.match(p.name))
    if entries:
        shown = ", ".join(entries[:3]) + (" ..." if len(entries) > 3 else "")
        raise _refuse(option, directory, f"holds files psytest did not write ({shown})")
    return None


def claim_file(path: Path, option: str, written_by_psytest) -> None:
    """Refuse to replace an existing file unless ``written_by_psytest(path)`` says psytest wrote it."""
    path = Path(path)
    if path.is_dir():
        raise PsytestError(f"{option} {path}: is a directory; give a file name")
    if path.exists() and not written_by_psytest(path):
        raise PsytestError(f"{option} {path}: the file exists and psytest did not write it; give a new file name "
                           "(psytest replaces only files it wrote)")


class DerivedSet:
    """A directory of derived files written as one set (see the module docstring).

    Use as a context manager: ``with DerivedSet(out, "report", inputs=..., options=...) as out:
    out.write_text("report.html", html)``. ``inputs``: what the set is derived from (fingerprints);
    ``options``: the settings that shaped it. On success the provenance record is complete; on an
    exception (or a kill) it stays ``writing``, which :func:`check_provenance` reports."""

    def __init__(self, directory: Path, kind: str, *, inputs: dict[str, Any] | None = None,
                 options: dict[str, Any] | None = None, owned: bool = False, option: str = "--out"):
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        self.directory = Path(directory)
        self.kind, self.inputs, self.options = kind, inputs or {}, options or {}
        self.owned, self.option = owned, option
        self.files: dict[str, str] = {}
        self._lock: int | None = None
        self._previous: set[str] = set()

    # -- the set ---------------------------------------------------------------------------------
    def __enter__(self) -> "DerivedSet":
        claim_directory(self.directory, self.kind, owned=self.owned, option=self.option)
        self._lock = os.open(self.directory, os.O_RDONLY)
        try:
            import fcntl

            fcntl.flock(self._lock, fcntl.LOCK_EX)  # another writer of this directory finishes first
            record = read_provenance(self.directory) or {}  # read again: it may have just finished
            self._previous = set(record.get("files") or {}) | set(record.get("previous_files") or [])
            for leftover in self.directory.iterdir():  # temporary files of a writer that was killed
                if _TEMPORARY.match(leftover.name) and leftover.is_file():
                    leftover.unlink(missing_ok=True)
            self._record("writing", previous_files=sorted(self._previous))
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if exc is None:
                for name in sorted(self._previous - set(self.files)):
                    stale = self.directory / name
                    if stale.is_file() and not stale.is_symlink() and "/" not in name and name != PROVENANCE:
                        stale.unlink()
                self._record("complete", files=dict(sorted(self.files.items())))
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the lock
            self._lock = None

    def _record(self, state: str, **fields: Any) -> None:
        from psychometrics import __version__

        record = {"psytest_provenance": PROVENANCE_FORMAT, "kind": self.kind, "state": state,
                  "psytest": __version__,
                  "written_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  "inputs": self.inputs, "options": self.options, **fields}
        atomic_write(self.directory / PROVENANCE, json.dumps(record, indent=2, ensure_ascii=False,
                                                             default=str) + "\n", fsync=True)

    # -- files -----------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        if "/" in name or name in (PROVENANCE, "", ".", ".."):
            raise ValueError(f"not a file name of a derived set: {name!r}")
        return self.directory / name

    def write_bytes(self, name: str, data: bytes | str) -> Path:
        path = atomic_write(self.path(name), data)
        self._written(name, path)
        return path

    write_text = write_bytes

    def write_csv(self, name: str, frame: "pd.DataFrame") -> Path:
        """A table as CSV, made safe for spreadsheets (:func:`psychometrics.analysis.tables.spreadsheet_safe`)."""
        from psychometrics.analysis.tables import spreadsheet_safe

        return self.write_bytes(name, spreadsheet_safe(frame).to_csv(index=False))

    def write_tables(self, tables: dict[str, "pd.DataFrame"]) -> list[Path]:
        """Each non-empty table as ``<name>.csv``; the paths written."""
        return [self.write_csv(f"{name}.csv", table) for name, table in tables.items()
                if table is not None and not table.empty]

    def _written(self, name: str, path: Path) -> None:
        self.files[name] = file_sha256(path)
        limit = os.environ.get(KILL_AFTER_FILES)
        if limit and limit.isdigit() and len(self.files) >= int(limit):
            os.kill(os.getpid(), signal.SIGKILL)


# -- checking a set ---------------------------------------------------------------------------------


def check_provenance(directory: Path, current_inputs: dict[str, Any] | None = None,
                     label: str | None = None) -> tuple[list[dict], list[str]]:
    """(problems, notes) for the derived set in ``directory``: interrupted, files missing, changed or not
    of the set, or (with ``current_inputs``) made from inputs that have changed since. Each problem is a
    dict with ``file``, ``problem``, ``stored`` and ``recomputed`` (the columns of reproduce's mismatches)."""
    directory = Path(directory)
    label = label or directory.name
    record = read_provenance(directory)
    if record is None:
        return [], [f"{label}/ has no {PROVENANCE} (written by an older psytest): whether its files belong to "
                    "one set is not checked"]
    problems: list[dict] = []
    where = f"{label}/{PROVENANCE}"
    if record.get("state") != "complete":
        problems.append({"file": where, "problem": "incomplete set", "stored": record.get("state"),
                         "recomputed": "complete",
                         "note": f"the last write into {label}/ stopped before it finished; write it again"})
        return problems, []
    files = record.get("files") or {}
    for name, digest in files.items():
        path = directory / name
        if not path.is_file():
            problems.append({"file": f"{label}/{name}", "problem": "missing from set", "stored": "absent",
                             "recomputed": "in the set"})
        elif file_sha256(path) != digest:
            problems.append({"file": f"{label}/{name}", "problem": "changed since written",
                             "stored": "sha256 " + file_sha256(path)[:12], "recomputed": "sha256 " + digest[:12]})
    for path in sorted(directory.iterdir()):
        if (path.is_file() and path.suffix in (".csv", ".html", ".json") and path.name != PROVENANCE
                and path.name not in files):
            problems.append({"file": f"{label}/{path.name}", "problem": "not of the set", "stored": "present",
                             "recomputed": "not written with the others"})
    if current_inputs is not None:
        recorded = record.get("inputs") or {}
        for key, now in current_inputs.items():
            if key in recorded and _canonical(recorded[key]) != _canonical(now):
                problems.append({"file": where, "problem": "stale", "stored": _short(recorded[key]),
                                 "recomputed": _short(now)})
    return problems, []


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _short(value: Any) -> str:
    text = _canonical(value)
    return text if len(text) <= 160 else text[:157] + "..."
