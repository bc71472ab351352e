"""Choosing llama.cpp's CPU variant for a runtime-dispatch build (psychometrics/models/llama_backends.py).

The choice is checked on stand-in libraries compiled here, each exporting ``ggml_backend_score`` as the real
variants do, so it runs on any build of llama-cpp-python; the real variants are exercised by the local-model
tests when the installed llama-cpp-python was built with GGML_BACKEND_DL.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from psychometrics.errors import PsytestError
from psychometrics.models import llama_backends
from psychometrics.models.llama_backends import VARIANT_ENV, choose_variant, variant_score

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler to build stand-in libraries")


def _stand_in(directory: Path, name: str, score: int | None) -> Path:
    """A shared library named like a CPU variant; ``score`` None exports no ``ggml_backend_score``."""
    source = directory / f"{name}.c"
    body = f"int ggml_backend_score(void) {{ return {score}; }}\n" if score is not None else "int unrelated(void) { return 1; }\n"
    source.write_text(body)
    path = directory / f"libggml-cpu-{name}.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(path), str(source)], check=True)
    return path


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    directory = tmp_path_factory.mktemp("variants")
    scores = {"x64": 1, "haswell": 16, "zen4": 40, "sapphirerapids": 90, "future": 0, "broken": None}
    return {name: _stand_in(directory, name, score) for name, score in scores.items()}


@needs_cc
def test_scores_are_read_from_each_library(variants):
    assert variant_score(variants["haswell"]) == 16 and variant_score(variants["future"]) == 0
    assert variant_score(variants["broken"]) == 0  # a library without the score function never wins


@needs_cc
def test_the_best_variant_wins_except_the_amx_one(variants):
    assert choose_variant(variants) == "zen4"  # sapphirerapids scores higher but is excluded
    without_zen4 = {k: v for k, v in variants.items() if k != "zen4"}
    assert choose_variant(without_zen4) == "haswell"


@needs_cc
def test_a_forced_variant_is_used_if_it_exists_and_runs_here(variants):
    assert choose_variant(variants, "x64") == "x64"
    assert choose_variant(variants, "sapphirerapids") == "sapphirerapids"  # forcing it is the user's call
    with pytest.raises(PsytestError, match=f"{VARIANT_ENV}=nehalem: no such .*choose one of: broken, future"):
        choose_variant(variants, "nehalem")
    with pytest.raises(PsytestError, match=f"{VARIANT_ENV}=future: this CPU lacks"):
        choose_variant(variants, "future")


@needs_cc
def test_no_runnable_variant_is_a_clear_error(variants):
    with pytest.raises(PsytestError, match="none of its CPU libraries .* runs on this CPU"):
        choose_variant({k: variants[k] for k in ("future", "broken", "sapphirerapids")})


def test_the_installed_build_has_a_cpu_backend_after_ensure():
    """Whatever the build (linked-in kernels or one library per variant), llama.cpp has a CPU backend after."""
    pytest.importorskip("llama_cpp")
    loaded = llama_backends.ensure_cpu_backend()
    lib = llama_backends._libggml()
    assert lib.ggml_backend_reg_count() >= 1
    installed = llama_backends.variant_libraries()
    assert (loaded is None) == (not installed)  # a variant is loaded exactly when the build has variants
    if loaded is not None:
        assert loaded in installed and loaded not in llama_backends.EXCLUDED_VARIANTS
        assert llama_backends.ensure_cpu_backend() == loaded  # once per process
