"""API path throughput: psytest administering against a loopback OpenAI-compatible server with latency.

Usage: python benchmarks/api_throughput.py [--latency 0.05] [--concurrency 1,8,64] [--seconds 6]
                                           [--mode text] [--repeats 3] [--server-model constant]
                                           [--store-dir DIR] [--compare-with PATH]

The server (``psychometrics.testing.openai_server``, asyncio) runs in its own process and delays every
answer by ``--latency`` seconds without holding up other requests, so with C requests in flight the
most any client can do is C / latency items per second (the ideal). psytest sends through exactly
what ``psytest administer --model openai/bench --api-base URL`` uses: the model resolved by
``resolve_model``, the worker pool, retries, and a committed SQLite write per answer
(:func:`psychometrics.run.directory.administer`), into a fresh run directory per measurement, BFI-44 repeated
(``samples``) until the run lasts about ``--seconds`` at the ideal rate. Opening the connections is
part of the measurement; the plan is built before the clock starts (as ``items/s`` of a real run).

Printed per concurrency: items/s (median of ``--repeats`` runs), the ideal, their ratio (the target
is >= 0.90 at concurrency 64 with 50 ms), and CPU milliseconds per request in the client (psytest)
and the server processes. The server stands in for a remote provider, so it runs on a core of its own
(the last one) and psytest on the others; ``--shared-cores`` lets them compete for every core (on 2
cores the server's CPU is then taken from psytest's). The run store is written where ``--store-dir``
says (default: the temporary directory): every commit is real I/O, and a slow disk shows in the ratio
(measured on one 2-core machine on one day: 0.83-0.85 at 64 on its ext4 disk, 0.90 on tmpfs, ``/dev/shm``).
``--server-model constant`` (default) answers every request with a fixed reply (valid text, or a fixed distribution over the shown labels), so the
server stands in for a remote provider and costs little CPU; any psytest model string (e.g.
``sim/e=1,seed=1``) makes it answer as that model instead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from psychometrics.models.base import ModelBackend, ModelReply, ModelRequest

FIXED_PROBABILITIES = (0.10, 0.20, 0.40, 0.20, 0.08)  # the rest (0.02) is off the options


class ConstantBackend(ModelBackend):
    """Answers at once and always alike: the middle label as text, or fixed label probabilities."""

    name = "constant"

    async def complete(self, request: ModelRequest) -> ModelReply:
        choices = request.choices or ("1",)
        if request.mode == "probs":
            logprobs = {c: math.log(FIXED_PROBABILITIES[i % len(FIXED_PROBABILITIES)]) for i, c in enumerate(choices)}
            return ModelReply(choice_logprobs=logprobs, input_tokens=60, output_tokens=1)
        return ModelReply(text=choices[len(choices) // 2], input_tokens=60, output_tokens=1)


def serve(latency: float) -> None:
    """The server process of ``--server-model constant``: prints its base URL, serves until killed."""
    from psychometrics.testing.openai_server import start_server

    server = start_server(ConstantBackend(), latency_s=latency, max_connections=4096, max_in_flight=4096,
                          log_requests=False)
    print(f"serving constant at {server.base_url}", flush=True)
    server.stopping.wait()


def split_cores() -> tuple[set[int], set[int]] | None:
    """(client cores, server cores): the last core for the server, the rest for psytest, so that the
    stand-in for a remote provider does not take psytest's CPU; None on one core or without affinity."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None
    return (set(cores[:-1]), {cores[-1]}) if len(cores) > 1 else None


