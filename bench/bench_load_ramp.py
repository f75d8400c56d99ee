"""Benchmark: a burst of simultaneous sandbox calls, its ramp and its peak (tests/integration/
test_load.py's set-up, measured rather than asserted).

The run claims every call at once (max_concurrent = calls, no pacing); a call counts as in flight
from its claim. Whether the calls are ever all in flight together depends on the ramp (how long
the claims and Originates take) against the calls' length: with `--busy 2` both cores of this
machine are kept busy by shell loops, as another job would. Prints one JSON object:
- ramp_s: first claim to last claim (calls.started_at);
- peak, peak_at_s: the most calls in flight at once, and when;
- answer_after_claim_s, duration_s: deciles over the calls (Asterisk's answer backlog, length);
- outcomes.

Usage (root, sandbox up):  python3 bench/bench_load_ramp.py [--calls 1000] [--busy 2]
The prompts are config.yaml's (a real campaign's lengths). Not a test: it asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import bench_ivr  # same config, numbers and sandbox set-up

from ivr import app
from ivr.prompts.install import install_prompts_to_pbx
from ivr.prompts.build import build_prompts
from ivr.store.sqlite import Store
from ivr.telephony.sandbox import Sandbox


def deciles(values: list[float]) -> list[float]:
    return [round(v, 2) for v in statistics.quantiles(values, n=10)] if len(values) > 2 else values


def busy_loops(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(n)]


def measure(calls: int, busy: int, base: Path) -> dict[str, object]:
    cfg = bench_ivr.bench_config(base, calls)
    build_prompts(cfg)
    Sandbox(cfg).up(sim_timing=app.sandbox_sim_timing(cfg))
    install_prompts_to_pbx(cfg)
    store, nums = Store.memory(), bench_ivr.numbers(calls)
    bench_ivr.seed(store, cfg, nums)
    ticks: list[tuple[float, int]] = []
    loops = busy_loops(busy)
    t0 = time.monotonic()
    try:
        app.run(app.run_campaign(cfg, store, on_tick=lambda ctl: ticks.append(
            (time.monotonic() - t0, len(ctl.dialer.inflight)))))
    finally:
        for p in loops:
            p.kill()
            p.wait()
    elapsed = time.monotonic() - t0
    rows = store.q("SELECT outcome, started_at, answered_at, ended_at FROM calls")
    at = datetime.fromisoformat
    started = sorted(at(r["started_at"]) for r in rows)
    peak = max(n for _, n in ticks)
    return {
        "calls": calls, "busy_loops": busy, "elapsed_s": round(elapsed, 1),
        "ramp_s": round((started[-1] - started[0]).total_seconds(), 2),
        "peak": peak, "peak_at_s": round(next(t for t, n in ticks if n == peak), 1),
        "answer_after_claim_s": deciles([(at(r["answered_at"]) - at(r["started_at"]))
                                         .total_seconds() for r in rows if r["answered_at"]]),
        "duration_s": deciles([(at(r["ended_at"]) - at(r["started_at"])).total_seconds()
                               for r in rows if r["ended_at"]]),
        "outcomes": dict(Counter(r["outcome"] for r in rows)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--busy", type=int, default=0, help="shell busy-loops beside the run")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 16384), max(hard, 16384)))
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(args.calls, args.busy, Path(tmp)), indent=2))


if __name__ == "__main__":
    main()
