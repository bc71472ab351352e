"""Behaviour runs end to end: planning, storing, resuming, the simulated respondent's built-in
associations recovered for every shipped task, and a real local model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from psychometrics.engine.pool import RetryPolicy
from psychometrics.behavior.analysis import behavior_frame, behavior_tables
from psychometrics.behavior.runner import BehaviorDesign, behave, plan_conversations
from psychometrics.behavior.store import BehaviorStore
from psychometrics.behavior.task import resolve_tasks, shipped_tasks
from psychometrics.models.base import ModelBackend, ModelReply, ModelRequest
from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.design.personas import resolve_persona_set
from psychometrics.testing.waiting import HANG_GUARD_S, wait_for

PSYTEST = [sys.executable, "-m", "psychometrics"]


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*PSYTEST, *args], capture_output=True, text=True, timeout=HANG_GUARD_S)
    if check and result.returncode != 0:
        raise AssertionError(f"psytest {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


def test_battery_covers_every_trait_with_ten_variants():
    tasks = resolve_tasks("all")
    assert len(tasks) == len(shipped_tasks()) >= 19
    by_trait = {}
    for task in tasks:
        assert len(task.variants) >= 10, task.id
        by_trait.setdefault(task.trait, []).append(task.id)
    assert set(by_trait) == {
        "extraversion", "agreeableness", "conscientiousness", "neuroticism", "openness",
        "machiavellianism", "narcissism", "psychopathy",
    }


def test_plan_is_reproducible_and_orders_options_randomly():
    tasks = resolve_tasks("social-choice,novelty-choice")
    design = BehaviorDesign(samples=2, seed=3)
    first = plan_conversations(tasks, design, "sim/default", {}, None)
    again = plan_conversations(tasks, design, "sim/default", {}, None)
    assert [p.request_id for p in first] == [p.request_id for p in again]
    assert len({p.request_id for p in first}) == len(first) == 2 * sum(len(t.variants) for t in tasks)
    # The option shown first varies across conversations (randomised order), and with the seed.
    firsts = {p.rendered.display[0] for p in first if p.task.id == "social-choice"}
    assert len(firsts) > 1
    other = plan_conversations(tasks, BehaviorDesign(samples=2, seed=4), "sim/default", {}, None)
    assert [p.rendered.display for p in other] != [p.rendered.display for p in first]


def _sim_behave(tmp_path: Path, model: str, tasks: str, variants: int | None = None, personas: str = "trait-shaping"):
    chosen = resolve_tasks(tasks)
    persona_set = resolve_persona_set(personas) if personas else None
    design = BehaviorDesign(personas=personas, variants=variants)
    run_dir = tmp_path / "behave"
    result = behave(SimulatedRespondent(model), chosen, design, run_dir, persona_set=persona_set, concurrency=8)
    return run_dir, result


def test_every_shipped_task_recovers_the_simulated_association(tmp_path):
    """Across the trait-shaping personas, each task's score moves with the persona's target level on
    the task's trait, in the declared direction; every simulated reply is read back as valid."""
    run_dir, result = _sim_behave(tmp_path, "sim/seed=7,behavior_link=0.9", "all", variants=6)
    assert result.stats.failed == 0
    frame = behavior_frame(run_dir)
    assert (frame["outcome"] == "valid").mean() == 1.0, frame.loc[frame["outcome"] != "valid", ["task", "outcome"]]
    targets = {p.id: p.targets for p in resolve_persona_set("trait-shaping").personas}
    for task_id, part in frame.groupby("task"):
        trait, direction = part["trait"].iloc[0], int(part["direction"].iloc[0])
        means = part.groupby("persona")["score"].mean()
        level = pd.Series({p: targets[p].get(trait, 0) for p in means.index})
        shaped = level[level != 0].index.tolist() + ["baseline"]
        r = np.corrcoef(level[shaped], means[shaped])[0, 1]
        assert direction * r > 0.6, (task_id, r)


def test_unlinked_behaviour_shows_no_association(tmp_path):
    run_dir, _ = _sim_behave(tmp_path, "sim/seed=7,behavior_link=0", "dictator-game,social-choice", variants=10)
    frame = behavior_frame(run_dir)
    targets = {p.id: p.targets for p in resolve_persona_set("trait-shaping").personas}
    for task_id, part in frame.groupby("task"):
        trait = part["trait"].iloc[0]
        means = part.groupby("persona")["score"].mean()
        level = pd.Series({p: targets[p].get(trait, 0) for p in means.index})
        assert abs(np.corrcoef(level, means)[0, 1]) < 0.4, task_id