def start_server_process(model: str, latency: float, cores: set[int] | None = None) -> tuple[subprocess.Popen, str]:
    if model == "constant":
        command = [sys.executable, __file__, "--serve", "--latency", str(latency)]
    else:
        command = [sys.executable, "-m", "psychometrics.testing.openai_server", "--model", model, "--port", "0",
                   "--latency", str(latency), "--max-connections", "4096", "--max-in-flight", "4096"]
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, preexec_fn=pin)
    line = process.stdout.readline()
    if " at " not in line:
        process.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return process, line.split(" at ")[1].split()[0]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def filesystem(path: str) -> str:
    """The type of the file system that holds ``path`` (the longest mount point above it in /proc/mounts)."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                _, point, fs_type, *_ = line.split()
                if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
                    best, kind = point, fs_type
    except OSError:
        pass
    return kind


def measure(api_base: str, server_pid: int, concurrency: int, samples: int, mode: str, seed: int,
            store_dir: str | None = None) -> dict:
    """One administration into a fresh run directory; items/s as psytest reports it, CPU per request."""
    from psychometrics.design.plan import Design
    from psychometrics.inventories.library import resolve_inventory
    from psychometrics.models import resolve_model
    from psychometrics.run.directory import administer

    backend = resolve_model("openai/bench", api_base=api_base, timeout_s=60)
    design = Design(samples=samples, temperature=0.7, modes=[mode], seed=seed)
    with tempfile.TemporaryDirectory(dir=store_dir) as tmp:
        server0, client0 = process_cpu_s(server_pid), time.process_time()
        result = administer(backend, [resolve_inventory("bfi-44")], design, Path(tmp) / "run", concurrency=concurrency)
        server_s, client_s = process_cpu_s(server_pid) - server0, time.process_time() - client0
    stats = result.stats
    return {"items_per_s": stats.per_second, "sent": stats.sent, "failed": stats.failed,
            "client_ms": 1e3 * client_s / max(1, stats.sent), "server_ms": 1e3 * server_s / max(1, stats.sent)}


ROOT = Path(__file__).resolve().parent.parent  # this tree: the "after" side of --compare-with


def measure_in(tree: str, api_base: str, server_pid: int, concurrency: int, samples: int, mode: str, seed: int,
               store_dir: str | None) -> dict:
    """:func:`measure` in a fresh subprocess importing psytest from ``tree`` (its own warm-up first)."""
    command = [sys.executable, __file__, "--measure-one", json.dumps(
        {"api_base": api_base, "server_pid": server_pid, "concurrency": concurrency, "samples": samples,
         "mode": mode, "seed": seed, "store_dir": store_dir})]
    env = {**os.environ, "PYTHONPATH": tree}
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"the measurement with PYTHONPATH={tree} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_one(spec: str) -> None:
    """The subprocess of :func:`measure_in`: warm up, measure once, print the result as JSON."""
    args = json.loads(spec)
    measure(args["api_base"], args["server_pid"], 8, 2, args["mode"], seed=10_000)
    print(json.dumps(measure(args["api_base"], args["server_pid"], args["concurrency"], args["samples"], args["mode"],
                             args["seed"], args["store_dir"])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the server waits per request")
    parser.add_argument("--concurrency", default="1,8,64", help="comma list of requests in flight")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each run at the ideal rate")
    parser.add_argument("--mode", choices=("text", "probs"), default="text")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--server-model", default="constant", help="'constant' or a psytest model string")
    parser.add_argument("--shared-cores", action="store_true",
                        help="let client and server share every core (default: the server gets a core of its own)")
    parser.add_argument("--store-dir", default=None, help="where the run stores go (default: the temporary directory)")
    parser.add_argument("--compare-with", default=None, metavar="PATH",
                        help="also measure psytest imported from PATH (before), alternating with this tree (after)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure-one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency)
        return
    if args.measure_one:
        measure_one(args.measure_one)
        return
    os.environ.pop("OPENAI_API_KEY", None)  # a loopback server needs none; never send a real one
    split = None if args.shared_cores else split_cores()
    server, api_base = start_server_process(args.server_model, args.latency, split[1] if split else None)
    if split:
        os.sched_setaffinity(0, split[0])
    cores = (f"psytest on core(s) {sorted(split[0])}, the server on core {sorted(split[1])}" if split
             else f"{os.cpu_count()} CPUs shared by client and server")
    print(f"server: {args.server_model} at {api_base}, latency {args.latency * 1e3:g} ms, separate process; "
          f"{cores}; mode {args.mode}; BFI-44 x samples; median of {args.repeats} runs")
    store_dir = os.path.realpath(args.store_dir or tempfile.gettempdir())
    print(f"run stores in {store_dir} ({filesystem(store_dir)})")
    try:
        if args.compare_with:
            compare(args, api_base, server.pid)
            return
        run_here(args, api_base, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)


def compare(args, api_base: str, server_pid: int) -> None:
    """Before (``--compare-with``) and after (this tree), alternating, each measurement in a fresh process."""
    before, after = os.path.realpath(args.compare_with), str(ROOT)
    print(f"before: PYTHONPATH={before}; after: PYTHONPATH={after}; alternating, median of {args.repeats} each")
    print(f"{'concurrency':>11} {'ideal':>7} {'before/s':>8} {'ratio':>6} {'ms/req':>7} {'after/s':>8} {'ratio':>6} "
          f"{'ms/req':>7} {'after/before':>12} {'cpu after/before':>16}")
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        ideal = concurrency / args.latency
        samples = max(2, math.ceil(args.seconds * ideal / 44))
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        for repeat in range(args.repeats):
            for side, tree in (("before", before), ("after", after)) if repeat % 2 == 0 else (("after", after), ("before", before)):
                runs[side].append(measure_in(tree, api_base, server_pid, concurrency, samples, args.mode, repeat,
                                             args.store_dir))
        middle = {side: sorted(found, key=lambda run: run["items_per_s"])[len(found) // 2] for side, found in runs.items()}
        b, a = middle["before"], middle["after"]
        failed = sum(run["failed"] for found in runs.values() for run in found)
        print(f"{concurrency:>11} {ideal:>7.0f} {b['items_per_s']:>8.1f} {b['items_per_s'] / ideal:>6.2f} "
              f"{b['client_ms']:>7.3f} {a['items_per_s']:>8.1f} {a['items_per_s'] / ideal:>6.2f} {a['client_ms']:>7.3f} "
              f"{a['items_per_s'] / b['items_per_s']:>12.2f} {a['client_ms'] / b['client_ms']:>16.2f}"
              + (f"  failed {failed}" if failed else ""), flush=True)


def run_here(args, api_base: str, server_pid: int) -> None:
    """This tree only, in this process (the default)."""
    print(f"{'concurrency':>11} {'requests':>8} {'items/s':>8} {'ideal':>7} {'ratio':>6} "
          f"{'client ms/req':>13} {'server ms/req':>13} {'failed':>6}")
    measure(api_base, server_pid, 8, 2, args.mode, seed=10_000)  # warm-up: imports, first connections
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        ideal = concurrency / args.latency
        samples = max(2, math.ceil(args.seconds * ideal / 44))
        runs = [measure(api_base, server_pid, concurrency, samples, args.mode, seed=r, store_dir=args.store_dir)
                for r in range(args.repeats)]
        middle = sorted(runs, key=lambda run: run["items_per_s"])[len(runs) // 2]
        ratios = ", ".join(f"{run['items_per_s'] / ideal:.2f}" for run in runs)
        print(f"{concurrency:>11} {middle['sent']:>8} {middle['items_per_s']:>8.1f} {ideal:>7.0f} "
              f"{middle['items_per_s'] / ideal:>6.2f} {middle['client_ms']:>13.3f} {middle['server_ms']:>13.3f} "
              f"{sum(run['failed'] for run in runs):>6}   (ratios: {ratios})", flush=True)


if __name__ == "__main__":
    main()
