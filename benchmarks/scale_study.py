"""A whole study at the scale of Serapio-Garcia et al. (2023) in one run, end to end, on one machine.

Usage: python benchmarks/scale_study.py [--personas 101] [--concurrency 64] [--latency 0.05]
                                        [--store-dir DIR] [--keep] [--compare-with PATH [--plan-only]]

The design is examples/serapio-garcia-scale.yaml's for one model: IPIP-NEO-300 and BFI-44 (344 items) under
the 5 rotations of the response options, 3 instruction templates and the 101 multi-trait personas, text
mode: 521,160 requests. ``--personas N`` takes the first N personas (5,160 requests each) for a smaller run.
The model is a loopback OpenAI-compatible server (``benchmarks/api_throughput.py``'s constant server, in its
own process on a core of its own) that answers every request after ``--latency`` seconds, so with
``--concurrency`` C in flight no client can do better than C / latency requests per second: the ideal,
521,160 / (64 / 0.05 s) = 6.8 min.

Phases, each timed, as ``psytest administer`` then ``psytest report`` run them:

* **plan**: the design expanded into requests (prompts, ids, seeds), the manifest written and the store
  opened, up to the first request sent;
* **send**: every request sent and its answer committed to ``responses.sqlite``;
* **analyse**: scoring and the analysis tables ``administer`` writes after sending (``RUN/analysis``);
* **report**: ``psytest report RUN`` in a process of its own (HTML, CSV tables, summary.json).

Plan, send and analyse run in one child process (the API call ``psychometrics.administer``, as the CLI
makes it); the report in another (the CLI). Printed: each phase's wall time, the send phase against the
ideal, the peak RSS of each process (the server's too), the client's CPU seconds, and the store's size.
``--compare-with PATH`` also times the plan phase alone (``plan_requests`` of the same design) with
``PYTHONPATH=PATH`` (e.g. a checkout before a change), alternating with this checkout, and prints the ratio;
with ``--plan-only`` that is all it does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
INVENTORIES = ["ipip-neo-300", "bfi-44"]
TEMPLATES = ["numbered", "lettered", "worded"]


def design_mapping(personas: int) -> dict:
    """The study's design for its first ``personas`` multi-trait personas (all 101 by default)."""
    from psychometrics.design.personas import resolve_persona_set

    ids = [p.id for p in resolve_persona_set("multi-trait").select(None)]
    design = {"option_orders": ["rotations"], "templates": TEMPLATES, "modes": ["text"],
              "personas": "multi-trait", "temperature": 0.0}
    if personas < len(ids):
        design["persona_ids"] = ids[:personas]
    return design


def peak_rss_mb(usage) -> float:
    return usage.ru_maxrss / 1024  # Linux: kilobytes


