"""Benchmark: system CPU per call, the FastAGI IVR ÷ the same IVR in pure dialplan (issue 14).

Both sides of each call are counted, from /proc: Asterisk's CPU (utime + stime of the sandbox's
asterisk process, every thread, from /proc/<pid>/stat) plus the controller's (this process,
getrusage). Same prompts, same simulated callees (press 1 during the intro: intro, message,
legal mentions, goodbye), AMD off, all N calls originated at once:
- dialplan: [ivr-bench-dialplan] (dialplans/ivr-sim.conf, sandbox only) does Read/Playback
  itself; the "controller" is the few AMI lines that originate the calls;
- fastagi: the controller's whole run (bench_ivr.run_fastagi: store, rules, AGI, outcomes).
The two run in turn, `--rounds` times per N, so each ratio is taken side by side; the wall
clock is printed but not used (it swings while Asterisk is saturated).

Prints one JSON object. Usage (root; takes the sandbox, so hold the integration lock):
  flock /tmp/ivr-integ.lock python3 bench/bench_system_cpu.py [--calls 300 1000] [--rounds 2]
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
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ivr  # noqa: E402  (same config, numbers, sandbox set-up and both IVR runs)

from ivr import app  # noqa: E402
from ivr.prompts.install import install_prompts_to_pbx  # noqa: E402
from ivr.prompts.build import build_prompts  # noqa: E402
from ivr.telephony.sandbox import Sandbox  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state is fields[0]
    return (int(fields[11]) + int(fields[12])) / TICK


def self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measured(pid: int, run: Callable[[], Awaitable[dict[str, float]]]) -> dict[str, float]:
    """One IVR run with both CPUs read around it, per call."""
    ast0, ctl0 = proc_cpu_s(pid), self_cpu_s()
    res = app.run(run())
    ast, ctl = proc_cpu_s(pid) - ast0, self_cpu_s() - ctl0
    n = res["calls"]
    return {"completed": res["completed"], "elapsed_s": round(res["elapsed_s"], 2),
            "asterisk_ms_per_call": round(ast / n * 1000, 3),
            "controller_ms_per_call": round(ctl / n * 1000, 3),
            "system_ms_per_call": round((ast + ctl) / n * 1000, 3)}


def one_pair(cfg: bench_ivr.config.Config, base: Path, tag: str, n: int,
             pid: int) -> dict[str, object]:
    nums = bench_ivr.numbers(n)
    dialplan = measured(pid, lambda: bench_ivr.run_dialplan(cfg, nums))
    run_cfg = dataclasses.replace(cfg, store=dataclasses.replace(
        cfg.store, path=str(base / f"{tag}.db")))  # a fresh store: the same calls again
    fastagi = measured(pid, lambda: bench_ivr.run_fastagi(run_cfg, nums, key_latency=False))
    return {"dialplan": dialplan, "fastagi": fastagi,
            "ratio": round(fastagi["system_ms_per_call"] / dialplan["system_ms_per_call"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 16384), max(hard, 16384)))
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cfg = bench_ivr.bench_config(base, max(args.calls))
        build_prompts(cfg)
        status = Sandbox(cfg).up(sim_timing=app.sandbox_sim_timing(cfg))
        install_prompts_to_pbx(cfg)
        if status.pid is None:
            raise SystemExit("the sandbox Asterisk has no pid: `ivr pbx up` first")
        for n in args.calls:
            ncfg = dataclasses.replace(cfg, dialer=dataclasses.replace(cfg.dialer,
                                                                       max_concurrent=n))
            rounds = [one_pair(ncfg, base, f"n{n}r{r}", n, status.pid)
                      for r in range(args.rounds)]
            ratios = sorted(float(p["ratio"]) for p in rounds)  # type: ignore[arg-type]
            out[str(n)] = {"rounds": rounds, "ratio_min": ratios[0], "ratio_max": ratios[-1]}
    print(json.dumps({"goal": "ratio <= 1.10", "per_calls": out}, indent=2))


if __name__ == "__main__":
    main()
