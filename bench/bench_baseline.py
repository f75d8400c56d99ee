"""Calibration: the CPU per call of panoramisk used out of the box, on this machine.

Issue 7's CPU target (0.5 ms per call) was set against a quick prototype measured elsewhere at
1.6 ms. This script is such a prototype, run here on the sandbox with the same simulated callees
as bench_ivr.py: stock `Manager` (every event it is sent, Async Originate as panoramisk does it),
stock FastAGI `Application`, the four prompts of the yes path, the stdlib event loop, and none of
the controller's work (no store, no rules, no outcome, no fault handling). Its CPU per call tells
how fast this machine is compared with the one the target came from.

It logs in as the controller's AMI user, whose privileges and event filters already keep all
but four messages per call away. `--all-events` adds a bench user with `read = all` and no
event filter to the running sandbox (the next `ivr pbx up` rewrites manager.conf without it)
and logs in as that user, to see what the prototype's unfiltered events cost.

`--pairs N` runs it and then the controller (bench_ivr.py's FastAGI run, fresh store) N times in
turn in this one process and prints controller ÷ baseline CPU per call for each pair: the
figure of issue 14 (goal <= 1.3), taken side by side because the machine's speed drifts.

Prints one JSON object. Usage (root, sandbox up):
  python3 bench/bench_baseline.py [--calls 1000] [--all-events] [--pairs 3]
Not a test, and not a product: it asserts nothing; the README records its output.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from panoramisk import Manager
from panoramisk.fast_agi import Application, Request

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ivr  # noqa: E402  (same config, numbers and sandbox set-up)

from ivr import app  # noqa: E402
from ivr.prompts.build import build_prompts  # noqa: E402
from ivr.telephony.sandbox import Sandbox  # noqa: E402

PORT = 4612
ALL_EVENTS_USER = "ivr-bench-all"


def add_all_events_user(sandbox: Sandbox) -> str:
    conf = sandbox.etc / "manager.conf"
    if f"[{ALL_EVENTS_USER}]" not in conf.read_text():
        with conf.open("a") as f:  # the sandbox's own section builder, with no event filter
            f.write(sandbox._ami_user(ALL_EVENTS_USER, "all", "originate", ()))
        sandbox.cli("manager reload")
    return ALL_EVENTS_USER


async def prototype(cfg: bench_ivr.config.Config, nums: list[str], user: str
                    ) -> dict[str, float]:
    finished = yes = 0
    done = asyncio.Event()

    async def ivr(request: Request) -> None:
        nonlocal finished, yes
        try:
            res = await request.send_command('STREAM FILE ivr/intro "0123456789*#"')
            if res.get("result", ("0",))[0] == "49":  # 1: the message, then the legal mentions
                yes += 1
                for prompt in ("message", "legal", "goodbye"):
                    await request.send_command(f'STREAM FILE ivr/{prompt} "9"')
        finally:
            finished += 1
            if finished == len(nums):
                done.set()

    agi = Application(loop=asyncio.get_running_loop())
    agi.add_route("ivr", ivr)
    server = await asyncio.start_server(agi.handler, "127.0.0.1", PORT, backlog=4096)
    manager = Manager(loop=asyncio.get_running_loop(), host=cfg.pbx.host, port=cfg.pbx.port,
                      username=user, secret=app.ami_secret(cfg))
    await manager.connect()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    replies = [manager.send_action({
        "Action": "Originate", "Channel": f"Local/{n}@ivr-sim", "Context": "ivr-outbound",
        "Exten": "s", "Priority": "1", "Async": "true", "Timeout": "30000",
        "Variable": [f"CALL_ID={i}", f"IVR_AGI=agi://127.0.0.1:{PORT}", "IVR_AMD=0"]})
        for i, n in enumerate(nums)]
    await asyncio.wait_for(done.wait(), 600)
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    for reply in replies:
        reply.cancel()
    manager.close()
    server.close()
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    return {"calls": len(nums), "pressed_yes": yes, "elapsed_s": round(t1 - t0, 3),
            "cpu_ms_per_call": round(cpu / len(nums) * 1000, 3),
            "sys_share": round((r1.ru_stime - r0.ru_stime) / cpu, 3) if cpu else 0.0}


def sys_share(r0: resource.struct_rusage, r1: resource.struct_rusage) -> float:
    """The kernel's part of the CPU between two readings (syscalls: sockets, SQLite's I/O)."""
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    return round((r1.ru_stime - r0.ru_stime) / cpu, 3) if cpu else 0.0


def pairs(cfg: bench_ivr.config.Config, base: Path, n_pairs: int, nums: list[str],
          user: str) -> dict[str, object]:
    """Stock panoramisk then the controller, n_pairs times in turn, in this one process: the
    ratio of each pair is taken under the same load on the machine."""
    rows = []
    for i in range(n_pairs):
        stock = asyncio.run(prototype(cfg, nums, user))
        run_cfg = dataclasses.replace(cfg, store=dataclasses.replace(
            cfg.store, path=str(base / f"pair{i}.db")))  # a fresh store: the same calls again
        r0 = resource.getrusage(resource.RUSAGE_SELF)  # the split includes the list's insert
        ctl = app.run(bench_ivr.run_fastagi(run_cfg, nums, key_latency=False))
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        rows.append({"baseline_ms": stock["cpu_ms_per_call"],
                     "controller_ms": round(ctl["cpu_ms_per_call"], 3),
                     "baseline_sys_share": stock["sys_share"],
                     "controller_sys_share": sys_share(r0, r1),
                     "baseline_elapsed_s": stock["elapsed_s"],
                     "controller_elapsed_s": round(ctl["elapsed_s"], 1),
                     "completed": ctl["completed"], "pressed_yes": stock["pressed_yes"],
                     "ratio": round(ctl["cpu_ms_per_call"] / stock["cpu_ms_per_call"], 3)})
    ratios = sorted(r["ratio"] for r in rows)
    return {"pairs": rows, "ratio_min": ratios[0], "ratio_median": ratios[len(ratios) // 2],
            "ratio_max": ratios[-1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--all-events", action="store_true",
                        help="log in as a bench user that receives every event")
    parser.add_argument("--pairs", type=int, default=0,
                        help="also run the controller (bench_ivr's run) after each baseline "
                             "run, this many times in turn, and print the CPU ratio per pair")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 16384), max(hard, 16384)))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = bench_ivr.bench_config(Path(tmp), args.calls)
        build_prompts(cfg)
        sandbox = Sandbox(cfg)
        sandbox.up(sim_timing=app.sandbox_sim_timing(cfg))
        app.install_prompts_to_pbx(cfg)
        user = add_all_events_user(sandbox) if args.all_events else cfg.pbx.user
        nums = bench_ivr.numbers(args.calls)
        if args.pairs:
            out = pairs(cfg, Path(tmp), args.pairs, nums, user)
            print(json.dumps({"calls": args.calls, "ami_user": user, **out}, indent=2))
            return
        result = asyncio.run(prototype(cfg, nums, user))
    print(json.dumps({"panoramisk_out_of_the_box": True, "ami_user": user, **result}, indent=2))


if __name__ == "__main__":
    main()