def run_queue_wait_s() -> float:
    """Seconds this process's threads have waited, runnable, for a CPU (Linux schedstat; 0 elsewhere): what a
    loaded machine takes from a run, told apart from waiting on the server."""
    total = 0
    try:
        for task in Path("/proc/self/task").iterdir():
            total += int((task / "schedstat").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return total / 1e9


class PhaseClock:
    """The Progress ``administer`` reports to: marks when sending starts and stops."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self.waited: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.rss: dict[str, float] = {}
        self.mark("begin")

    def mark(self, name: str) -> None:
        """Wall clock, this process's CPU seconds and its peak RSS so far, at ``name``."""
        self.marks[name] = time.perf_counter()
        self.waited[name] = run_queue_wait_s()
        self.cpu[name] = time.process_time()
        self.rss[name] = peak_rss_mb(resource.getrusage(resource.RUSAGE_SELF))

    def start(self, total: int) -> None:
        self.mark("send_start")
        self.total = total

    def advance(self, rows) -> None:
        pass

    def stop(self, finished: bool = True) -> None:
        self.mark("send_stop")


def child_run(args: argparse.Namespace) -> None:
    """The administering process: plan, send, analyse; prints its figures as one JSON line."""
    import psychometrics

    clock = PhaseClock()
    outcome = psychometrics.administer("openai/bench", api_base=args.api_base, inventory=INVENTORIES,
                                       design=design_mapping(args.personas), concurrency=args.concurrency,
                                       out=args.run, timeout=120, progress=clock)
    clock.mark("end")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    marks, cpu, rss = clock.marks, clock.cpu, clock.rss
    print(json.dumps({
        "requests": clock.total, "sent": outcome.stats.sent, "failed": outcome.stats.failed,
        "plan_s": marks["send_start"] - marks["begin"], "send_s": marks["send_stop"] - marks["send_start"],
        "analyse_s": marks["end"] - marks["send_stop"], "cpu_s": usage.ru_utime + usage.ru_stime,
        "plan_cpu_s": cpu["send_start"] - cpu["begin"], "send_cpu_s": cpu["send_stop"] - cpu["send_start"],
        "analyse_cpu_s": cpu["end"] - cpu["send_stop"], "plan_rss_mb": rss["send_start"],
        "send_rss_mb": rss["send_stop"], "rss_mb": peak_rss_mb(usage),
        "send_waited_s": clock.waited["send_stop"] - clock.waited["send_start"],
    }), flush=True)


def child_plan(args: argparse.Namespace) -> None:
    """Planning alone (for ``--compare-with``): seconds to expand the design, as one JSON line."""
    from psychometrics.design.personas import resolve_persona_set
    from psychometrics.design.plan import design_from_mapping, plan_requests
    from psychometrics.inventories.library import resolve_inventory

    inventories = [resolve_inventory(name) for name in INVENTORIES]
    persona_set = resolve_persona_set("multi-trait")
    design = design_from_mapping(design_mapping(args.personas), "design")
    start = time.perf_counter()
    planned = plan_requests(inventories, design, "openai/bench", {}, persona_set)
    seconds = time.perf_counter() - start
    print(json.dumps({"requests": len(planned), "plan_s": seconds,
                      "rss_mb": peak_rss_mb(resource.getrusage(resource.RUSAGE_SELF))}), flush=True)


def run_child(command: list[str], env: dict | None = None, cores: set[int] | None = None) -> tuple[dict, float, float]:
    """Run a child process to its end: (its last JSON line or {}, wall seconds, peak RSS in MB)."""
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True, preexec_fn=pin)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... exited with {process.returncode}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return (json.loads(lines[-1]) if lines else {}), wall, peak_rss_mb(usage)


def store_size_mb(run: Path) -> float:
    return sum(p.stat().st_size for p in run.glob("responses.sqlite*")) / 1e6


