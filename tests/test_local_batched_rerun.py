"""A local run made with several requests in flight (evaluated in shared llama.cpp batches) records that
in its manifest, and ``reproduce --rerun`` re-sends it one at a time under the batch tolerance it states;
a run made one request at a time keeps the exact (1e-6) check."""

from __future__ import annotations

import math

import pytest

from psychometrics import api
from psychometrics.analysis.reproduce import LOCAL_LOGPROB_TOL, _logprobs_differ
from psychometrics.models.local_batch import BATCH_LOGPROB_TOL, BATCH_PROB_TOL
from psychometrics.run.manifest import read_manifest

pytest.importorskip("llama_cpp", reason="needs the [local] extra")


def _administer(out, concurrency):
    api.administer("local/smollm2-135m", inventory="mini-ipip", out=out, mode="probs", templates="numbered",
                   concurrency=concurrency, threads=1, threads_batch=1)
    return read_manifest(out, expect=None)


@pytest.mark.slow
def test_a_batched_local_run_records_its_in_flight_count_and_reruns_under_the_batch_tolerance(tmp_path):
    manifest = _administer(tmp_path / "batched", 8)
    assert manifest.most_in_flight == 8
    result = api.reproduce(tmp_path / "batched", rerun=True)
    assert result.rerun.logprob_tolerance == BATCH_LOGPROB_TOL
    assert any("8 requests in flight" in note and "--concurrency 1" in note for note in result.rerun.notes)
    assert result.rerun.requests_checked == 20 and result.passed, result.verdict

    alone = _administer(tmp_path / "alone", 1)
    assert alone.most_in_flight == 1
    result = api.reproduce(tmp_path / "alone", rerun=True)
    assert result.rerun.logprob_tolerance == LOCAL_LOGPROB_TOL and result.passed, result.verdict
    # resuming with more in flight raises the record (it never falls: earlier answers were batched)
    assert _administer(tmp_path / "batched", 2).most_in_flight == 8


def test_the_batch_comparison_reads_probabilities_and_the_log_scale_only_for_likely_labels():
    log = math.log
    stored = {"1": log(0.50), "2": log(0.30), "3": log(0.004)}
    within = {"1": log(0.52), "2": log(0.28), "3": log(0.006)}  # the rare label moves 0.41 nats, 0.002 in p
    assert not _logprobs_differ(stored, within, BATCH_LOGPROB_TOL, BATCH_PROB_TOL)
    assert _logprobs_differ(stored, within, LOCAL_LOGPROB_TOL)  # the exact check sees it
    moved = {"1": log(0.42), "2": log(0.38), "3": log(0.004)}  # 0.08 in probability
    assert _logprobs_differ(stored, moved, BATCH_LOGPROB_TOL, BATCH_PROB_TOL)
    stored["4"] = log(0.08)
    likely_far = {**within, "4": log(0.08 * math.exp(-0.6))}  # 0.6 nats on a label of p = 0.08 (0.036 in p)
    assert abs(0.08 - math.exp(likely_far["4"])) < BATCH_PROB_TOL
    assert _logprobs_differ(stored, likely_far, BATCH_LOGPROB_TOL, BATCH_PROB_TOL)
    assert not _logprobs_differ(stored, {**within, "4": log(0.08 * math.exp(-0.4))}, BATCH_LOGPROB_TOL, BATCH_PROB_TOL)
    assert _logprobs_differ(stored, {"1": log(0.5), "2": log(0.3)}, BATCH_LOGPROB_TOL, BATCH_PROB_TOL)
