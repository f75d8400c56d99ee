"""Benchmark: one controller in front of 1, 2 and 3 sandbox Asterisk nodes (issue 14 item 7).

For each N of `--nodes` the sandbox is started with exactly N fresh instances (what
`ivr pbx up --nodes N` runs: sandbox_nodes.up, after sandbox_nodes.down so every N starts from
booted, idle instances), and one controller makes the real run over `--calls` simulated
callees that press 1 during the intro (bench_ivr.run_fastagi: app.run_campaign, FastAGI, store,
rules; AMD off; every call at once), with `pbx.nodes` naming the N instances. Recorded per run:
- calls completed (outcome message_played) and wall time: throughput, calls/s;
- each Asterisk instance's CPU (utime + stime of its process, every thread, /proc/<pid>/stat)
  and the calls it carried (the store's calls.node): CPU seconds per node and ms per call;
- each instance's busiest thread over the run (name, CPU seconds, share of one core);
- each instance's idle CPU (% of a core) over `--idle-s` before the run: a node's fixed cost;
- the controller's CPU (this process, getrusage) per call;
- the machine's 1-minute load average before and after.
N alternates within a round (rounds x [1, 2, 3]), so each ratio (throughput N / 1, Asterisk
CPU per call N / 1) is taken side by side; per-round values and ranges are printed. On two cores
the N instances share the same CPU: throughput N / 1 here says nothing about N machines; the
CPU per call and the spread of the calls are what a projection can rest on (README, Speed).

Prints one JSON object. Usage (root; takes the sandbox, so hold the integration lock):
  flock /tmp/ivr-integ.lock python3 bench/bench_nodes.py [--nodes 1 2 3] [--calls 300]
      [--rounds 2]
At the end only instance 1 is left running, configured from config.yaml (as `ivr pbx up`).
Not a test: it asserts nothing; the README records its output.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ivr  # noqa: E402  (config, numbers, the controller's run)
from bench_system_cpu import TICK, proc_cpu_s, self_cpu_s  # noqa: E402  (/proc CPU)

from ivr import app, config  # noqa: E402
from ivr.prompts.install import install_prompts_to_pbx  # noqa: E402
from ivr.config import Config, NodeConfig  # noqa: E402
from ivr.prompts.build import build_prompts  # noqa: E402
from ivr.store.sqlite import Store  # noqa: E402
from ivr.telephony import sandbox_nodes  # noqa: E402


def _log(message: str) -> None:
    print(message, file=sys.stderr)  # stdout carries only the JSON


def node_names(n: int) -> list[str]:
    """Instance 1 keeps the single node's name ("pbx"), as existing stores hold it."""
    return ["pbx" if i == 1 else f"pbx{i}" for i in range(1, n + 1)]


def pool_config(cfg: Config, base: Path, n: int, tag: str) -> Config:
    """The bench's config with `pbx.nodes` naming instances 1..n and a fresh store."""
    nodes = [NodeConfig(name, cfg.pbx.host, cfg.pbx.port + i, cfg.pbx.user)
             for i, name in enumerate(node_names(n))]
    return dataclasses.replace(
        cfg, pbx=dataclasses.replace(cfg.pbx, nodes=nodes),
        store=dataclasses.replace(cfg.store, path=str(base / f"{tag}.db")))


def start_nodes(cfg: Config, n: int, sim: dict[str, float]) -> dict[str, int]:
    """Exactly n freshly booted instances; their pids by node name."""
    sandbox_nodes.down(cfg)
    up = sandbox_nodes.up(cfg, n, 60, sim, log=_log)
    pids: dict[str, int] = {}
    for (i, status), name in zip(up, node_names(n)):
        if status.pid is None:
            raise SystemExit(f"sandbox node {i} has no pid after `up`: {status.detail}")
        pids[name] = status.pid
    return pids


def carried(cfg: Config, limit: int) -> tuple[Counter[str], dict[str, int]]:
    """Calls per node (the store's calls.node) and attempts per outcome, this run's store."""
    store = Store.open(cfg.path(cfg.store.path))
    nodes = Counter(str(r["node"]) for r in store.recent_calls(cfg.campaign.name, limit))
    return nodes, store.outcome_counts(cfg.campaign.name)


def threads_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """Each thread of a process: its name and CPU seconds. /proc/<pid>/task/<tid>/stat is the
    thread's own (/proc/<pid>/stat, which proc_cpu_s reads, sums every thread)."""
    out: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()  # as in proc_cpu_s
            out[int(task.name)] = ((task / "comm").read_text().strip(),
                                   (int(fields[11]) + int(fields[12])) / TICK)
        except (OSError, ValueError):
            continue  # a channel thread that ended meanwhile
    return out


def hottest(before: dict[int, tuple[str, float]], pid: int,
            elapsed: float) -> dict[str, object]:
    """The thread, alive through the run, that spent the most CPU in it: a single instance
    cannot go faster than that thread's one core."""
    after = threads_cpu(pid)
    tid, cpu = max(((t, after[t][1] - c) for t, (_, c) in before.items() if t in after),
                   key=lambda x: x[1], default=(0, 0.0))
    return {"name": after[tid][0] if tid else "", "cpu_s": round(cpu, 2),
            "share_of_core": round(cpu / elapsed, 3)}


