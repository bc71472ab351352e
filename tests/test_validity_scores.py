"""``psytest validity --scores SCORES.csv --pairs PAIRS.yaml``: scores from elsewhere with declared pairs, its
hostile inputs, and the committed Personality Illusion report (reports/personality-illusion/) recomputed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from psychometrics import api
from psychometrics.errors import PsytestError

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "personality-illusion"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "psychometrics", *args], capture_output=True, text=True)


def _scores(seed: int = 1, models: int = 2, respondents: int = 12, samples: int = 3) -> pd.DataFrame:
    """Respondents whose ``ext_self`` drives ``talk`` (+) and ``risk`` (-); ``con_self`` drives nothing. Every
    sample is an independent draw around the respondent's level (noise not shared by the two measures)."""
    rng = np.random.default_rng(seed)
    rows = []
    for m in range(models):
        for r in range(respondents):
            level, con = rng.normal(), rng.normal()
            target = (-1, 0, 1)[r % 3]
            for s in range(samples):
                rows.append({"model": f"m{m}", "respondent": f"p{r:02d}", "sample": s + 1,
                             "target_ext_self": target,
                             "ext_self": 3 + level + target + 0.3 * rng.normal(), "con_self": con + 0.3 * rng.normal(),
                             "talk": 10 + 4 * (level + target) + rng.normal(), "risk": -2 * level + rng.normal()})
    return pd.DataFrame(rows)


PAIRS = ("- {selfreport: ext_self, behavior: talk, sign: 1}\n"
         "- {selfreport: ext_self, behavior: risk, sign: -1}\n"
         "- {selfreport: con_self, behavior: talk, sign: 1}\n")


def _write(tmp_path: Path, scores: pd.DataFrame | str, pairs: str = PAIRS) -> tuple[Path, Path]:
    scores_path, pairs_path = tmp_path / "scores.csv", tmp_path / "pairs.yaml"
    if isinstance(scores, str):
        scores_path.write_text(scores, encoding="utf-8")
    else:
        scores.to_csv(scores_path, index=False)
    pairs_path.write_text(pairs, encoding="utf-8")
    return scores_path, pairs_path


def test_scores_give_the_run_tables_with_declared_pairs_and_respondent_means(tmp_path):
    frame = _scores()
    scores, pairs = _write(tmp_path, frame)
    result = api.validity(scores=scores, pairs=pairs, out=tmp_path / "out", bootstrap=200)
    table = pd.read_csv(tmp_path / "out" / "validity_pairs.csv")
    assert set(table["scope"]) == {"m0", "m1", "pooled"}
    assert set(zip(table["trait"], table["task"])) == {(t, b) for t in ("ext_self", "con_self") for b in ("talk", "risk")}
    declared = table[table["declared"]].set_index(["scope", "trait", "task"])
    assert len(declared) == 9 and declared.loc[("pooled", "ext_self", "risk"), "expected_sign"] == -1
    assert declared.loc[("pooled", "ext_self", "risk"), "confirmed"]  # a negative r with sign -1 is confirmed
    assert declared.loc[("pooled", "ext_self", "talk"), "confirmed"]
    assert not table[~table["declared"]]["confirmed"].any()
    # r is over respondent means (samples averaged within model x respondent), never over rows
    means = frame.groupby(["model", "respondent"])[["ext_self", "risk"]].mean().loc["m0"]
    expected = np.corrcoef(means["ext_self"], means["risk"])[0, 1]
    assert declared.loc[("m0", "ext_self", "risk"), "r"] == pytest.approx(expected, abs=1e-12)
    assert declared.loc[("m0", "ext_self", "risk"), "n"] == 12
    for name in ("dissociation.csv", "validity_mixed.csv", "validity.html", "validity.json", "manipulation_check.csv"):
        assert (tmp_path / "out" / name).is_file(), name
    mixed = pd.read_csv(tmp_path / "out" / "validity_mixed.csv")
    assert set(zip(mixed["trait"], mixed["task"])) == {("ext_self", "talk"), ("ext_self", "risk"), ("con_self", "talk")}
    check = pd.read_csv(tmp_path / "out" / "manipulation_check.csv")  # target_<trait> columns give the check
    pooled = check[check["scope"] == "pooled"].set_index("measure")["r"]
    assert (check["trait"] == "ext_self").all() and pooled["self-report"] > 0.5 and pooled["talk"] > 0.5
    assert abs(pooled["risk"]) < 0.3  # risk follows the respondent's own level, not the target
    assert result.headline()["declared_pairs"]