def compare_planning(args: argparse.Namespace, before: str, repeats: int = 2) -> None:
    """Plan the same design with ``PYTHONPATH=before`` and with this checkout, alternating."""
    here = str(HERE.parent)
    times: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(repeats):
        for label, path in (("before", before), ("after", here)):
            env = {**os.environ, "PYTHONPATH": path}
            figures, _, rss = run_child([sys.executable, __file__, "--child-plan", "--personas", str(args.personas)],
                                        env=env)
            times[label].append(figures["plan_s"])
            print(f"  plan {label:>6} ({path}): {figures['requests']:,} requests in {figures['plan_s']:.1f} s, "
                  f"peak RSS {rss:.0f} MB", flush=True)
    best = {label: min(values) for label, values in times.items()}
    print(f"planning, best of {repeats}: before {best['before']:.1f} s, after {best['after']:.1f} s, "
          f"after/before {best['after'] / best['before']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--personas", type=int, default=101, help="the first N multi-trait personas (101: all)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the server waits per request")
    parser.add_argument("--store-dir", default=None, help="where the run directory goes (default: the temporary "
                                                          "directory)")
    parser.add_argument("--keep", action="store_true", help="keep the run directory (its path is printed)")
    parser.add_argument("--compare-with", default=None, metavar="PATH",
                        help="also time planning alone with PYTHONPATH=PATH, alternating with this checkout")
    parser.add_argument("--resume", default=None, metavar="RUN",
                        help="administer into RUN, a finished run of this study (kept with --keep): nothing is left "
                             "to send, so plan, analyse and report are timed again on a full store")
    parser.add_argument("--plan-only", action="store_true", help="with --compare-with: time planning only, no run")
    parser.add_argument("--child-run", dest="run", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-plan", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--api-base", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        child_run(args)
        return
    if args.child_plan:
        child_plan(args)
        return
    sys.path.insert(0, str(HERE))
    from api_throughput import filesystem, split_cores, start_server_process

    os.environ.pop("OPENAI_API_KEY", None)  # a loopback server needs none; never send a real one
    requests = args.personas * 344 * 5 * 3
    ideal = requests / (args.concurrency / args.latency)
    split = split_cores()
    server, api_base = start_server_process("constant", args.latency, split[1] if split else None)
    store_dir = os.path.realpath(args.store_dir or tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix="scale-study-", dir=store_dir))
    run = Path(args.resume).resolve() if args.resume else work / "run"
    cores = (f"psytest on core(s) {sorted(split[0])}, the server on core {sorted(split[1])}" if split
             else f"{os.cpu_count()} CPUs shared")
    print(f"study: {', '.join(INVENTORIES)} x 5 option orders x {len(TEMPLATES)} templates x {args.personas} "
          f"personas, text mode = {requests:,} requests; {args.concurrency} in flight, server latency "
          f"{args.latency * 1e3:g} ms; {cores}; store in {store_dir} ({filesystem(store_dir)})", flush=True)
    try:
        if args.compare_with:
            compare_planning(args, os.path.realpath(args.compare_with))
            if args.plan_only:
                return
        start = time.perf_counter()
        figures, run_wall, run_rss = run_child(
            [sys.executable, __file__, "--child-run", str(run), "--api-base", api_base, "--personas",
             str(args.personas), "--concurrency", str(args.concurrency)], cores=split[0] if split else None)
        shutil.rmtree(run / "report", ignore_errors=True)  # a resumed run's earlier report is written anew
        report_figures, report_wall, report_rss = run_child(
            [sys.executable, "-m", "psychometrics", "report", str(run)], cores=split[0] if split else None)
        total = time.perf_counter() - start
        server_rss = 0.0
        with open(f"/proc/{server.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    server_rss = int(line.split()[1]) / 1024
        html = run / "report" / "report.html"
        sent = max(1, figures["sent"])
        print(f"{'phase':<9} {'wall':>9} {'CPU':>8}  process (peak RSS at the end of the phase)")
        print(f"{'plan':<9} {figures['plan_s']:>8.1f}s {figures['plan_cpu_s']:>7.1f}s  administer "
              f"({figures['plan_rss_mb']:.0f} MB)")
        print(f"{'send':<9} {figures['send_s']:>8.1f}s {figures['send_cpu_s']:>7.1f}s  administer "
              f"({figures['send_rss_mb']:.0f} MB); {figures['sent']:,} sent, {figures['failed']} failed, "
              f"{1e3 * figures['send_cpu_s'] / sent:.3f} ms CPU per request; ideal {ideal:.0f} s = "
              f"{ideal / 60:.1f} min, ratio to ideal {ideal / max(figures['send_s'], 1e-9):.2f}; its threads "
              f"waited {figures['send_waited_s']:.1f} s for a CPU (machine load)")
        print(f"{'analyse':<9} {figures['analyse_s']:>8.1f}s {figures['analyse_cpu_s']:>7.1f}s  administer "
              f"({run_rss:.0f} MB)")
        print(f"{'report':<9} {report_wall:>8.1f}s {'':>8}  psytest report ({report_rss:.0f} MB)")
        print(f"{'total':<9} {total:>8.1f}s {'':>8}  {total / ideal:.2f} x the ideal send time (process starts "
              f"included); server peak RSS {server_rss:.0f} MB")
        print(f"store: responses.sqlite {store_size_mb(run):.0f} MB "
              f"({1e3 * store_size_mb(run) / max(1, requests):.2f} kB per request); "
              f"report.html {html.stat().st_size / 1e6 if html.exists() else 0:.1f} MB", flush=True)
        if args.keep:
            print(f"run directory kept: {run}")
    finally:
        server.terminate()
        server.wait(timeout=10)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