class _FlakyAfter(ModelBackend):
    """Unit-test wrapper: counts calls per transcript and fails every call after the first ``limit``."""

    def __init__(self, inner: ModelBackend, limit: int):
        self.inner, self.limit, self.name = inner, limit, inner.name
        self.calls: list[tuple] = []

    @property
    def params(self):
        return self.inner.params

    def prepare(self, inventories, persona_set=None):
        self.inner.prepare(inventories, persona_set)

    def prepare_tasks(self, tasks):
        self.inner.prepare_tasks(tasks)

    async def complete(self, request: ModelRequest) -> ModelReply:
        self.calls.append(tuple((m.role, m.content) for m in request.messages))
        if len(self.calls) > self.limit:
            raise RuntimeError("backend went away")
        return await self.inner.complete(request)


def test_resume_continues_a_conversation_from_its_first_unanswered_turn(tmp_path):
    tasks = resolve_tasks("sycophancy")
    design = BehaviorDesign(variants=3)
    run_dir = tmp_path / "resume"
    # Three two-turn conversations; the backend dies after three calls, i.e. in the middle of the second.
    flaky = _FlakyAfter(SimulatedRespondent("sim/seed=1"), limit=3)
    first = behave(flaky, tasks, design, run_dir, concurrency=1, retry=RetryPolicy(max_retries=0))
    assert first.stats.failed == 2
    with BehaviorStore(run_dir / "behavior.sqlite") as store:
        rows = {row.request_id: row for row in store.rows()}
        assert sum(row.error is None for row in rows.values()) == 1
        assert all("backend went away" in row.error for row in rows.values() if row.error)
        stored_turns = store.conn.execute("SELECT COUNT(*) FROM turns").fetchone()[0]
    assert stored_turns == 3
    healthy = _FlakyAfter(SimulatedRespondent("sim/seed=1"), limit=10**6)
    second = behave(healthy, tasks, design, run_dir, concurrency=1)
    assert second.stats.failed == 0 and second.stats.already_answered == 1 and second.stats.sent == 2
    # Only the three turns never answered were sent again; each later turn carries the stored reply.
    assert len(healthy.calls) == 3
    assert all(set(call) - set(c for earlier in flaky.calls[:3] for c in earlier) for call in healthy.calls)
    frame = behavior_frame(run_dir)
    assert len(frame) == 3 and (frame["outcome"] != "error").all()


def test_parse_failures_are_missing_not_zero(tmp_path):
    run_dir, _ = _sim_behave(tmp_path, "sim/seed=3,refusal=0.5", "dictator-game", variants=10, personas=None)
    frame = behavior_frame(run_dir)
    refused = frame[frame["outcome"] == "refusal"]
    assert 0 < len(refused) < len(frame)
    assert refused["score"].isna().all()
    summary = behavior_tables(run_dir)["behavior_summary"]
    row = summary.iloc[0]
    assert row["valid"] == len(frame) - len(refused)
    assert row["mean"] == pytest.approx(frame["score"].dropna().mean())


def test_cli_behave_dry_run_run_and_resume(tmp_path):
    out = tmp_path / "cli"
    args = ["behave", "--model", "sim/seed=2", "--tasks", "agreeableness", "--variants", "2", "--out", str(out)]
    dry = json.loads(run_cli(*args, "--dry-run", "--json").stdout)
    n_tasks = len(resolve_tasks("agreeableness"))
    assert dry["conversations_planned"] == dry["to_send"] == 2 * n_tasks
    payload = json.loads(run_cli(*args, "--json").stdout)
    assert payload["sent"] == 2 * n_tasks and payload["failed"] == 0
    assert (out / "analysis" / "behavior_summary.csv").is_file()
    again = json.loads(run_cli(*args, "--json").stdout)
    assert again["sent"] == 0 and again["already_answered"] == 2 * n_tasks
    # A different study in the same directory is refused in one line.
    refused = run_cli("behave", "--model", "sim/seed=3", "--tasks", "agreeableness", "--out", str(out), check=False)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "different model" in refused.stderr


def claim_owners(db: Path) -> set[str]:
    """Owners of the claims in the behaviour store at ``db`` now (none before the table exists)."""
    import sqlite3

    if not db.exists():
        return set()
    connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        return {owner for (owner,) in connection.execute("SELECT DISTINCT owner FROM claims")}
    except sqlite3.OperationalError:  # no claims table yet
        return set()
    finally:
        connection.close()


