"""Spread a run over two OpenAI-compatible servers through a litellm Router, all on this machine.

Starts two of psytest's loopback servers (each answering as the same simulated respondent, standing in
for two vLLM replicas), writes a router file for them, runs ``psytest administer --model router:FILE``
and prints how many requests each server answered. Usage::

    python examples/scaling/router_demo.py [OUT_DIR]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.testing.openai_server import start_server


def main(out: Path) -> dict:
    os.environ.setdefault("DEMO_NODE_KEY", "demo-key")  # the servers check it; psytest reads it from here
    respondent = "sim/e=1,a=0.5,seed=7"
    with start_server(SimulatedRespondent(respondent), api_key=os.environ["DEMO_NODE_KEY"]) as node1, \
            start_server(SimulatedRespondent(respondent), api_key=os.environ["DEMO_NODE_KEY"]) as node2:
        cluster = out / "cluster.yaml"
        out.mkdir(parents=True, exist_ok=True)
        cluster.write_text("model_list:\n" + "".join(
            f"  - model_name: sim\n    litellm_params:\n      model: openai/psytest-sim\n"
            f"      api_base: {node.base_url}\n      api_key: os.environ/DEMO_NODE_KEY\n" for node in (node1, node2)))
        result = subprocess.run(
            [sys.executable, "-m", "psychometrics", "administer", "--model", f"router:{cluster}", "-i", "mini-ipip",
             "--option-orders", "original,reversed", "--samples", "2", "--temperature", "1", "--concurrency", "8",
             "--out", str(out / "run"), "--json"],
            capture_output=True, text=True, check=True)
        summary = json.loads(result.stdout)
        counts = {"server 1": node1.requests_served, "server 2": node2.requests_served}
    print(f"{summary['sent']} requests sent, {summary['failed']} failed; answered per server: {counts}")
    return {"summary": summary, "served": counts}


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="psytest-router-")))
