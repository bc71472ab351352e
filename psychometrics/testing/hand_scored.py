"""The hand-scored reply set: real model replies to the shipped tasks, with the score a careful person gives.

The simulated respondent writes replies in the forms the scorer reads, so it cannot show how often the
scorer misreads a real model. This set can: each entry is one stored conversation of a real model (its
rendered user turns, the display order of its options or items, its replies, and whether the last reply
was cut off at ``max_tokens``), and ``hand`` is what a person reading the whole conversation scored it
(``outcome`` and, when valid, ``score``), with ``why`` saying how. The agreement of the task's scorer with
those hand scores is the figure the README reports; ``tests/test_hand_scored.py`` holds it.

Files: ``tests/data/hand_scored/<task>.yaml``, each ``{task: ID, entries: [...]}``; an entry has
``model, persona, variant, display, turns, replies, truncated, hand: {outcome, score}, why`` and, where
the scorer once disagreed and was corrected, ``fixed`` (what was wrong); those must agree.

Entries are made from a behaviour run with ``dump`` (``hand`` left empty, never pre-filled with the
scorer's reading, so the hand score is not anchored on it) and read back with :func:`load_entries`:

    python -m psychometrics.testing.hand_scored dump RUN_DIR --task die-roll --per-task 12 --out FILE
    python -m psychometrics.testing.hand_scored agreement tests/data/hand_scored
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SET_DIR = Path(__file__).resolve().parents[2] / "tests" / "data" / "hand_scored"
SCORE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Reading:
    """How an entry was read: by hand and by the scorer."""

    task: str
    model: str
    variant: str
    hand_outcome: str
    hand_score: float | None
    outcome: str
    score: float | None
    fixed: str | None

    @property
    def agrees(self) -> bool:
        """Same outcome, and for valid replies the same score (to :data:`SCORE_TOLERANCE`, relative)."""
        if self.outcome != self.hand_outcome:
            # every way of not being read counts as one outcome: what matters is missing vs a score
            return self.outcome != "valid" and self.hand_outcome != "valid"
        if self.outcome != "valid":
            return True
        if self.score is None or self.hand_score is None:
            return self.score is None and self.hand_score is None
        return math.isclose(self.score, self.hand_score, rel_tol=SCORE_TOLERANCE, abs_tol=SCORE_TOLERANCE)


def load_entries(directory: Path = SET_DIR) -> list[dict]:
    """Every entry of every ``*.yaml`` file in ``directory``, each with its file's ``task``."""
    import yaml

    entries = []
    for path in sorted(Path(directory).glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for index, entry in enumerate(data.get("entries") or []):
            if not isinstance(entry.get("hand"), dict) or "outcome" not in entry["hand"]:
                raise ValueError(f"{path}: entry {index} has no hand score (hand: {{outcome, score}})")
            entries.append({**entry, "task": data["task"], "file": path.name})
    return entries


def read_entry(entry: dict) -> Reading:
    """Score one entry with the current shipped task file, as the analysis does (truncation included)."""
    from psychometrics.behavior.kind_base import Rendered
    from psychometrics.behavior.runner import score_conversation
    from psychometrics.behavior.task import TASK_DIR, load_task

    task = load_task(TASK_DIR / f"{entry['task']}.yaml")
    variant = task.variant(entry["variant"])
    rendered = Rendered(tuple(entry["turns"]), tuple(entry.get("display") or ()))
    truncated = [bool(entry.get("truncated"))] if entry.get("truncated") is not None else []
    scored = score_conversation(task, variant, rendered, list(entry["replies"]), truncated)
    hand = entry["hand"]
    hand_score = hand.get("score")
    return Reading(entry["task"], str(entry.get("model")), entry["variant"], str(hand["outcome"]),
                   None if hand_score is None else float(hand_score), scored.outcome,
                   None if scored.score is None else float(scored.score), entry.get("fixed"))


def agreement(readings: list[Reading]):
    """Agreement overall, per task and per model: ``n``, ``agree`` and ``share``, as a DataFrame."""
    import pandas as pd

    frame = pd.DataFrame({"task": [r.task for r in readings], "model": [r.model for r in readings],
                          "agree": [r.agrees for r in readings]})
    rows = [{"group": "all", "level": "all", "n": len(frame), "agree": int(frame["agree"].sum())}]
    for group in ("model", "task"):
        for level, part in frame.groupby(group):
            rows.append({"group": group, "level": level, "n": len(part), "agree": int(part["agree"].sum())})
    out = pd.DataFrame(rows)
    return out.assign(share=out["agree"] / out["n"].where(out["n"] > 0))


def dump(run_dir: Path, tasks: list[str] | None, per_task: int, seed: int = 0) -> dict[str, list[dict]]:
    """Entries (``hand`` empty) for up to ``per_task`` stored conversations per task of a behaviour run,
    drawn at random (seeded) among the finished ones."""
    from psychometrics.behavior.analysis import as_behavior_run
    from psychometrics.behavior.runner import truncated_turns

    run = as_behavior_run(Path(run_dir))
    out: dict[str, list[dict]] = {}
    with run.store() as store:
        turn_tokens = store.turn_output_tokens()
        rows = [r for r in store.rows() if r.error is None and (not tasks or r.task in tasks)
                and not (isinstance(r.detail, dict) and r.detail.get("mode") == "probs")]  # no reply to read
    rng = np.random.default_rng(seed)
    for task_id in sorted({r.task for r in rows}):
        task = run.tasks.get(task_id)
        part = [r for r in rows if r.task == task_id]
        chosen = rng.choice(len(part), size=min(per_task, len(part)), replace=False)
        for index in sorted(chosen):
            row = part[index]
            cut = truncated_turns(task, turn_tokens.get(row.request_id, [])) if task else []
            out.setdefault(task_id, []).append({
                "model": run.manifest.model, "persona": row.persona, "variant": row.variant,
                "display": list(row.display), "turns": [c for role, c in row.transcript if role == "user"],
                "replies": [c for role, c in row.transcript if role == "assistant"],
                "truncated": bool(cut[-1]) if cut and cut[-1] is not None else None,
                "hand": None, "why": None})
    return out


def _main(argv: list[str] | None = None) -> int:
    import yaml

    parser = argparse.ArgumentParser(prog="python -m psychometrics.testing.hand_scored")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="entries to score by hand from a behaviour run")
    d.add_argument("run_dir", type=Path)
    d.add_argument("--task", action="append")
    d.add_argument("--per-task", type=int, default=10)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", type=Path, required=True, help="a directory: one <task>.new.yaml per task")
    a = sub.add_parser("agreement", help="the scorer's agreement with the hand scores")
    a.add_argument("directory", type=Path, nargs="?", default=SET_DIR)
    a.add_argument("--disagreements", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "dump":
        args.out.mkdir(parents=True, exist_ok=True)
        for task_id, entries in dump(args.run_dir, args.task, args.per_task, args.seed).items():
            path = args.out / f"{task_id}.new.yaml"
            path.write_text(yaml.safe_dump({"task": task_id, "entries": entries}, sort_keys=False, allow_unicode=True,
                                           width=110), encoding="utf-8")
            print(f"{path}: {len(entries)} entries")
        return 0
    readings = [read_entry(e) for e in load_entries(args.directory)]
    print(agreement(readings).to_string(index=False))
    if args.disagreements:
        for reading in readings:
            if not reading.agrees:
                print(reading)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