def idle_pct(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """Each booted instance's CPU with no call up (a node's fixed cost), % of one core."""
    before = {k: proc_cpu_s(p) for k, p in pids.items()}
    time.sleep(seconds)
    return {k: round((proc_cpu_s(p) - before[k]) / seconds * 100, 2) for k, p in pids.items()}


def one_run(cfg: Config, n: int, calls: int, sim: dict[str, float],
            idle_s: float) -> dict[str, object]:
    """N nodes, one controller, `calls` yes-path callees; CPU read around the run only (the
    boot of the instances and the idle window before the run are left out)."""
    pids = start_nodes(cfg, n, sim)
    idle = idle_pct(pids, idle_s)
    nums = bench_ivr.numbers(calls)
    load0 = os.getloadavg()[0]
    threads0 = {k: threads_cpu(p) for k, p in pids.items()}
    ast0, ctl0 = {k: proc_cpu_s(p) for k, p in pids.items()}, self_cpu_s()
    res = app.run(bench_ivr.run_fastagi(cfg, nums, key_latency=False))
    ctl = self_cpu_s() - ctl0
    ast = {k: proc_cpu_s(p) - ast0[k] for k, p in pids.items()}
    load1, elapsed = os.getloadavg()[0], res["elapsed_s"]
    per_node, outcomes = carried(cfg, calls * 2)
    nodes = {k: {"calls": per_node.get(k, 0), "cpu_s": round(ast[k], 2),
                 "ms_per_call": round(ast[k] / max(per_node.get(k, 0), 1) * 1000, 2),
                 "share_of_core": round(ast[k] / elapsed, 3), "idle_pct_core": idle[k],
                 "hottest_thread": hottest(threads0[k], p, elapsed)}
             for k, p in pids.items()}
    return {"nodes": n, "calls": calls, "completed": int(res["completed"]),
            "outcomes": outcomes, "elapsed_s": round(elapsed, 2),
            "throughput": round(res["completed"] / elapsed, 3),
            "asterisk_cpu_s": round(sum(ast.values()), 2),
            "asterisk_ms_per_call": round(sum(ast.values()) / calls * 1000, 2),
            "controller_ms_per_call": round(ctl / calls * 1000, 3),
            "per_node": nodes, "load_avg_1m": [round(load0, 1), round(load1, 1)]}


def ratios(runs: list[dict[str, object]]) -> dict[str, dict[str, float]]:
    """Each run of a round against the round's first N (1 by default), side by side."""
    ref = runs[0]
    keys = ("throughput", "asterisk_ms_per_call", "controller_ms_per_call")
    return {str(r["nodes"]): {k: round(float(r[k]) / float(ref[k]), 3)  # type: ignore[arg-type]
                              for k in keys} for r in runs[1:]}


def span(values: list[float]) -> list[float]:
    return [round(min(values), 3), round(max(values), 3)]


def summary(rounds: list[dict[str, Any]], nodes: list[int]) -> dict[str, object]:
    """Ranges over the rounds, per N: the figures and the ratios to the first N."""
    out: dict[str, object] = {}
    for n in nodes:
        runs = [r for rd in rounds for r in rd["runs"] if r["nodes"] == n]
        each = [v for r in runs for v in r["per_node"].values()]  # every node of every run
        row: dict[str, object] = {
            key: span([float(r[key]) for r in runs])
            for key in ("throughput", "elapsed_s", "asterisk_ms_per_call",
                        "controller_ms_per_call")}
        row |= {f"per_node_{key}": span([v[key] for v in each])
                for key in ("calls", "cpu_s", "ms_per_call", "share_of_core", "idle_pct_core")}
        row["hottest_thread_share_of_core"] = span(
            [v["hottest_thread"]["share_of_core"] for v in each])
        row["hottest_threads"] = sorted({v["hottest_thread"]["name"] for v in each})
        if n != nodes[0]:
            row["ratio_to_first"] = {
                k: span([float(rd["ratios"][str(n)][k]) for rd in rounds])
                for k in ("throughput", "asterisk_ms_per_call", "controller_ms_per_call")}
        out[str(n)] = row
    return out


def restore_single() -> None:
    """Leave the sandbox as the other users expect it: instance 1 only, from config.yaml."""
    cfg = config.load(bench_ivr.REPO / "config.yaml")
    sandbox_nodes.up(cfg, 1, 60, app.sandbox_sim_timing(cfg),
                     log=_log)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--idle-s", type=float, default=5.0,
                        help="Seconds each node's idle CPU is read before a run.")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 16384), max(hard, 16384)))
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cfg = bench_ivr.bench_config(base, args.calls)
        build_prompts(cfg)
        sim = app.sandbox_sim_timing(cfg)
        try:
            sandbox_nodes.up(cfg, 1, 60, sim, log=_log)
            install_prompts_to_pbx(cfg)  # one sounds folder serves every instance
            for r in range(args.rounds):
                runs = []
                for n in args.nodes:
                    run_cfg = pool_config(cfg, base, n, f"r{r}n{n}")
                    runs.append(one_run(run_cfg, n, args.calls, sim, args.idle_s))
                rounds.append({"runs": runs, "ratios": ratios(runs)})
        finally:
            restore_single()
    print(json.dumps({"cpus": os.cpu_count(), "calls": args.calls, "nodes": args.nodes,
                      "rounds": rounds, "summary": summary(rounds, args.nodes)}, indent=2))


if __name__ == "__main__":
    main()