def test_two_processes_on_one_run_never_send_a_conversation_twice(tmp_path):
    """The server holds every call until both processes have claimed conversations, so both take part
    whichever starts first, on a machine of any speed."""
    import os

    from psychometrics.testing.openai_server import start_server

    out = tmp_path / "shared"
    env = {**os.environ, "OPENAI_API_KEY": "sk-psytest-dummy-key"}
    with start_server(SimulatedRespondent("sim/seed=4"), latency_s=0.02, hold_after=0) as server:
        args = [*PSYTEST, "behave", "--model", "openai/psytest-sim", "--api-base", server.base_url, "--tasks",
                "sycophancy,dictator-game", "--variants", "10", "--out", str(out), "--concurrency", "2", "--json"]
        processes = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                     for _ in range(2)]

        def both_working() -> bool:
            for process in processes:
                assert process.poll() is None, process.communicate()[1]
            return len(claim_owners(out / "behavior.sqlite")) == 2

        wait_for(both_working, "both processes claiming conversations")
        server.release()
        outputs = [p.communicate(timeout=HANG_GUARD_S) for p in processes]
        served = server.requests_served
    assert all(p.returncode == 0 for p in processes), [stderr for _, stderr in outputs]
    results = [json.loads(stdout) for stdout, _ in outputs]
    assert sum(r["sent"] for r in results) == 20  # every conversation sent by exactly one process
    assert all(r["failed"] == 0 for r in results) and served == 30  # and every call, once
    assert min(r["sent"] for r in results) > 0  # both worked at once
    with BehaviorStore(out / "behavior.sqlite") as store:
        assert store.count() == 20
        turns = store.conn.execute("SELECT COUNT(*) FROM turns").fetchone()[0]
        assert turns == 10 * 2 + 10  # sycophancy has two turns, the dictator game one
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert store.conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


@pytest.mark.parametrize(
    "args, expected",
    [
        (["behave", "--tasks", "nonesuch", "--model", "sim/default"], "--tasks nonesuch: unknown task"),
        (["behave", "--tasks", "missing/file.yaml", "--model", "sim/default"], "no such file"),
        (["behave", "--persona-ids", "x", "--model", "sim/default"], "--persona-ids: give --personas too"),
        (["tasks", "show", "agreeableness"], "give one task"),
    ],
)
def test_cli_bad_input_is_one_line(args, expected):
    result = run_cli(*args, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("psytest: error:") and result.stderr.count("\n") == 1
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_cli_tasks_list_and_show():
    listed = json.loads(run_cli("tasks", "list", "--json").stdout)
    assert {row["id"] for row in listed} == set(shipped_tasks())
    shown = run_cli("tasks", "show", "dictator-game", "--variant", resolve_tasks("dictator-game")[0].variants[1].id).stdout
    assert "agreeableness" in shown and "turn 1" in shown and "{" not in shown.split("turn 1", 1)[1]


@pytest.mark.slow
def test_qwen_end_to_end_on_every_task(tmp_path):
    """A real local model through the whole path on every shipped task (one variant each): every reply
    is stored and scored; only unreadable replies are missing, each with its reason."""
    out = tmp_path / "qwen"
    n_tasks = len(shipped_tasks())
    payload = json.loads(run_cli(
        "behave", "--model", "local/qwen2.5-0.5b", "--tasks", "all", "--variants", "1", "--out", str(out),
        "--concurrency", "1", "--threads-batch", "1", "--json",  # one thread: llama.cpp's spin on shared cores
    ).stdout)
    assert payload["sent"] == n_tasks and payload["failed"] == 0
    frame = behavior_frame(out)
    assert len(frame) == n_tasks and set(frame["task"]) == set(shipped_tasks())
    assert (frame["outcome"] == "valid").sum() >= 0.6 * n_tasks, frame[["task", "outcome"]]
    assert frame.loc[frame["outcome"] != "valid", "score"].isna().all()
    with BehaviorStore(out / "behavior.sqlite") as store:
        rows = list(store.rows())
    assert all(row.transcript[-1][0] == "assistant" and row.transcript[-1][1].strip() for row in rows)
    two_turn = [row for row in rows if row.task in ("sycophancy", "opinion-sycophancy")]
    assert all(sum(role == "assistant" for role, _ in row.transcript) == 2 for row in two_turn)
