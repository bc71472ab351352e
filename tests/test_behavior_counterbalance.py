"""Counterbalancing in behaviour runs: option orders balanced within each respondent and task, old runs
planned as they were, and choice tasks read from option-label probabilities (``--mode probs``)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from psychometrics import api
from psychometrics.behavior.analysis import behavior_frame, behavior_tables, by_measure, run_plan
from psychometrics.behavior.order import all_rotations, balanced_orders
from psychometrics.behavior.runner import BehaviorDesign, behave, plan_conversations
from psychometrics.behavior.store import BehaviorStore
from psychometrics.behavior.task import resolve_tasks
from psychometrics.design.personas import resolve_persona_set
from psychometrics.engine.pool import RetryPolicy
from psychometrics.errors import PsytestError
from psychometrics.models.base import ModelBackend, ModelReply, ModelRequest
from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.run.identity import plan_hash
from psychometrics.run.owner import open_run
from psychometrics.testing.waiting import HANG_GUARD_S

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
FIXTURES = f"{DATA / 'tasks' / 'order-fixture.yaml'},{DATA / 'tasks' / 'items-fixture.yaml'},dictator-game"
GOLDEN = DATA / "golden_behavior_request_ids.json"
COMMITTED = ROOT / "reports" / "five-models" / "study" / "runs"
PERSONAS = ("baseline", "extraversion-very-low", "extraversion-very-high")
PSYTEST = [sys.executable, "-m", "psychometrics"]


def _choice_task(tmp_path: Path, k: int) -> Path:
    """A choice task file with ten variants of ``k`` options each (values 0..1 in file order)."""
    lines = [f"id: choice-{k}", "name: Fixture", "trait: extraversion", "direction: 1", "measure: Value (0 to 1).",
             "citation: \"A test fixture.\"", "kind: choice", "max_tokens: 16", "variants:"]
    for v in range(10):
        lines += [f"  - id: v{v + 1:02d}", "    turns:", "      - |",
                  f"        Situation {v + 1}: which do you pick?", "", "        {options}", "",
                  "        Answer with the letter ({labels}).", "    options:"]
        lines += [f"      - {{id: o{i}, value: {i / (k - 1):.4f}, text: Option number {i} in situation {v + 1}}}"
                  for i in range(k)]
    path = tmp_path / f"choice-{k}.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _position_counts(planned, keys) -> dict:
    """(respondent key..., option id, position) -> count over the planned conversations."""
    counts: Counter = Counter()
    for p in planned:
        for position, option in enumerate(p.rendered.display):
            counts[(*keys(p), option, position)] += 1
    return counts


def _assert_balanced(planned, k: int, keys, conversations_per_key: int, first_id: int = 0) -> None:
    counts = _position_counts(planned, keys)
    groups = {tuple(key[:-2]) for key in counts}
    low, high = conversations_per_key // k, -(-conversations_per_key // k)
    for group in groups:
        for option in (f"o{i}" for i in range(first_id, first_id + k)):
            for position in range(k):
                assert low <= counts.get((*group, option, position), 0) <= high, (group, option, position)


# ------------------------------------------------------------------------------------------ balance


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_each_option_takes_each_position_equally_often_within_every_respondent(tmp_path, k):
    """For 2..5 options and 1..8 variants (and 1..3 samples): per persona, over its samples and variants,
    and per persona x sample, each option stands in each position floor or ceil of n/k times."""
    tasks = resolve_tasks(str(_choice_task(tmp_path, k)))
    persona_set = resolve_persona_set("trait-shaping")
    for variants in range(1, 9):
        for samples in (1, 2, 3):
            design = BehaviorDesign(samples=samples, seed=5, personas="trait-shaping", persona_ids=PERSONAS,
                                    variants=variants)
            planned = plan_conversations(tasks, design, "sim/default", {}, persona_set)
            assert len(planned) == len(PERSONAS) * samples * variants
            _assert_balanced(planned, k, lambda p: (p.persona,), samples * variants)
            _assert_balanced(planned, k, lambda p: (p.persona, p.sample), variants)
            again = plan_conversations(tasks, design, "sim/default", {}, persona_set)
            assert [p.request_id for p in again] == [p.request_id for p in planned]  # seeded, reproducible


def test_balanced_orders_differ_between_respondents_and_seeds(tmp_path):
    tasks = resolve_tasks(str(_choice_task(tmp_path, 3)))
    persona_set = resolve_persona_set("trait-shaping")
    design = BehaviorDesign(seed=1, personas="trait-shaping", persona_ids=PERSONAS)
    planned = plan_conversations(tasks, design, "sim/default", {}, persona_set)
    by_persona = {persona: [p.rendered.display for p in planned if p.persona == persona] for persona in PERSONAS}
    assert len({tuple(orders) for orders in by_persona.values()}) == len(PERSONAS)
    other = plan_conversations(tasks, BehaviorDesign(seed=2, personas="trait-shaping", persona_ids=PERSONAS),
                               "sim/default", {}, persona_set)
    assert [p.rendered.display for p in other] != [p.rendered.display for p in planned]


def test_mixed_option_counts_and_item_lists_are_balanced_per_count():
    """A task whose variants show 2 to 5 options is balanced separately for each count; item lists too."""
    tasks = resolve_tasks(FIXTURES)
    persona_set = resolve_persona_set("trait-shaping")
    design = BehaviorDesign(samples=2, seed=7, personas="trait-shaping", persona_ids=PERSONAS)
    planned = plan_conversations(tasks, design, "sim/default", {}, persona_set)
    for k in (2, 3, 4, 5):
        part = [p for p in planned if p.task.id == "order-fixture" and len(p.rendered.display) == k]
        _assert_balanced(part, k, lambda p: (p.persona,), 2 * 3, first_id=1)  # 3 variants of each count, 2 samples
    items = [p for p in planned if p.task.id == "items-fixture"]
    counts = _position_counts(items, lambda p: (p.persona,))
    assert {c for key, c in counts.items()} <= {5}  # 20 conversations, 4 items: 5 times in each position


def test_balanced_orders_rotate_a_base_permutation():
    rng = np.random.default_rng(0)
    orders, bases = balanced_orders([3, 0, 3, 2], 2, rng)
    assert orders[0][1] is None and orders[1][1] is None
    for sample in orders:
        for order, k in zip(sample, [3, 0, 3, 2]):
            if k:
                assert order in all_rotations(bases[k])
    assert sorted(map(tuple, all_rotations([2, 0, 1]))) == sorted({(2, 0, 1), (0, 1, 2), (1, 2, 0)})


# ------------------------------------------------------------------------------------------ old runs


def test_the_old_rule_plans_the_golden_request_ids():
    """Request ids planned under the per-conversation rule (``random``) equal those recorded before the
    balanced rule existed; a manifest without a recorded rule reads as ``random``."""
    from psychometrics.run.manifest import BehaviorDesignRecord

    assert BehaviorDesignRecord().order == "random" and BehaviorDesignRecord().mode == "text"
    tasks = resolve_tasks(FIXTURES)
    persona_set = resolve_persona_set("trait-shaping")
    design = BehaviorDesign(samples=2, seed=7, personas="trait-shaping", persona_ids=PERSONAS[::2], order="random")
    planned = plan_conversations(tasks, design, "sim/seed=1", {"x": 1}, persona_set)
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert [[p.task.id, p.variant.id, p.persona, p.sample, list(p.rendered.display), p.request_id]
            for p in planned] == golden
    balanced = plan_conversations(tasks, BehaviorDesign(samples=2, seed=7, personas="trait-shaping",
                                                        persona_ids=PERSONAS[::2]), "sim/seed=1", {"x": 1}, persona_set)
    # Without displayed options (dictator-game) the two rules plan the same conversations.
    balanced_ids = {p.request_id for p in balanced}
    assert {g[5] for g in golden if not g[4]} <= balanced_ids
    assert len({g[5] for g in golden if g[4]} - balanced_ids) > 0.5 * sum(1 for g in golden if g[4])


@pytest.mark.parametrize("run_dir", sorted(COMMITTED.glob("*-behavior")), ids=lambda p: p.name)
def test_committed_behaviour_runs_plan_as_they_were_sent(run_dir):
    run = open_run(run_dir, expect="behavior")
    assert "order" not in json.loads((run_dir / "manifest.json").read_text())["design"]
    assert run.behavior.design.order == "random"
    plan = run_plan(run.behavior, run.tasks)
    assert plan["how"] == "request_id"
    with closing_store(run_dir) as db:
        stored = {row[0] for row in db.execute("SELECT request_id FROM conversations")}
    assert plan["ids"] == stored
    design = run.behavior.design
    planned = plan_conversations(
        [run.tasks[t.id] for t in run.behavior.tasks],
        BehaviorDesign(samples=design.samples, temperature=design.temperature, seed=design.seed,
                       personas=design.personas, persona_ids=tuple(design.persona_ids or ()) or None,
                       variants=design.variants, order=design.order),
        run.behavior.model, run.behavior.backend_params, resolve_persona_set(design.personas))
    assert plan_hash(p.request_id for p in planned) == run.behavior.plan


def closing_store(run_dir: Path):
    from contextlib import closing

    return closing(sqlite3.connect(f"file:{run_dir / 'behavior.sqlite'}?mode=ro", uri=True))


def test_a_resumed_run_keeps_its_recorded_rule_and_another_rule_is_refused(tmp_path):
    out = tmp_path / "old"
    first = api.behave("sim/seed=2", tasks="social-choice", variants=2, out=out, order="random")
    assert first.stats.sent == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["design"]["order"] == "random"
    del manifest["design"]["order"]  # as a run made before the rule was recorded
    (out / "manifest.json").write_text(json.dumps(manifest))
    again = api.behave("sim/seed=2", tasks="social-choice", variants=2, out=out)  # no --order: the run's own
    assert again.stats.sent == 0 and again.stats.already_answered == 2
    with pytest.raises(PsytestError, match=r"different design \(order\)"):
        api.behave("sim/seed=2", tasks="social-choice", variants=2, out=out, order="balanced")
    fresh = api.behave("sim/seed=2", tasks="social-choice", variants=2, out=tmp_path / "new")
    assert json.loads((tmp_path / "new" / "manifest.json").read_text())["design"]["order"] == "balanced"
    assert fresh.stats.sent == 2


# ------------------------------------------------------------------------------------------ probs mode


def _probs_run(tmp_path: Path, model: str, name: str, mode: str = "probs", variants: int = 4, tasks="social-choice"):
    return api.behave(model, tasks=tasks, personas="trait-shaping", persona_ids=list(PERSONAS), variants=variants,
                      out=tmp_path / name, mode=mode)


def test_probs_mode_scores_the_probability_weighted_value_under_every_rotation(tmp_path):
    outcome = _probs_run(tmp_path, "sim/seed=3,position_first=1.5", "probs")
    task = resolve_tasks("social-choice")[0]
    sizes = [len(v.options) for v in task.variants[:4]]
    assert outcome.stats.sent == len(PERSONAS) * sum(sizes) and outcome.stats.failed == 0
    frame = behavior_frame(outcome.run_dir)
    assert (frame["mode"] == "probs").all() and (frame["outcome"] == "valid").all()
    with BehaviorStore(outcome.run_dir / "behavior.sqlite", read_only=True) as store:
        rows = {row.request_id: row for row in store.rows()}
    for (_persona, variant_id), part in frame.groupby(["persona", "variant"]):
        variant = task.variant(variant_id)
        displays = [tuple(rows[r].display) for r in part["request_id"]]
        assert len(displays) == len(variant.options)  # every rotation: each option shown first once
        assert {d[0] for d in displays} == {o.id for o in variant.options}
        for request_id, score in zip(part["request_id"], part["score"]):
            detail = rows[request_id].detail
            probabilities = detail["probabilities"]
            assert sum(probabilities.values()) == pytest.approx(1.0)
            expected = sum(probabilities[o.id] * o.value for o in variant.options)
            assert score == pytest.approx(expected)
            assert detail["first_probability"] == pytest.approx(probabilities[rows[request_id].display[0]])
            assert rows[request_id].transcript[-1][0] == "user"  # nothing generated
    summary = behavior_tables(outcome.run_dir)["behavior_summary"].set_index("task")
    row = summary.loc["social-choice@probs"]
    assert row["first_option_chance"] == pytest.approx(np.mean([1 / k for k in sizes for _ in range(k)]))
    assert row["first_option_probability"] == pytest.approx(frame["first_probability"].mean())
    assert row["first_option_probability"] > row["first_option_chance"] + 0.1  # the simulated bias, seen
    by_persona = frame.groupby("persona")["score"].mean()
    assert by_persona["extraversion-very-high"] > by_persona["baseline"] > by_persona["extraversion-very-low"]


def test_averaging_the_rotations_removes_most_of_a_first_position_bias(tmp_path):
    """The same respondents with and without a strong first-option bias: their rotation-averaged scores
    are close, while single orders differ by much more."""
    def frame(model: str, name: str):
        run_dir = _probs_run(tmp_path, model, name).run_dir
        with BehaviorStore(run_dir / "behavior.sqlite", read_only=True) as store:
            display = {row.request_id: ",".join(row.display) for row in store.rows()}
        scores = behavior_frame(run_dir)
        return scores.assign(display=scores["request_id"].map(display))

    biased, plain = frame("sim/seed=4,position_first=2", "biased"), frame("sim/seed=4", "plain")
    keys = ["persona", "variant", "display"]
    joined = biased[keys + ["score"]].merge(plain[keys + ["score"]], on=keys, suffixes=("_b", "_p"))
    assert len(joined) == len(biased) == len(plain)
    single = (joined["score_b"] - joined["score_p"]).abs().mean()
    averaged = joined.groupby(["persona", "variant"])[["score_b", "score_p"]].mean()
    assert (averaged["score_b"] - averaged["score_p"]).abs().mean() < 0.5 * single


def test_probs_mode_refuses_a_task_it_cannot_read_and_both_leaves_it_to_text(tmp_path):
    with pytest.raises(PsytestError, match=r"--mode probs: task 'dictator-game' \(kind number\)") as error:
        _probs_run(tmp_path, "sim/seed=1", "refused", tasks="social-choice,dictator-game")
    assert "\n" not in str(error.value) and not (tmp_path / "refused" / "behavior.sqlite").exists()
    outcome = _probs_run(tmp_path, "sim/seed=1", "both", mode="both", variants=2,
                         tasks="social-choice,dictator-game,sycophancy")
    frame = behavior_frame(outcome.run_dir)
    assert set(frame.loc[frame["mode"] == "probs", "task"]) == {"social-choice"}
    assert set(frame.loc[frame["mode"] == "text", "task"]) == {"social-choice", "dictator-game", "sycophancy"}
    tables = behavior_tables(outcome.run_dir)
    assert {"social-choice", "social-choice@probs"} <= set(tables["behavior_summary"]["task"])
    note = " ".join(tables["behavior_notes"]["note"])
    assert "dictator-game, sycophancy cannot be read" in note and "text only" in note
    measures = by_measure(frame)
    assert set(measures["task"]) == {"social-choice", "social-choice@probs", "dictator-game", "sycophancy"}


def test_cli_mode_and_order_errors_are_one_line(tmp_path):
    for args, expected in [
        (["--order", "shuffled"], "--order shuffled: give one of balanced, random"),
        (["--mode", "logits"], "--mode logits: give one of text, probs, both"),
        (["--mode", "probs", "--tasks", "expressiveness"], "--mode probs: task 'expressiveness' (kind length)"),
    ]:
        result = subprocess.run([*PSYTEST, "behave", "--model", "sim/seed=1", "--tasks", "social-choice",
                                 "--out", str(tmp_path / "x"), *args], capture_output=True, text=True,
                                timeout=HANG_GUARD_S)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and expected in result.stderr, result.stderr


class _FailAfter(ModelBackend):
    """Wraps a backend; every call after the first ``limit`` fails (a server that went away)."""

    def __init__(self, inner: ModelBackend, limit: int):
        self.inner, self.limit, self.name = inner, limit, inner.name
        self.calls: list[ModelRequest] = []

    @property
    def params(self):
        return self.inner.params

    def prepare(self, inventories, persona_set=None):
        self.inner.prepare(inventories, persona_set)

    def prepare_tasks(self, tasks):
        self.inner.prepare_tasks(tasks)

    async def complete(self, request: ModelRequest) -> ModelReply:
        self.calls.append(request)
        if len(self.calls) > self.limit:
            raise RuntimeError("backend went away")
        return await self.inner.complete(request)


def test_an_interrupted_probs_run_resumes_without_asking_again(tmp_path):
    tasks = resolve_tasks("social-choice")
    persona_set = resolve_persona_set("trait-shaping")
    design = BehaviorDesign(personas="trait-shaping", persona_ids=PERSONAS, variants=3, mode="probs")
    total = len(PERSONAS) * sum(len(v.options) for v in tasks[0].variants[:3])
    run_dir = tmp_path / "resume"
    flaky = _FailAfter(SimulatedRespondent("sim/seed=6"), limit=5)
    first = behave(flaky, tasks, design, run_dir, persona_set=persona_set, concurrency=1,
                   retry=RetryPolicy(max_retries=0))
    assert first.stats.failed == total - 5
    assert all(call.mode == "probs" and call.choices for call in flaky.calls)
    # One answered conversation loses its row but keeps its committed turn: it is scored from the turn.
    with BehaviorStore(run_dir / "behavior.sqlite", read_only=False) as store:
        answered = sorted(store.answered_ids())
        assert len(answered) == 5
        store.conn.execute("DELETE FROM conversations WHERE request_id = ?", (answered[0],))
    healthy = _FailAfter(SimulatedRespondent("sim/seed=6"), limit=10**6)
    second = behave(healthy, tasks, design, run_dir, persona_set=persona_set, concurrency=1)
    assert second.stats.failed == 0 and len(healthy.calls) == total - 5  # the failed ones only
    clean = behave(SimulatedRespondent("sim/seed=6"), tasks, design, tmp_path / "clean", persona_set=persona_set)
    assert clean.stats.sent == total
    resumed, reference = behavior_frame(run_dir), behavior_frame(tmp_path / "clean")
    assert (resumed["outcome"] == "valid").all() and len(resumed) == total
    assert resumed.set_index("request_id")["score"].sort_index().tolist() == pytest.approx(
        reference.set_index("request_id")["score"].sort_index().tolist())


@pytest.mark.slow
def test_qwen_reads_a_choice_task_from_label_probabilities(tmp_path):
    """The embedded Qwen 0.5B in probs mode on one choice task and two personas: every rotation answered,
    the labels carry probability, and the score is the probability-weighted value."""
    out = tmp_path / "qwen-probs"
    result = subprocess.run([
        *PSYTEST, "behave", "--model", "local/qwen2.5-0.5b", "--tasks", "social-choice", "--personas",
        "trait-shaping", "--persona-ids", "extraversion-very-low,extraversion-very-high", "--variants", "2",
        "--mode", "probs", "--out", str(out), "--concurrency", "1", "--threads-batch", "1", "--json",
    ], capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode == 0, result.stderr[-2000:]
    task = resolve_tasks("social-choice")[0]
    expected = 2 * sum(len(v.options) for v in task.variants[:2])
    payload = json.loads(result.stdout)
    assert payload["sent"] == expected and payload["failed"] == 0
    frame = behavior_frame(out)
    assert len(frame) == expected and (frame["outcome"] == "valid").all() and (frame["mode"] == "probs").all()
    with BehaviorStore(out / "behavior.sqlite", read_only=True) as store:
        for row in store.rows():
            variant = task.variant(row.variant)
            assert 0 < row.detail["label_mass"] <= 1 + 1e-6
            assert set(row.detail["logprobs"]) == set("ABCDEFGH"[: len(variant.options)])
            values = {o.id: o.value for o in variant.options}
            assert row.score == pytest.approx(sum(p * values[i] for i, p in row.detail["probabilities"].items()))


def test_validity_keeps_text_and_probability_scores_apart(tmp_path):
    """One task in both modes: validity pairs the trait with ``social-choice`` and, separately, with
    ``social-choice@probs``; the linked simulated respondent's probability scores follow its extraversion."""
    from psychometrics.validity.tables import compute_validity

    model = "sim/seed=13,behavior_link=0.9"
    questionnaire = tmp_path / "q"
    api.administer(model, inventory="mini-ipip", personas="trait-shaping", mode="probs", out=questionnaire)
    behaviour = api.behave(model, tasks="social-choice", personas="trait-shaping", variants=4, mode="both",
                           out=tmp_path / "b").run_dir
    tables = compute_validity([questionnaire], [behaviour], n_boot=200)
    pairs = tables["validity_pairs"]
    extraversion = pairs[pairs["trait"].str.contains("xtraversion")]
    assert {"social-choice", "social-choice@probs"} <= set(extraversion["task"])
    probs = extraversion[extraversion["task"] == "social-choice@probs"]
    assert (probs["r"] > 0.5).all(), probs[["scope", "trait", "task", "n", "r"]]