def test_declared_pairs_equal_the_default_derivation_for_run_data():
    """``declared`` given as the tasks' own traits and directions reproduces the default tables exactly."""
    from psychometrics.validity import statistics as st

    rng = np.random.default_rng(3)
    selfs, behaviours = [], []
    for model in ("a", "b"):
        for persona in range(8):
            level = rng.normal()
            for trait in ("E", "A"):
                selfs.append((model, f"p{persona}", "inv", trait, trait, 1, level + rng.normal(), "c"))
            for task, trait, direction in (("t1", "E", 1), ("t2", "A", -1)):
                for variant in ("v1", "v2"):
                    behaviours.append((model, f"p{persona}", 0, task, variant, trait, direction, "valid",
                                       direction * level + rng.normal()))
    selfreport = pd.DataFrame(selfs, columns=list(st.SELFREPORT_COLUMNS))
    behavior = pd.DataFrame(behaviours, columns=list(st.BEHAVIOR_COLUMNS))
    default = st.validity_tables(selfreport, behavior, n_boot=200)
    explicit = st.validity_tables(selfreport, behavior, n_boot=200, declared={("E", "t1"): 1, ("A", "t2"): -1})
    for name in ("validity_pairs", "dissociation", "validity_mixed"):
        pd.testing.assert_frame_equal(default[name], explicit[name])


def test_equal_self_report_means_across_models_are_a_note_not_a_crash(tmp_path):
    """The between-model column is constant when every model has the same mean self-report: the mixed model
    is not estimable (it used to raise a singular-matrix error)."""
    text = "model,respondent,a,b\n" + "".join(f"m{m},r{r},{r},{r * (m + 1) + (r % 2)}\n"
                                             for m in range(2) for r in range(5))
    scores, pairs = _write(tmp_path, text, "- {selfreport: a, behavior: b, sign: 1}\n")
    api.validity(scores=scores, pairs=pairs, out=tmp_path / "out", bootstrap=200)
    mixed = pd.read_csv(tmp_path / "out" / "validity_mixed.csv")
    assert mixed["within"].isna().all() and mixed["note"].str.contains("varying within and between").all()


GOOD = "model,respondent,sample,a,b\n" + "".join(f"m,r{i},1,{i},{i % 3}\n" for i in range(6))
GOOD_PAIRS = "- {selfreport: a, behavior: b, sign: 1}\n"

HOSTILE = [
    # (scores text, pairs text, fragments the one-line error must contain)
    ("", GOOD_PAIRS, ["scores.csv", "empty file"]),
    ("model,respondent,a,b\n", GOOD_PAIRS, ["scores.csv", "no data rows"]),
    ("model,a,b\nm,1,2\n", GOOD_PAIRS, ["scores.csv", "'respondent'"]),
    ("respondent,a,b\nr,1,2\n", GOOD_PAIRS, ["scores.csv", "'model'"]),
    ("model,respondent,a,a\nm,r,1,2\n", GOOD_PAIRS, ["scores.csv", "'a' appears twice"]),
    ("model,respondent,,b\nm,r,1,2\n", GOOD_PAIRS, ["scores.csv", "column 3 has no name"]),
    (GOOD.replace("r2,1,2,", "r2,1,two,"), GOOD_PAIRS, ["scores.csv", "row 4", "column a", "not a number"]),
    (GOOD.replace("r2,1,2,", "r2,1,inf,"), GOOD_PAIRS, ["scores.csv", "row 4", "column a", "not a finite number"]),
    (GOOD.replace("r2,1,2,", "r2,1,nan,"), GOOD_PAIRS, ["scores.csv", "row 4", "column a", "not a finite number"]),
    (GOOD.replace("m,r3,", ",r3,"), GOOD_PAIRS, ["scores.csv", "row 5", "column model", "empty"]),
    (GOOD.replace("m,r3,1,", "m,r2,1,"), GOOD_PAIRS, ["scores.csv", "rows 4 and 5", "same model, respondent and sample"]),
    (GOOD.replace("m,r3,1,3,0", "m,r3,1,3,0,9"), GOOD_PAIRS, ["scores.csv", "row 5", "cells"]),
    (GOOD.replace("m,r3,1,3,0", "m,r3,1"), GOOD_PAIRS, ["scores.csv", "row 5", "cells"]),
    ("model,respondent,a,b\n" + "".join(f"m,r{i},{i},\n" for i in range(4)), GOOD_PAIRS,
     ["scores.csv", "column b has no value"]),
    ("model,respondent,a,b\nm,r1,1,2\nm,r2,2,3\n", GOOD_PAIRS, ["scores.csv", "2 respondent(s)", "at least 3"]),
    ("model,respondent,target_,a,b\nm,r,1,1,2\n", GOOD_PAIRS, ["scores.csv", "target_", "names no trait"]),
    ("model,respondent,sample,target_a,a,b\n" + "".join(f"m,r{i % 3},{i},{i},{i},{i}\n" for i in range(6)),
     GOOD_PAIRS, ["scores.csv", "column target_a", "more than one target level"]),
    (GOOD, "", ["pairs.yaml", "empty file"]),
    (GOOD, "selfreport: a\n", ["pairs.yaml", "non-empty list"]),
    (GOOD, "[]\n", ["pairs.yaml", "non-empty list"]),
    (GOOD, "- a\n", ["pairs.yaml", "entry 1", "expected"]),
    (GOOD, "- {selfreport: a, behavior: c, sign: 1}\n", ["pairs.yaml", "entry 1", "behavior 'c'", "not a column"]),
    (GOOD, "- {selfreport: model, behavior: b, sign: 1}\n", ["pairs.yaml", "entry 1", "not a measure column"]),
    (GOOD, "- {selfreport: a, behavior: b, sign: 2}\n", ["pairs.yaml", "entry 1", "sign 2", "1", "-1"]),
    (GOOD, "- {selfreport: a, behavior: b, sign: true}\n", ["pairs.yaml", "entry 1", "sign True"]),
    (GOOD, "- {selfreport: a, behavior: b, sign: '1'}\n", ["pairs.yaml", "entry 1", "sign '1'"]),
    (GOOD, "- {selfreport: a, behavior: b, sign: 1.0}\n", ["pairs.yaml", "entry 1", "sign 1.0"]),
    (GOOD, "- {selfreport: a, behavior: b}\n", ["pairs.yaml", "entry 1", "no 'sign'"]),
    (GOOD, "- {selfreport: a, behavior: b, sign: 1, weight: 2}\n", ["pairs.yaml", "entry 1", "unknown key 'weight'"]),
    (GOOD, GOOD_PAIRS * 2, ["pairs.yaml", "entry 2", "already entry 1"]),
    (GOOD, GOOD_PAIRS + "- {selfreport: b, behavior: a, sign: 1}\n", ["pairs.yaml", "entry 2", "column 'b'",
                                                                     "either self-report or behaviour"]),
    (GOOD, "- {selfreport: a, behavior: a, sign: 1}\n", ["pairs.yaml", "entry 1", "column 'a'",
                                                          "either self-report or behaviour"]),
    (GOOD, "- {selfreport: [a], behavior: b, sign: 1}\n", ["pairs.yaml", "entry 1", "selfreport ['a']"]),
    (GOOD, "- {selfreport: a, behavior: b, sign: 1, sign: -1}\n", ["pairs.yaml"]),
]


