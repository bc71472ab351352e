"""Why psytest computes most statistics itself: the design card's libraries measured against R.

Usage: python benchmarks/design_card_libraries.py [--spi] [--fa-python PATH] [--calls 20]

Prints, on held-out data (psychTools' bfi and spi; R's values from tests/reference/golden/):

1. factor_analyzer 0.5.1: the exception of ``FactorAnalyzer.fit`` under this scikit-learn, and of its CFA
   model specification under this pandas; then (with scikit-learn's renamed keyword passed through, the only
   change needed) its 5-factor minres/oblimin EFA of bfi beside psych's: loadings, ``phi_`` as returned and
   once permuted, communalities, and the chi-square its loadings and ``phi_`` imply. ``--fa-python PATH``
   also fits it unpatched in another interpreter (e.g. a venv with scikit-learn < 1.8 and pandas < 3).
   ``--spi`` times it against psytest's EFA on the first 70 items of psychTools::spi (4,000 people),
   exported through Rscript.
2. statsmodels: ``MixedLM`` against ``lmer`` and psytest's ``random_intercept_reml`` on the spi models of
   tests/reference/library_crosscheck.R (group variance, ``converged``, REML criterion); the import and the
   per-call cost of ``multipletests`` (Holm, BH) against psytest's.
3. pingouin: its rounding defaults and the normal-approximation d interval beside psytest's noncentral-t one.
4. scipy: ``bootstrap(method="BCa")`` on the resamples R's boot drew, against ``boot.ci``.

Nothing is asserted here; tests/test_library_crosscheck.py asserts the claims.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "reference"
REVERSED = ["A1", "C4", "C5", "E1", "E2", "O2", "O5"]

# Run by --fa-python in the other interpreter: fit, then print what is compared, as JSON.
FA_SCRIPT = """
import json, sys, time, warnings
import numpy as np, pandas as pd, sklearn
warnings.simplefilter("ignore")
from factor_analyzer import FactorAnalyzer
data = pd.read_csv(sys.argv[1])
start = time.perf_counter()
fit = FactorAnalyzer(n_factors=int(sys.argv[2]), rotation="oblimin", method=sys.argv[3]).fit(data)
print(json.dumps({"seconds": time.perf_counter() - start, "loadings": fit.loadings_.tolist(),
                  "phi": fit.phi_.tolist(), "sklearn": sklearn.__version__, "pandas": pd.__version__}))
"""


def versions() -> str:
    import factor_analyzer  # noqa: F401 - installed?
    import pingouin
    import scipy
    import sklearn
    import statsmodels
    from importlib.metadata import version

    return (f"numpy {np.__version__}, pandas {pd.__version__}, scipy {scipy.__version__}, scikit-learn "
            f"{sklearn.__version__}, statsmodels {statsmodels.__version__}, pingouin {pingouin.__version__}, "
            f"factor_analyzer {version('factor_analyzer')}")


def bfi() -> pd.DataFrame:
    from psychometrics.statistics.reliability import reverse_key

    return reverse_key(pd.read_csv(REFERENCE / "data" / "bfi25.csv"), REVERSED, 1, 6)


def patched_factor_analyzer():
    """factor_analyzer with scikit-learn's ``force_all_finite`` passed on as ``ensure_all_finite``."""
    import factor_analyzer.factor_analyzer as module
    from sklearn.utils import check_array

    def compatible(x, force_all_finite=True, **kwargs):
        return check_array(x, ensure_all_finite=force_all_finite, **kwargs)

    module.check_array = compatible
    return module.FactorAnalyzer


def chi_square(loadings: np.ndarray, phi: np.ndarray, r: np.ndarray, n_obs: int) -> float:
    """psych's likelihood-ratio statistic of the model L Phi L' (unit diagonal) for the correlations r."""
    model = loadings @ phi @ loadings.T
    np.fill_diagonal(model, 1.0)
    m_inv_r = np.linalg.solve(model, r)
    p, k = loadings.shape
    objective = np.trace(m_inv_r) - np.linalg.slogdet(m_inv_r)[1] - p
    return float(objective * ((n_obs - 1) - (2 * p + 5) / 6 - 2 * k / 3))


