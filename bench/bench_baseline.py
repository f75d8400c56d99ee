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
`--stock-paced` adds to each pair, after its controller run, stock again with its Originates
sent one by one at the mean rate the controller reached in that same pair (not all at once),
to see how much of the gap is stock's burst. `--ctl-burst` adds the controller with its
Originate window (sending.SEND_WINDOW, 32) widened to every call, in this process only: the
product is unchanged. `--stock-uvloop` adds stock at once again on uvloop (the controller's
loop, app.run) instead of the stdlib's. `--rate R` adds both sides at R Originates a second:
stock paced at R, and the controller with dialer.calls_per_second = R (its own setting), as
when a loaded sandbox holds the controller's window to 18-88 a second. `--store-split` adds
the controller again with the CPU of its store's methods timed apart (store_cpu.py): the
store's share, and `rest_ratio`, what the controller spends outside its store ÷ stock's
whole (how near the goal the controller would be with a store that cost nothing). Each run
also gives its voluntary context switches per call (ru_nvcsw, whole process: a proxy for the
event loop's wake-ups) and the cyclic collector's CPU per call (gc.callbacks).

`--backend postgresql` runs the controller on a PostgreSQL store instead of SQLite: a private
cluster started for the run from Debian's postgresql package (as `ivr db up`, fsync on), a
fresh database for each controller run. The SQL then runs in the server's processes, not the
controller's: each pair also gives the server's CPU per call over the controller's run (its
processes' user + system time from /proc) and `ratio_with_server`, the controller and the
server together ÷ stock.

Prints one JSON object. Usage (root, sandbox up):
  python3 bench/bench_baseline.py [--calls 1000] [--all-events] [--pairs 3 [--stock-paced]
                                  [--ctl-burst] [--stock-uvloop] [--rate R] [--store-split]
                                  [--backend postgresql]]
Not a test, and not a product: it asserts nothing; the README records its output.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from panoramisk import Manager
from panoramisk.fast_agi import Application, Request

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_capacity  # noqa: E402  (its private PostgreSQL cluster's start)
import bench_ivr  # noqa: E402  (same config, numbers and sandbox set-up)
import gc_passes  # noqa: E402
from store_cpu import StoreCpu  # noqa: E402

from ivr import app  # noqa: E402
from ivr.prompts.install import install_prompts_to_pbx  # noqa: E402
from ivr.campaign import sending  # noqa: E402
from ivr.prompts.build import build_prompts  # noqa: E402
from ivr.store.pg_cluster import PgCluster  # noqa: E402
from ivr.telephony.contract import (OUTBOUND_CONTEXT, OUTBOUND_EXTEN, SIM_CONTEXT,  # noqa: E402
                                    VAR_AGI_URL, VAR_AMD, VAR_CALL_ID)
from ivr.telephony.sandbox import Sandbox  # noqa: E402

PORT = 4612
ALL_EVENTS_USER = "ivr-bench-all"
PG_PORT = 55493  # the bench's own cluster: neither `ivr db up`'s nor bench_capacity's port


class Stores:
    """Where each controller run keeps its store: a fresh SQLite file in `base` (the default),
    or with a cluster (--backend postgresql) a fresh database of it, and its server's CPU."""

    def __init__(self, base: Path, cluster: PgCluster | None = None) -> None:
        self.base, self.cluster = base, cluster

    def fresh(self, name: str) -> Path | str:
        if self.cluster is None:
            return self.base / f"{name}.db"
        database = name.replace("-", "_")  # a database name has no dash
        self.cluster.create_database(database)
        return self.cluster.url_for(database)

    def server_cpu(self) -> Callable[[], float] | None:
        if self.cluster is None:
            return None
        pid = self.cluster.status().pid
        assert pid is not None, "the bench's PostgreSQL is not running"
        return lambda: bench_capacity.tree_cpu_s(pid)


GC = gc_passes.GcPasses()  # the controller's heap is larger: a full pass walks all of it


def add_all_events_user(sandbox: Sandbox) -> str:
    conf = sandbox.etc / "manager.conf"
    if f"[{ALL_EVENTS_USER}]" not in conf.read_text():
        with conf.open("a") as f:  # the sandbox's own section builder, with no event filter
            f.write(sandbox._ami_user(ALL_EVENTS_USER, "all", "originate", ()))
        sandbox.cli("manager reload")
    return ALL_EVENTS_USER


def originate(i: int, number: str) -> dict[str, object]:
    return {"Action": "Originate", "Channel": f"Local/{number}@{SIM_CONTEXT}",
            "Context": OUTBOUND_CONTEXT, "Exten": OUTBOUND_EXTEN, "Priority": "1",
            "Async": "true", "Timeout": "30000",
            "Variable": [f"{VAR_CALL_ID}={i}", f"{VAR_AGI_URL}=agi://127.0.0.1:{PORT}",
                         f"{VAR_AMD}=0"]}


async def send_all(manager: Manager, nums: list[str], rate: float | None) -> list[object]:
    """Stock's Originates: all at once (rate None, as panoramisk's user would), or one every
    1/rate s from the first (the controller's mean rate: one timer wake-up per Originate)."""
    loop, replies = asyncio.get_running_loop(), []
    start = loop.time()
    for i, n in enumerate(nums):
        if rate:
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        replies.append(manager.send_action(originate(i, n)))
    return replies


def usage(r0: resource.struct_rusage, r1: resource.struct_rusage, calls: int
          ) -> dict[str, float]:
    """CPU per call, the kernel's share, context switches per call between two readings."""
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    return {"cpu_ms_per_call": round(cpu / calls * 1000, 3), "sys_share": sys_share(r0, r1),
            "nvcsw_per_call": round((r1.ru_nvcsw - r0.ru_nvcsw) / calls, 2),
            "nivcsw_per_call": round((r1.ru_nivcsw - r0.ru_nivcsw) / calls, 2)}


async def prototype(cfg: bench_ivr.config.Config, nums: list[str], user: str,
                    rate: float | None = None) -> dict[str, float]:
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
    GC.take()  # the passes before this run are not its own
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    replies = await send_all(manager, nums, rate)
    sent_s = time.monotonic() - t0
    await asyncio.wait_for(done.wait(), 600)
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    gc_use = gc_passes.per_call(GC.take(), len(nums))
    for reply in replies:
        reply.cancel()  # type: ignore[attr-defined]
    manager.close()
    server.close()
    return {"calls": len(nums), "pressed_yes": yes, "elapsed_s": round(t1 - t0, 3),
            "originations_per_s": round(len(nums) / sent_s, 1) if sent_s else 0.0,
            **usage(r0, r1, len(nums)), **gc_use}


def sys_share(r0: resource.struct_rusage, r1: resource.struct_rusage) -> float:
    """The kernel's part of the CPU between two readings (syscalls: sockets, SQLite's I/O)."""
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    return round((r1.ru_stime - r0.ru_stime) / cpu, 3) if cpu else 0.0


def controller(cfg: bench_ivr.config.Config, db: Path | str, nums: list[str],
               window: int | None = None, rate: float | None = None,
               split: StoreCpu | None = None,
               server_cpu: Callable[[], float] | None = None) -> dict[str, float]:
    """bench_ivr's FastAGI run on a fresh store (`db`: a SQLite file, or a PostgreSQL URL
    whose server's CPU `server_cpu` reads); `window` widens the Originate window for this
    run only (the bench's experiment, not the product's setting); `rate`: calls_per_second;
    `split`: the store's methods timed (store_cpu.py: an extra run, its wrappers cost)."""
    run_cfg = dataclasses.replace(cfg, store=dataclasses.replace(cfg.store, url=db) if
                                  isinstance(db, str) else
                                  dataclasses.replace(cfg.store, path=str(db)))
    if rate:
        run_cfg = dataclasses.replace(run_cfg, dialer=dataclasses.replace(
            run_cfg.dialer, calls_per_second=rate))
    kept = sending.SEND_WINDOW
    sending.SEND_WINDOW = window or kept
    try:
        GC.take()  # the passes before this run are not its own
        r0 = resource.getrusage(resource.RUSAGE_SELF)  # and the list's insert
        with split.wrapping(bench_ivr.Store) if split else contextlib.nullcontext():
            ctl = app.run(bench_ivr.run_fastagi(run_cfg, nums, key_latency=False,
                                                server_cpu=server_cpu))
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        gc_use = gc_passes.per_call(GC.take(), len(nums))
    finally:
        sending.SEND_WINDOW = kept
    used = usage(r0, r1, len(nums))
    return {"cpu_ms_per_call": round(ctl["cpu_ms_per_call"], 3),  # run_fastagi's own window
            "sys_share": used["sys_share"], "nvcsw_per_call": used["nvcsw_per_call"],
            "nivcsw_per_call": used["nivcsw_per_call"], "elapsed_s": round(ctl["elapsed_s"], 1),
            "completed": ctl["completed"],
            "originations_per_s": round(ctl["originations_per_s"], 1),
            **({"server_cpu_ms_per_call": round(ctl["server_cpu_ms_per_call"], 3)}
               if "server_cpu_ms_per_call" in ctl else {}),
            **gc_use}  # type: ignore[dict-item]


def one_pair(cfg: bench_ivr.config.Config, stores: Stores, i: int, nums: list[str], user: str,
             paced: bool, burst: bool, uv: bool, rate: float | None,
             split: bool = False) -> dict[str, object]:
    """Stock at once, the controller, then (options) stock paced at the rate the controller
    reached just before, the controller with a window as wide as the run, stock on uvloop,
    both sides at `rate` Originates a second, and the controller with its store's CPU split
    out."""
    stock = asyncio.run(prototype(cfg, nums, user))
    ctl = controller(cfg, stores.fresh(f"pair{i}"), nums, server_cpu=stores.server_cpu())
    row: dict[str, object] = {
        "baseline_ms": stock["cpu_ms_per_call"], "controller_ms": ctl["cpu_ms_per_call"],
        "baseline_sys_share": stock["sys_share"], "controller_sys_share": ctl["sys_share"],
        "baseline_elapsed_s": stock["elapsed_s"], "controller_elapsed_s": ctl["elapsed_s"],
        "completed": ctl["completed"], "pressed_yes": stock["pressed_yes"],
        "ratio": round(ctl["cpu_ms_per_call"] / stock["cpu_ms_per_call"], 3),
        "baseline_nvcsw_per_call": stock["nvcsw_per_call"],
        "controller_nvcsw_per_call": ctl["nvcsw_per_call"],
        "controller_originations_per_s": ctl["originations_per_s"],
        "baseline_gc": [stock["gc_ms_per_call"], stock["gc_passes"]],
        "controller_gc": [ctl["gc_ms_per_call"], ctl["gc_passes"]]}
    if "server_cpu_ms_per_call" in ctl:  # PostgreSQL: the SQL ran in the server's processes
        row["server_ms"] = ctl["server_cpu_ms_per_call"]
        row["ratio_with_server"] = round((ctl["cpu_ms_per_call"] + row["server_ms"])
                                         / stock["cpu_ms_per_call"], 3)
    if paced:
        slow = asyncio.run(prototype(cfg, nums, user, rate=ctl["originations_per_s"]))
        row["stock_paced"] = slow
        row["ratio_vs_paced"] = round(ctl["cpu_ms_per_call"] / slow["cpu_ms_per_call"], 3)
    if burst:
        wide = controller(cfg, stores.fresh(f"pair{i}-burst"), nums, window=len(nums))
        row["controller_burst"] = wide
        row["burst_ratio"] = round(wide["cpu_ms_per_call"] / stock["cpu_ms_per_call"], 3)
    if uv:
        row["stock_uvloop"] = app.run(prototype(cfg, nums, user))
    if rate:
        at_rate = asyncio.run(prototype(cfg, nums, user, rate=rate))
        ctl_rate = controller(cfg, stores.fresh(f"pair{i}-rate"), nums, rate=rate)
        row["stock_at_rate"], row["controller_at_rate"] = at_rate, ctl_rate
        row["ratio_at_rate"] = round(ctl_rate["cpu_ms_per_call"] / at_rate["cpu_ms_per_call"], 3)
    if split:
        row.update(store_split(cfg, stores.fresh(f"pair{i}-split"), nums,
                               stock["cpu_ms_per_call"]))
    return row


def store_split(cfg: bench_ivr.config.Config, db: Path | str, nums: list[str], stock_ms: float
                ) -> dict[str, object]:
    """A further controller run with its store's methods timed: the store's CPU per call, and
    what the rest of the controller (AMI, FastAGI, flow, loop) costs beside stock's whole."""
    timer = StoreCpu()
    run = controller(cfg, db, nums, split=timer)
    timer.cpu.pop("bind_contacts", None)  # the list's insert, before run_fastagi's CPU window
    used = timer.per_call(len(nums))
    rest = run["cpu_ms_per_call"] - float(used["store_ms_per_call"])  # type: ignore[arg-type]
    return {"controller_split": {**run, **used, "rest_ms_per_call": round(rest, 3)},
            "rest_ratio": round(rest / stock_ms, 3),
            "store_share": round(float(used["store_ms_per_call"])  # type: ignore[arg-type]
                                 / run["cpu_ms_per_call"], 3)}


def spread(rows: list[dict[str, object]], key: str) -> dict[str, float]:
    vals = sorted(float(r[key]) for r in rows if key in r)  # type: ignore[arg-type]
    if not vals:
        return {}
    return {f"{key}_min": vals[0], f"{key}_median": vals[len(vals) // 2],
            f"{key}_max": vals[-1]}


def pairs(cfg: bench_ivr.config.Config, stores: Stores, n_pairs: int, nums: list[str],
          user: str, paced: bool = False, burst: bool = False, uv: bool = False,
          rate: float | None = None, split: bool = False) -> dict[str, object]:
    """Stock panoramisk then the controller, n_pairs times in turn, in this one process: the
    ratio of each pair is taken under the same load on the machine."""
    rows = [one_pair(cfg, stores, i, nums, user, paced, burst, uv, rate, split)
            for i in range(n_pairs)]
    return {"pairs": rows, **spread(rows, "ratio"), **spread(rows, "ratio_vs_paced"),
            **spread(rows, "burst_ratio"), **spread(rows, "ratio_at_rate"),
            **spread(rows, "rest_ratio"), **spread(rows, "store_share"),
            **spread(rows, "ratio_with_server")}


@contextlib.contextmanager
def pg_cluster(base: Path, backend: str) -> Iterator[PgCluster | None]:
    """The bench's private PostgreSQL (as `ivr db up`: Debian's package, loopback, fsync on),
    its password where the store reads it; stopped after the run. None for SQLite."""
    if backend != "postgresql":
        yield None
        return
    os.chmod(base, 0o755)  # PostgreSQL's own user must reach its cluster inside
    cluster = PgCluster(base / "pg", port=PG_PORT)
    bench_capacity.postgres(cluster)  # up, its password where the store reads it
    try:
        yield cluster
    finally:
        cluster.down()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--all-events", action="store_true",
                        help="log in as a bench user that receives every event")
    parser.add_argument("--pairs", type=int, default=0,
                        help="also run the controller (bench_ivr's run) after each baseline "
                             "run, this many times in turn, and print the CPU ratio per pair")
    parser.add_argument("--stock-paced", action="store_true",
                        help="with --pairs: also stock paced at the controller's rate")
    parser.add_argument("--ctl-burst", action="store_true",
                        help="with --pairs: also the controller with a window of every call")
    parser.add_argument("--stock-uvloop", action="store_true",
                        help="with --pairs: also stock at once on uvloop")
    parser.add_argument("--rate", type=float, default=None,
                        help="with --pairs: also both sides at this many Originates a second")
    parser.add_argument("--store-split", action="store_true",
                        help="with --pairs: also the controller with its store's CPU timed "
                             "apart (an extra run)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite",
                        help="with --pairs: the controller's store (PostgreSQL: a private "
                             "cluster for the run, the server's CPU given beside)")
    args = parser.parse_args()
    if args.backend == "postgresql" and (args.store_split or not args.pairs):
        parser.error("--backend postgresql goes with --pairs, without --store-split (which "
                     "times the SQLite store's methods)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 16384), max(hard, 16384)))
    with tempfile.TemporaryDirectory() as tmp, pg_cluster(Path(tmp), args.backend) as cluster:
        cfg = bench_ivr.bench_config(Path(tmp), args.calls)
        build_prompts(cfg)
        sandbox = Sandbox(cfg)
        sandbox.up(sim_timing=app.sandbox_sim_timing(cfg))
        install_prompts_to_pbx(cfg)
        user = add_all_events_user(sandbox) if args.all_events else cfg.pbx.user
        nums = bench_ivr.numbers(args.calls)
        if args.pairs:
            out = pairs(cfg, Stores(Path(tmp), cluster), args.pairs, nums, user,
                        args.stock_paced, args.ctl_burst, args.stock_uvloop, args.rate,
                        args.store_split)
            print(json.dumps({"calls": args.calls, "ami_user": user, "backend": args.backend,
                              **out}, indent=2))
            return
        result = asyncio.run(prototype(cfg, nums, user))
    print(json.dumps({"panoramisk_out_of_the_box": True, "ami_user": user, **result}, indent=2))


if __name__ == "__main__":
    main()
