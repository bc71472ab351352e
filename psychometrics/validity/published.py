"""Published data as ``psytest validity --scores`` input: the Personality Illusion baseline data.

Han, P., Kocielnik, R., Song, P., Debnath, R., Mobbs, D., Anandkumar, A., & Alvarez, R. M. (2025). The
Personality Illusion: Revealing dissociation between self-reports & behavior in LLMs. arXiv:2509.03730.
Data: github.com/psychology-of-AI/Personality-Illusion, ``data/baseline_responses/`` (MIT licence).

The release has one row per model x system prompt (``persona_index`` 1-3 of the ``baseline`` persona: no
system prompt, "You are a helpful assistant.", "Respond to the instructions.") x temperature (0.3, 0.7,
1.0) x run (1-3), in two files: self-reports (Big Five scale means on the BFI's 1-5 scale, self-regulation
as a sum score) and behavioural tasks. Rows of the two files share these keys, but a self-report row and a
behaviour row of the same run are *not* one session: the repository's notebooks send every questionnaire
item and every task trial as its own single-turn request, so run 2 of the questionnaire and run 2 of a
task are independent draws under the same settings. The respondent is therefore the fixed configuration
``model x system prompt x temperature`` (9 per model, 108 in all) and its 3 runs are samples, averaged
within the respondent; pairing runs by their index would correlate unrelated draws.

Column names are corrected (the release spells ``openeness``, ``consciencienes``, ``Calibaration``); the
mapping is :data:`RENAME`. Pairs (:data:`PAIRS`, each with its source): the two trait-behaviour pairings
the repository's persona-injection data are built on (agreeableness personas measured on sycophancy,
self-regulation personas on risk taking; ``data/README.md``), and associations reported in the human
literature for the same tasks (risk taking: Nicholson et al., 2005; prejudice: Sibley & Duckitt, 2008).
Calibration and consistency (the honesty task) are left out: the release does not say which direction of
those scores is the better one.

References
----------
Nicholson, N., Soane, E., Fenton-O'Creevy, M., & Willman, P. (2005). Personality and domain-specific risk
taking. Journal of Risk Research, 8, 157-176.
Sibley, C. G., & Duckitt, J. (2008). Personality and prejudice: A meta-analysis and theoretical review.
Personality and Social Psychology Review, 12, 248-279.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from psychometrics.errors import PsytestError

SELFREPORT_FILE = "instruct_models_selfreport.csv"
BEHAVIOR_FILE = "instruct_models_behavioral_tasks.csv"
KEYS = ["Model", "Persona", "persona_index", "temp", "run"]
RENAME = {
    "openeness": "openness", "consciencienes": "conscientiousness", "extraversion": "extraversion",
    "agreeableness": "agreeableness", "neuroticism": "neuroticism", "self_regulation": "self_regulation",
    "CCT_cold_avg": "cct_risk", "IAT_Overall": "iat_bias", "sycophancy_rate": "sycophancy_rate",
    "Calibaration": "calibration", "Consistency": "consistency",
}
SELFREPORT_MEASURES = ["openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism",
                       "self_regulation"]
BEHAVIOR_MEASURES = ["cct_risk", "iat_bias", "sycophancy_rate", "calibration", "consistency"]

_REPO = "psychology-of-AI/Personality-Illusion data/README.md (persona-injection design)"
_NICHOLSON = "Nicholson et al. (2005): risk taking higher with extraversion and openness, lower with neuroticism " \
             "and conscientiousness"
_SIBLEY = "Sibley & Duckitt (2008): prejudice lower with openness and agreeableness"
PAIRS = [
    ("agreeableness", "sycophancy_rate", 1, f"{_REPO}: agreeableness personas measured on sycophancy"),
    ("self_regulation", "cct_risk", -1, f"{_REPO}: self-regulation personas measured on risk taking"),
    ("openness", "cct_risk", 1, _NICHOLSON),
    ("extraversion", "cct_risk", 1, _NICHOLSON),
    ("conscientiousness", "cct_risk", -1, _NICHOLSON),
    ("neuroticism", "cct_risk", -1, _NICHOLSON),
    ("openness", "iat_bias", -1, _SIBLEY),
    ("agreeableness", "iat_bias", -1, _SIBLEY),
]


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise PsytestError(f"{path}: no such file; give the folder with the released {SELFREPORT_FILE} and "
                           f"{BEHAVIOR_FILE}")
    frame = pd.read_csv(path)
    missing = [c for c in [*KEYS, *columns] if c not in frame.columns]
    if missing:
        raise PsytestError(f"{path}: no column {missing[0]}; is it the released file?")
    if frame.duplicated(KEYS).any():
        raise PsytestError(f"{path}: a (Model, Persona, persona_index, temp, run) key appears twice")
    return frame


def personality_illusion_scores(data_dir: Path) -> pd.DataFrame:
    """SCORES rows (one per model x system prompt x temperature x run) of the released instruct-model data.

    ``respondent`` is ``<persona>-<persona_index>@t<temp>`` (the configuration), ``sample`` the run;
    measures carry the corrected names of :data:`RENAME`. Self-report and behaviour of the same key share
    a row for compactness only: the analysis averages each within the respondent before relating them.
    """
    data_dir = Path(data_dir)
    released = {v: k for k, v in RENAME.items()}
    selfs = _read(data_dir / SELFREPORT_FILE, [released[m] for m in SELFREPORT_MEASURES])
    behaviours = _read(data_dir / BEHAVIOR_FILE, [released[m] for m in BEHAVIOR_MEASURES])
    merged = selfs[[*KEYS, *(released[m] for m in SELFREPORT_MEASURES)]].merge(
        behaviours[[*KEYS, *(released[m] for m in BEHAVIOR_MEASURES)]], on=KEYS, how="outer", validate="1:1")
    merged = merged.rename(columns=RENAME)
    respondent = [f"{p}-{int(i)}@t{t:g}" for p, i, t in zip(merged["Persona"], merged["persona_index"], merged["temp"])]
    out = pd.DataFrame({"model": merged["Model"], "respondent": respondent, "sample": merged["run"].astype(int)})
    out = pd.concat([out, merged[SELFREPORT_MEASURES + BEHAVIOR_MEASURES]], axis=1)
    return out.sort_values(["model", "respondent", "sample"], kind="stable").reset_index(drop=True)


def pairs_yaml() -> str:
    """PAIRS.yaml text of :data:`PAIRS`, each entry with its source as a comment."""
    lines = ["# Declared pairs for the Personality Illusion baseline data (psychometrics.validity.published).",
             "# sign 1: behaviour rises with the self-report; -1: it falls."]
    for selfreport, behavior, sign, source in PAIRS:
        lines += [f"# {source}", f"- {{selfreport: {selfreport}, behavior: {behavior}, sign: {sign}}}"]
    return "\n".join(lines) + "\n"


def write_personality_illusion(data_dir: Path, out_dir: Path) -> tuple[Path, Path]:
    """Write ``scores.csv`` and ``pairs.yaml`` for ``psytest validity --scores`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores_path, pairs_path = out_dir / "scores.csv", out_dir / "pairs.yaml"
    personality_illusion_scores(data_dir).to_csv(scores_path, index=False, lineterminator="\n", float_format="%.10g")
    pairs_path.write_text(pairs_yaml(), encoding="utf-8")
    return scores_path, pairs_path


def main(argv: list[str] | None = None) -> int:
    """``python -m psychometrics.validity.published DATA_DIR OUT_DIR``."""
    from psychometrics.cli.terminal import echo, echo_error

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        echo("usage: python -m psychometrics.validity.published DATA_DIR OUT_DIR", err=True)
        return 2
    try:
        for path in write_personality_illusion(Path(args[0]), Path(args[1])):
            echo(path)
    except PsytestError as exc:
        echo_error(exc)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
