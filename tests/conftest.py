"""Shared test set-up.

litellm fetches its model cost map from the network when imported unless told to use the bundled copy;
offline that is seconds of retries per process. Set here, before any test module imports litellm (and
inherited by the psytest subprocesses the tests start).

``COLUMNS`` is removed: psytest's output depends on the console width, and tests that check the wrapping
set it themselves; an outer shell's or CI's value must not change what the other tests read.
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.pop("COLUMNS", None)

import pytest

#: Files whose tests are end-to-end runs (many commands as processes, local models, fault, kill and
#: concurrency suites, real servers, a browser): every test in them counts as ``slow``, so ``make test-fast``
#: (``-m "not slow"``) leaves them out and the edit loop stays under 2 minutes. ``make test`` runs them all.
#: Single slow tests elsewhere carry ``@pytest.mark.slow`` themselves.
SLOW_FILES = frozenset({
    "test_behavior_run.py", "test_cli_reports.py", "test_compare_check_reproduce.py", "test_concurrent_runs.py",
    "test_fault_injection.py", "test_hostile_data_loss.py", "test_hostile_input.py", "test_hostile_run_dirs.py",
    "test_kill_and_resume.py", "test_llama_cpp_cut_off.py", "test_llama_cpp_server.py", "test_local_models.py",
    "test_reference_runs.py", "test_report_screenshot.py", "test_scaling.py", "test_secrets.py", "test_study.py",
    "test_study_report.py", "test_terminal_output.py", "test_terminal_width.py", "test_validity_persona_runs.py",
    "test_validity_runs.py",
    # measured slowest outside the list above (a fast-tier run at load average 12): CLI runs, module fixtures
    # that administer and report, batch kill suites, simulated recovery runs
    "test_administer_pipeline.py", "test_analysis.py", "test_analysis_at_scale.py", "test_api.py", "test_batch.py",
    "test_growing_runs.py", "test_hostile_weak.py", "test_multi_trait_simulated.py", "test_persona_generator.py",
    "test_persona_match.py", "test_report.py", "test_units.py",
})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
