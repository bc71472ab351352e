"""Load llama.cpp's CPU kernels when llama-cpp-python was built with runtime CPU dispatch.

A build with ``GGML_BACKEND_DL=ON GGML_CPU_ALL_VARIANTS=ON`` keeps its CPU kernels out of ``libggml``: one
library per instruction-set level (``libggml-cpu-haswell.so``, ``-skylakex``, ``-zen4``, ...), installed by
the wheel in ``site-packages/bin``. llama.cpp loads none of them by itself and llama-cpp-python 0.3.36 never
asks it to, so loading a model fails with "no backends are loaded". :func:`ensure_cpu_backend` loads the one
to use, by the rule ``ggml_backend_load_all`` applies (each library scores the CPU it finds itself on; 0 means
it cannot run here; the highest score wins), with one exception: the Sapphire Rapids variant is never chosen.
Its AMX matrix kernels crash on the first decode on some Intel CPUs (the crash that made this project build
llama.cpp without ``-march=native``), so on such a CPU the best AVX-512 variant runs instead.

``PSYTEST_LLAMA_CPU_VARIANT=NAME`` (``haswell``, ``zen4``, ...) forces one variant: to compare kernels, or to
step around one that misbehaves. A build with its CPU kernels linked in (the portable build) already has its
CPU backend registered; nothing is loaded then and the variable is ignored.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

from psychometrics.errors import PsytestError

#: Variants never chosen automatically (name after ``libggml-cpu-``), with why.
EXCLUDED_VARIANTS = {"sapphirerapids": "its AMX kernels crash on some Intel CPUs"}
VARIANT_ENV = "PSYTEST_LLAMA_CPU_VARIANT"
_PREFIX, _SUFFIX = "libggml-cpu-", ".so"

_lock = threading.Lock()
_loaded: str | None = None


def _libggml() -> ctypes.CDLL:
    """ggml's functions as libllama sees them. Not ``llama_cpp._ggml``: the wheel holds copies of libggml under
    several names, and that module loads another copy than libllama's, with a backend registry of its own;
    symbols looked up through libllama's handle resolve in libllama's own dependencies."""
    from llama_cpp import llama_cpp as bindings

    lib = bindings._lib
    lib.ggml_backend_reg_count.restype = ctypes.c_size_t
    lib.ggml_backend_reg_count.argtypes = []
    lib.ggml_backend_load.restype = ctypes.c_void_p
    lib.ggml_backend_load.argtypes = [ctypes.c_char_p]
    return lib


def variant_libraries() -> dict[str, Path]:
    """The CPU variant libraries installed with llama-cpp-python, by variant name (empty for a linked-in build)."""
    import llama_cpp

    package = Path(llama_cpp.__file__).resolve().parent
    found: dict[str, Path] = {}
    for directory in (package / "lib", package.parent / "bin"):  # where the wheel's install rules put them
        if directory.is_dir():
            for path in sorted(directory.glob(f"{_PREFIX}*{_SUFFIX}")):
                found.setdefault(path.name[len(_PREFIX):-len(_SUFFIX)], path)
    return found


def variant_score(path: Path) -> int:
    """The library's own score of this CPU (``ggml_backend_score``): 0 if it cannot run here."""
    import _ctypes

    handle = ctypes.CDLL(str(path))
    try:
        score = getattr(handle, "ggml_backend_score", None)
        if score is None:
            return 0
        score.restype, score.argtypes = ctypes.c_int, []
        return int(score())
    finally:
        _ctypes.dlclose(handle._handle)


def choose_variant(libraries: dict[str, Path], forced: str | None = None) -> str:
    """The variant to load: ``forced`` if given, else the best-scoring one not in :data:`EXCLUDED_VARIANTS`."""
    if forced:
        if forced not in libraries:
            raise PsytestError(f"{VARIANT_ENV}={forced}: no such llama.cpp CPU variant is installed; "
                               f"choose one of: {', '.join(sorted(libraries))}")
        if variant_score(libraries[forced]) <= 0:
            raise PsytestError(f"{VARIANT_ENV}={forced}: this CPU lacks the instructions that variant needs; "
                               "unset it or choose a lower one (e.g. haswell, x64)")
        return forced
    scores = {name: variant_score(path) for name, path in libraries.items() if name not in EXCLUDED_VARIANTS}
    best = max(scores, key=lambda name: scores[name], default=None)
    if best is None or scores[best] <= 0:
        raise PsytestError("llama-cpp-python was built with runtime CPU dispatch but none of its CPU libraries "
                           f"({', '.join(sorted(libraries))}) runs on this CPU; rebuild it (make setup)")
    return best


def _quietly(load):
    """Call ``load`` with llama-cpp-python's log forwarding at errors only (ggml reports each load on stderr)."""
    import logging

    import llama_cpp  # noqa: F401  (its logger forwards ggml's messages)

    logger = logging.getLogger("llama-cpp-python")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return load()
    finally:
        logger.setLevel(level)


def ensure_cpu_backend() -> str | None:
    """Load the CPU variant to use if llama.cpp has no backend yet; return its name (None: linked in)."""
    global _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        lib = _libggml()
        if lib.ggml_backend_reg_count() > 0:
            return None
        libraries = variant_libraries()
        if not libraries:
            raise PsytestError("llama-cpp-python has no CPU backend: it was built with GGML_BACKEND_DL but its "
                               "CPU libraries (libggml-cpu-*.so) are not installed; rebuild it (make setup)")
        name = choose_variant(libraries, os.environ.get(VARIANT_ENV, "").strip() or None)
        if not _quietly(lambda: lib.ggml_backend_load(str(libraries[name]).encode())):
            raise PsytestError(f"llama.cpp could not load its CPU library {libraries[name]}; rebuild it (make setup)")
        _loaded = name
        return name


def main(argv: list[str]) -> None:
    """``python -m psychometrics.models.llama_backends MODULE ARGS...``: run a llama-cpp-python entry point
    (``llama_cpp.server``) with the CPU backend loaded first, which a runtime-dispatch build needs."""
    import runpy
    import sys

    if not argv:
        sys.exit("usage: python -m psychometrics.models.llama_backends MODULE [ARGS...]  (e.g. llama_cpp.server)")
    ensure_cpu_backend()
    sys.argv = [argv[0], *argv[1:]]
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