def align(loadings: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each column of ``loadings``, the column of ``truth`` it is (by congruence) and the sign."""
    congruence = loadings.T @ truth / np.outer(np.linalg.norm(loadings, axis=0), np.linalg.norm(truth, axis=0))
    match = np.abs(congruence).argmax(axis=1)
    return match, np.sign(congruence[np.arange(len(match)), match])


def compare_with_psych(label: str, loadings: np.ndarray, phi: np.ndarray, data: pd.DataFrame) -> None:
    gold = next(f for f in json.loads((REFERENCE / "golden" / "factor_analysis.json").read_text())["fa"]
                if f["name"] == "bfi25_minres_oblimin")
    truth, psych_phi = np.array(gold["loadings"]["values"]), np.array(gold["Phi"]["values"])
    match, signs = align(loadings, truth)
    phi_true = psych_phi[np.ix_(match, match)] * np.outer(signs, signs)
    best = min(((np.abs(phi[np.ix_(p, p)] - phi_true * np.outer(s, s)).max(), p)
                for p in itertools.permutations(range(len(match)))
                for s in itertools.product((1, -1), repeat=len(match))), key=lambda t: t[0])
    h2_fa = (loadings**2).sum(axis=1)  # factor_analyzer's get_communalities()
    h2_right = np.diag(loadings @ phi_true @ loadings.T)
    r = data.corr().to_numpy()
    print(f"  {label}:")
    print(f"    loadings vs psych (matched columns): max |diff| {np.abs(loadings * signs - truth[:, match]).max():.2e}")
    print(f"    phi_ vs psych's Phi: max |diff| {np.abs(phi - phi_true).max():.3f} "
          f"(off-diagonal |diff| {np.abs(phi - phi_true)[~np.eye(len(match), dtype=bool)].min():.3f}.."
          f"{np.abs(phi - phi_true).max():.3f}); permuted by {list(best[1])}: {best[0]:.1e}")
    print(f"    communalities (sum of squared pattern loadings) vs psych h2: max |diff| "
          f"{np.abs(h2_fa - np.array(gold['communality'])).max():.3f}; diag(L Phi L') would give "
          f"{np.abs(h2_right - np.array(gold['communality'])).max():.1e}")
    print(f"    chi-square from its loadings and phi_: {chi_square(loadings, phi, r, len(data)):.1f}; with Phi in "
          f"order: {chi_square(loadings, phi_true, r, len(data)):.1f}; psych: {gold['stats']['STATISTIC']:.1f}")


def factor_analyzer_section(args, data: pd.DataFrame) -> None:
    from factor_analyzer import FactorAnalyzer, ModelSpecificationParser

    print("\n1. factor_analyzer")
    for what, call in (
        ("FactorAnalyzer(5, oblimin, minres).fit(bfi)",
         lambda: FactorAnalyzer(n_factors=5, rotation="oblimin", method="minres").fit(data)),
        ("ModelSpecificationParser.parse_model_specification_from_dict(bfi, {...})",
         lambda: ModelSpecificationParser.parse_model_specification_from_dict(data, {"A": ["A2", "A3"],
                                                                                    "C": ["C1", "C2"]})),
    ):
        try:
            call()
            print(f"  {what}: runs")
        except Exception as error:  # noqa: BLE001 - the exception is the measurement
            print(f"  {what}: {type(error).__name__}: {error}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = patched_factor_analyzer()(n_factors=5, rotation="oblimin", method="minres").fit(data)
    compare_with_psych("with force_all_finite passed on as ensure_all_finite", fit.loadings_, fit.phi_, data)
    if args.fa_python:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bfi.csv"
            data.to_csv(path, index=False)
            out = subprocess.run([args.fa_python, "-c", FA_SCRIPT, str(path), "5", "minres"], capture_output=True,
                                 text=True, check=True)
        result = json.loads(out.stdout)
        compare_with_psych(f"unpatched under {args.fa_python} (scikit-learn {result['sklearn']}, pandas "
                           f"{result['pandas']}), fit in {result['seconds']:.2f} s",
                           np.array(result["loadings"]), np.array(result["phi"]), data)
    if args.spi:
        spi_timing(args)


def spi_timing(args) -> None:
    from psychometrics.statistics.efa import efa

    if not shutil.which("Rscript"):
        print("  --spi: Rscript not found; skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spi70.csv"
        subprocess.run(["Rscript", "-e", f"write.csv(psychTools::spi[, 11:80], '{path}', row.names = FALSE)"],
                       check=True, capture_output=True)
        items = pd.read_csv(path)
        print(f"  psychTools::spi, first 70 items: {items.shape[0]} x {items.shape[1]}, 5 factors, oblimin "
              "(wall s / CPU s of this process; the machine's other load shows in the gap)")
        FactorAnalyzer = patched_factor_analyzer()
        for method in ("minres", "ml"):
            for name, fit in (("psytest efa", lambda: efa(items, 5, method=method, rotation="oblimin")),
                              ("factor_analyzer", lambda: FactorAnalyzer(n_factors=5, rotation="oblimin",
                                                                         method=method).fit(items))):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    wall, cpu = time.perf_counter(), time.process_time()
                    fit()
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    print(f"    {method:6s} {name:16s} {wall:7.2f} s  {cpu:7.2f} s")
            if args.fa_python:
                out = subprocess.run([args.fa_python, "-c", FA_SCRIPT, str(path), "5", method], capture_output=True,
                                     text=True, check=True)
                print(f"    {method:6s} {'factor_analyzer':16s} {json.loads(out.stdout)['seconds']:7.2f} s  "
                      f"(unpatched, {args.fa_python})")


def statsmodels_section(args) -> None:
    import statsmodels.api as sm

    from psychometrics.statistics.mixed_model import random_intercept_reml

    print("\n2. statsmodels")
    spi = pd.read_csv(REFERENCE / "data" / "spi-scores.csv")
    golden = json.loads((REFERENCE / "golden" / "library_crosscheck.json").read_text())["mixed"]
    print("  random intercept, REML (psychTools::spi): group variance, and REML criterion minus lmer's")
    print(f"    {'model':28s} {'lmer':>10s} {'psytest':>10s} {'MixedLM':>10s} {'converged':>9s} "
          f"{'psytest':>9s} {'MixedLM':>9s}  MixedLM warnings")
    for ref in golden:
        frame = spi.dropna(subset=[ref["score"], ref["group"], "age"])
        y = frame[ref["score"]].to_numpy(float)
        x = np.column_stack([np.ones(len(frame)), frame["age"].to_numpy(float)])
        groups = frame[ref["group"]].to_numpy()
        ours = random_intercept_reml(y, x, groups)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = sm.MixedLM(y, x, groups=groups).fit(reml=True)
        said = "; ".join(sorted({str(w.message).split(".")[0][:45] for w in caught}))
        print(f"    {ref['score'] + ' ~ age + (1|' + ref['group'] + ')':28s} {ref['group_variance']:10.6f} "
              f"{ours['group_variance']:10.6f} {float(np.asarray(fit.cov_re)[0, 0]):10.6f} {str(fit.converged):>9s} "
              f"{ours['reml_criterion'] - ref['reml']:9.1e} {-2 * fit.llf - ref['reml']:9.3f}  {said or '-'}")

    importing = "import time; t = time.perf_counter(); import statsmodels.stats.multitest; print(time.perf_counter() - t)"
    imported = float(subprocess.run([sys.executable, "-c", importing], capture_output=True, text=True, check=True).stdout)
    from statsmodels.stats.multitest import multipletests
    from psychometrics.statistics.correlation import bh_adjust
    from psychometrics.statistics.design_effects import holm_adjust

    p = list(np.random.default_rng(14).random(4))
    print(f"  multipletests, 4 p values ({args.calls} calls each; import of statsmodels.stats.multitest "
          f"{imported:.2f} s in a fresh interpreter; {len(gc.get_objects()):,} objects tracked by the garbage collector):")
    for name, call in (("multipletests holm", lambda: multipletests(p, method="holm")),
                       ("psytest Holm", lambda: holm_adjust(p)),
                       ("multipletests fdr_bh", lambda: multipletests(p, method="fdr_bh")),
                       ("psytest BH", lambda: bh_adjust(p))):
        started = time.perf_counter()
        for _ in range(args.calls):
            call()
        print(f"    {name:22s} {(time.perf_counter() - started) / args.calls * 1e3:10.3f} ms a call")
    print("    (statsmodels' Holm branch runs gc.collect() on every call)")


def pingouin_section(data: pd.DataFrame) -> None:
    import pingouin

    from psychometrics.statistics.reliability import cronbach_alpha, icc
    from psychometrics.statistics.design_effects import dz_interval

    print("\n3. pingouin")
    print(f"  default options: {({k: v for k, v in pingouin.options.items() if not callable(v)})}")
    items = data[[f"C{j}" for j in range(1, 6)]]
    long = items.reset_index().melt(id_vars="index", var_name="item", value_name="answer")
    ci = pingouin.intraclass_corr(long, targets="index", raters="item", ratings="answer")["CI95"].iloc[1]
    ours = icc(items)["ICC2"]
    print(f"  ICC(A,1) interval of the 5 C items: pingouin {[float(v) for v in ci]}, "
          f"psytest [{ours.ci_low:.6f}, {ours.ci_high:.6f}]")
    alpha, interval = pingouin.cronbach_alpha(items)
    mine = cronbach_alpha(items)
    print(f"  alpha {alpha:.6f}: pingouin's interval {[float(v) for v in interval]} (always 3 decimals), psytest "
          f"[{mine.ci_low:.6f}, {mine.ci_high:.6f}]")
    print("  d_z interval, n = 200 pairs: pingouin's normal approximation vs psytest's noncentral t")
    for dz in (0.1, 0.3, 0.5):
        t = dz * np.sqrt(200)
        low, high = dz_interval(t, 199, 200, 0.95)
        theirs = pingouin.compute_esci(dz, nx=200, ny=200, paired=True, eftype="cohen", decimals=15)
        print(f"    d_z {dz}: pingouin [{theirs[0]:.5f}, {theirs[1]:.5f}], psytest [{low:.5f}, {high:.5f}]")
    for n in (10, 30):
        low, high = dz_interval(0.5 * np.sqrt(n), n - 1, n, 0.95)
        theirs = pingouin.compute_esci(0.5, nx=n, ny=n, paired=True, eftype="cohen", decimals=15)
        print(f"    d_z 0.5, n = {n}: pingouin [{theirs[0]:.4f}, {theirs[1]:.4f}], psytest [{low:.4f}, {high:.4f}]")


class GivenResamples(np.random.Generator):
    """Hands scipy.stats.bootstrap the resamples R's boot drew (as ``integers``)."""

    def __init__(self, indices: np.ndarray):
        super().__init__(np.random.PCG64(0))
        self.indices = indices

    def integers(self, low, high=None, size=None, *args, **kwargs):
        assert tuple(np.atleast_1d(size)) == self.indices.shape
        return self.indices


def scipy_section() -> None:
    from scipy import stats

    from psychometrics.statistics.correlation import bca_interval

    print("\n4. scipy.stats.bootstrap(method='BCa') vs boot.ci on boot's own resamples (r, 999 resamples)")
    golden = json.loads((REFERENCE / "golden" / "validity.json").read_text())["bca"]
    resamples = pd.read_csv(REFERENCE / "data" / "validity-bca-resamples.csv")
    for ref in golden:
        if len(set(ref["groups"])) > 1:
            print(f"  {ref['name']}: stratified, which scipy's bootstrap cannot do")
            continue
        x, y = np.array(ref["x"]), np.array(ref["y"])
        drawn = resamples.loc[resamples["case"] == ref["name"], "resample"]
        indices = np.array([[int(v) for v in row.split()] for row in drawn])
        ours = bca_interval(x, y, np.array(ref["groups"]), indices=indices)
        theirs = stats.bootstrap((x, y), lambda a, b, axis=-1: stats.pearsonr(a, b, axis=axis).statistic, paired=True,
                                 vectorized=True, n_resamples=len(indices), method="BCa",
                                 rng=GivenResamples(indices)).confidence_interval
        print(f"  {ref['name']}: boot.ci [{ref['low']:.6f}, {ref['high']:.6f}]; scipy off by "
              f"{theirs.low - ref['low']:+.1e} / {theirs.high - ref['high']:+.1e}; psytest off by "
              f"{ours['low'] - ref['low']:+.0e} / {ours['high'] - ref['high']:+.0e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spi", action="store_true", help="time the EFAs on psychTools::spi (needs Rscript)")
    parser.add_argument("--fa-python", help="an interpreter where factor_analyzer runs unpatched")
    parser.add_argument("--calls", type=int, default=20, help="calls per multipletests timing")
    args = parser.parse_args()
    print(versions())
    data = bfi()
    factor_analyzer_section(args, data)
    statsmodels_section(args)
    pingouin_section(data)
    scipy_section()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
