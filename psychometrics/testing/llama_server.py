"""llama-cpp-python's own OpenAI-compatible server, serving the embedded SmolLM2, for tests that need a real
server nobody here wrote (tests/test_llama_cpp_server.py, tests/test_llama_cpp_cut_off.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from psychometrics.testing.waiting import HANG_GUARD_S, wait_for


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def llama_cpp_server(*, logits_all: bool = True, log: Path | None = None) -> Iterator[str]:
    """Start the server on a free port (one thread: threads that spin are slow on shared cores), wait until it
    answers ``/v1/models``, yield its base URL, stop it. ``logits_all=False`` is a server that refuses
    log-probabilities; ``log`` receives its output (a line per request; a file, not a pipe: a full pipe would
    stop the server mid-run), else it is discarded."""
    from psychometrics.models.local import embedded_model_path

    port = free_port()
    # through llama_backends: a llama.cpp built with runtime CPU dispatch needs its CPU library loaded first
    command = [sys.executable, "-m", "psychometrics.models.llama_backends", "llama_cpp.server",
               "--model", str(embedded_model_path("smollm2-135m")), "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--logits_all",
               str(logits_all).lower(), "--n_threads", "1", "--n_threads_batch", "1"]
    if log is None:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        with log.open("w") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"

    def answering() -> bool:
        try:
            urllib.request.urlopen(f"{base}/models", timeout=60).read()
            return True
        except OSError:
            assert process.poll() is None, "llama.cpp server exited"
            return False

    try:
        wait_for(answering, "the llama.cpp server answering", poll_s=0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=HANG_GUARD_S)