@pytest.mark.parametrize("scores_text, pairs_text, fragments", HOSTILE, ids=[str(i) for i in range(len(HOSTILE))])
def test_hostile_scores_and_pairs_are_one_line_errors(tmp_path, scores_text, pairs_text, fragments):
    scores, pairs = _write(tmp_path, scores_text, pairs_text)
    with pytest.raises(PsytestError) as caught:
        api.validity(scores=scores, pairs=pairs, out=tmp_path / "out", bootstrap=200)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_the_command_line_exits_2_with_one_line_and_no_traceback(tmp_path):
    scores, pairs = _write(tmp_path, GOOD.replace("r2,1,2,", "r2,1,=1+2,"), GOOD_PAIRS)
    bad = _cli("validity", "--scores", str(scores), "--pairs", str(pairs), "--out", str(tmp_path / "out"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "row 4, column a" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    both = _cli("validity", "--scores", str(scores), "--pairs", str(pairs), "--selfreport", str(tmp_path),
                "--out", str(tmp_path / "out"))
    assert both.returncode == 2 and "not both" in both.stderr and "Traceback" not in both.stderr
    alone = _cli("validity", "--scores", str(scores), "--out", str(tmp_path / "out"))
    assert alone.returncode == 2 and "--pairs is missing" in alone.stderr
    scores.write_text(GOOD, encoding="utf-8")
    no_out = _cli("validity", "--scores", str(scores), "--pairs", str(pairs))
    assert no_out.returncode == 2 and "--out" in no_out.stderr
    missing = _cli("validity", "--scores", str(tmp_path / "nope.csv"), "--pairs", str(pairs), "--out", str(tmp_path / "o"))
    assert missing.returncode == 2 and "nope.csv" in missing.stderr and "Traceback" not in missing.stderr


def test_any_measure_name_is_a_measure(tmp_path):
    """Column names psytest uses inside (line, persona, score, task) are plain measures in a scores file."""
    text = "model,respondent,line,persona,score,task\n" + "".join(
        f"m,r{i},{i},{i % 4},{i * i},{(i * 7) % 5}\n" for i in range(8))
    pairs = "- {selfreport: line, behavior: score, sign: 1}\n- {selfreport: persona, behavior: task, sign: -1}\n"
    scores, pairs_path = _write(tmp_path, text, pairs)
    api.validity(scores=scores, pairs=pairs_path, out=tmp_path / "out", bootstrap=200)
    table = pd.read_csv(tmp_path / "out" / "validity_pairs.csv").set_index(["trait", "task"])
    assert table.loc[("line", "score"), "r"] == pytest.approx(np.corrcoef(np.arange(8), np.arange(8) ** 2)[0, 1])
    assert table.loc[("persona", "task"), "expected_sign"] == -1


def test_model_names_from_a_file_are_inert_in_the_page(tmp_path):
    text = GOOD.replace("m,", "<script>alert(1)</script>,")
    scores, pairs = _write(tmp_path, text, GOOD_PAIRS)
    api.validity(scores=scores, pairs=pairs, out=tmp_path / "out", bootstrap=200)
    assert "<script>alert(1)</script>" not in (tmp_path / "out" / "validity.html").read_text(encoding="utf-8")


# ------------------------------------------------------------------------- the committed published-data report


def test_the_published_data_are_committed_unchanged_with_their_licence():
    data = REPORT / "data"
    assert "MIT License" in (data / "LICENSE").read_text(encoding="utf-8")
    assert "a934083dcccd4428396497020578e89ffc9c51f8" in (data / "SOURCE.md").read_text(encoding="utf-8")
    selfs = pd.read_csv(data / "instruct_models_selfreport.csv")
    assert len(selfs) == 324 and selfs["Model"].nunique() == 12
    assert {"gpt-4o", "claude-3-7-sonnet-20250219"} <= set(selfs["Model"])


def test_the_committed_scores_and_pairs_are_what_the_converter_makes(tmp_path):
    from psychometrics.validity.published import write_personality_illusion

    scores, pairs = write_personality_illusion(REPORT / "data", tmp_path)
    assert scores.read_bytes() == (REPORT / "scores.csv").read_bytes()
    assert pairs.read_bytes() == (REPORT / "pairs.yaml").read_bytes()
    frame = pd.read_csv(scores)
    # the respondent is model x system prompt x temperature; the three runs are its samples
    assert frame.groupby(["model", "respondent"]).size().eq(3).all()
    assert frame.groupby("model")["respondent"].nunique().eq(9).all()


def test_the_committed_published_data_report_reproduces():
    """Every committed table of reports/personality-illusion/validity recomputed from the committed scores."""
    from psychometrics.analysis.reproduce_scores import reproduce_scores_validity

    result = reproduce_scores_validity(REPORT / "validity")
    assert result.passed, result.summary()
    committed = {f"validity/{p.name}" for p in (REPORT / "validity").glob("*.csv") if p.name != "run_info.csv"}
    assert len(committed) >= 7 and committed <= set(result.files_checked)


def test_reproduce_notices_a_changed_scores_file(tmp_path):
    import shutil

    from psychometrics.analysis.reproduce_scores import reproduce_scores_validity

    copy = tmp_path / "report"
    shutil.copytree(REPORT, copy)
    scores = copy / "scores.csv"
    lines = scores.read_text(encoding="utf-8").splitlines(keepends=True)
    cells = lines[1].split(",")
    cells[3] = str(float(cells[3]) + 1)  # one self-report value of one run
    lines[1] = ",".join(cells)
    scores.write_text("".join(lines), encoding="utf-8")
    result = reproduce_scores_validity(copy / "validity")
    assert not result.passed
    assert "stale" in set(result.mismatches["problem"])


def test_the_published_data_report_equals_r():
    """Committed validity_pairs (declared rows) and validity_mixed against tests/reference/personality_illusion.R:
    respondent means, cor.test per model, lm(b ~ s + model) pooled, p.adjust BH, lmer within/between."""
    golden = pd.read_csv(ROOT / "tests" / "reference" / "golden" / "personality_illusion.csv")
    pairs = pd.read_csv(REPORT / "validity" / "validity_pairs.csv")
    declared = pairs[pairs["declared"]].set_index(["scope", "trait", "task"])
    correlations = golden[golden["scope"] != "mixed"]
    assert len(correlations) == len(declared) == 13 * 8
    for row in correlations.itertuples(index=False):
        mine = declared.loc[(row.scope, row.trait, row.task)]
        assert mine["n"] == row.n
        if np.isnan(row.r):
            assert np.isnan(mine["r"])
            continue
        assert mine["r"] == pytest.approx(row.r, abs=1e-9)
        assert mine["p"] == pytest.approx(row.p, abs=1e-9, rel=1e-6)
        assert mine["p_bh_declared"] == pytest.approx(row.p_bh_declared, abs=1e-9, rel=1e-6)
    mixed = pd.read_csv(REPORT / "validity" / "validity_mixed.csv").set_index(["trait", "task"])
    for row in golden[golden["scope"] == "mixed"].itertuples(index=False):
        assert mixed.loc[(row.trait, row.task), "within"] == pytest.approx(row.within, abs=1e-6)
        assert mixed.loc[(row.trait, row.task), "between"] == pytest.approx(row.between, abs=1e-6)
