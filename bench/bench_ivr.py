"""Benchmark: the FastAGI-driven IVR against the same IVR in pure dialplan, on the sandbox.

Prints one JSON object:
- throughput_ratio: calls/s through the controller ÷ calls/s of [ivr-bench-dialplan], with N
  simultaneous calls each (same prompts, same simulated callees, AMD off in both);
- cpu_ms_per_call: the controller's CPU (user+sys, AMI events and FastAGI included) ÷ N;
- originations_per_s: sustained Originate rate of the dialer (calls_per_second unbounded);
- key_to_prompt_ms p50/p99: time the controller adds between a key arriving and the next
  prompt command leaving;
- outcome_rows_per_s: calls written with their outcome, one transaction each, to a file store.

Usage (root, sandbox up):  python3 bench/bench_ivr.py [--calls 1000]
Not a test: it asserts nothing; the README records its output.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ivr.telephony import fastagi as agi_server
from ivr import app
from ivr.prompts.install import install_prompts_to_pbx
from ivr import config
from ivr.telephony.ami import Ami
from ivr.telephony.contract import (BENCH_CONTEXT, BENCH_VAR_REPEATS, BENCH_VAR_TIMEOUT,
                                    SIM_CONTEXT)
from ivr.prompts.build import build_prompts
from ivr.telephony.sandbox import Sandbox
from ivr.store.sqlite import CallResult, Store, utc

REPO = Path(__file__).resolve().parent.parent
SUFFIXES = ["12", "13", "14", "15", "16", "17", "18", "19", "21", "22"]  # press 1 in intro


def numbers(n: int) -> list[str]:
    return [f"+3319900{b:02d}{s}" for s in SUFFIXES for b in range(100)][:n]


def bench_config(base: Path, n: int) -> config.Config:
    cfg = config.load(REPO / "config.yaml")
    return dataclasses.replace(
        cfg, base_dir=cfg.base_dir,
        store=dataclasses.replace(cfg.store, path=str(base / "bench.db")),
        dialer=dataclasses.replace(cfg.dialer, max_concurrent=n, calls_per_second=100000.0,
                                   amd=False),
        retry=dataclasses.replace(cfg.retry, max_attempts=1),
        # The measured flow is the one these numbers were first taken on: no slot question.
        flow=dataclasses.replace(cfg.flow, ask_slot=False),
        agi=dataclasses.replace(cfg.agi, port=4610))


class KeyLatency:
    """Wraps AgiRequest.send_command: from a result carrying a key to the next command."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._orig = agi_server.AgiRequest.send_command

    def install(self) -> None:
        orig, samples = self._orig, self.samples

        async def timed(req: agi_server.AgiRequest, command: str) -> dict:
            keyed_at = getattr(req, "_keyed_at", None)
            if keyed_at is not None:
                samples.append(time.perf_counter() - keyed_at)
                req._keyed_at = None  # type: ignore[attr-defined]
            result = await orig(req, command)
            code = result.get("result", ("0",))[0]
            if command.startswith(("STREAM FILE", "GET OPTION", "WAIT FOR DIGIT")) and \
                    code.isdigit() and int(code) > 0:
                req._keyed_at = time.perf_counter()  # type: ignore[attr-defined]
            return result
        agi_server.AgiRequest.send_command = timed  # type: ignore[method-assign]

    def uninstall(self) -> None:
        agi_server.AgiRequest.send_command = self._orig  # type: ignore[method-assign]


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def open_bench_store(cfg: config.Config) -> Any:
    """store.url's PostgreSQL (the opposition key given, as bench_capacity does), else the
    SQLite file at store.path."""
    if cfg.store.url:
        from ivr.store.pg import PgStore  # psycopg is loaded only for a PostgreSQL store
        return PgStore.open(cfg.store.url, optout_key=b"bench")
    return Store.open(cfg.path(cfg.store.path), busy_timeout_s=0.5)


def seed(store: Store, cfg: config.Config, nums: list[str]) -> None:
    """The contacts as an import leaves them, consented and bound to the campaign (lists
    belong to their campaign: a run calls only the contacts bound to it)."""
    now = datetime.now(timezone.utc)
    with store.transaction():
        for n in nums:
            store.add_contact(n, name=None, timezone=None, source="bench", basis="consent",
                              acquired_on=None, extra="{}", status="pending", now=now)
        store.bind_contacts(nums, campaign=cfg.campaign.name, source="bench", basis="consent",
                            acquired_on=None, now=now)


async def run_fastagi(cfg: config.Config, nums: list[str], key_latency: bool = True,
                      server_cpu: Callable[[], float] | None = None) -> dict[str, float]:
    """The controller's run; key_latency=False leaves out the key-to-prompt timer, which wraps
    every AGI command (CPU comparisons: it is the bench's work, not the controller's). On
    store.url's PostgreSQL database when the config names one, else on store.path;
    `server_cpu`: the database server's CPU seconds so far, read in the same window."""
    store: Any = open_bench_store(cfg)
    seed(store, cfg, nums)
    latency = KeyLatency()
    if key_latency:
        latency.install()
    first_last: list[float] = []
    server0 = server_cpu() if server_cpu else 0.0
    cpu0, t0 = cpu_s(), time.monotonic()

    def tick(ctl: app.Controller) -> None:
        if ctl.dialer.originated and len(first_last) < 1:
            first_last.append(time.monotonic())
        if ctl.dialer.originated == len(nums) and len(first_last) == 1:
            first_last.append(time.monotonic())
    try:
        report, _ = await app.run_campaign(cfg, store, on_tick=tick)
    finally:
        latency.uninstall()
    elapsed, cpu = time.monotonic() - t0, cpu_s() - cpu0
    server = server_cpu() - server0 if server_cpu else None
    done = store.one("SELECT COUNT(*) AS n FROM calls WHERE outcome = 'message_played'")["n"]
    if cfg.store.url:
        store.close()  # its pool: the next run has a database of its own
    orig_span = (first_last[1] - t0) if len(first_last) == 2 else elapsed
    lat = sorted(latency.samples)
    return {"calls": len(nums), "completed": done, "elapsed_s": elapsed,
            "throughput": done / elapsed, "cpu_ms_per_call": cpu / len(nums) * 1000,
            "originations_per_s": report.originated / orig_span,
            "key_to_prompt_ms_p50": statistics.median(lat) * 1000 if lat else float("nan"),
            "key_to_prompt_ms_p99": lat[int(len(lat) * 0.99) - 1] * 1000 if lat else float("nan"),
            "key_samples": len(lat),
            **({"server_cpu_ms_per_call": server / len(nums) * 1000}
               if server is not None else {})}


async def run_dialplan(cfg: config.Config, nums: list[str]) -> dict[str, float]:
    ami = Ami(cfg.pbx.host, cfg.pbx.port, cfg.pbx.user, app.ami_secret(cfg),
              events={"Hangup", "OriginateResponse"})
    await ami.connect()
    ids = {f"bench-{i}-{time.time_ns()}" for i in range(len(nums))}
    t0 = time.monotonic()
    for channel_id, n in zip(sorted(ids), nums):
        await ami.action({
            "Action": "Originate", "Channel": f"Local/{n}@{SIM_CONTEXT}",
            "Context": BENCH_CONTEXT, "Exten": "s", "Priority": "1", "Async": "true",
            "ChannelId": channel_id, "Timeout": str(int(cfg.dialer.ring_timeout_s * 1000)),
            "Variable": [f"{BENCH_VAR_TIMEOUT}={cfg.flow.input_timeout_s:g}",
                         f"{BENCH_VAR_REPEATS}={cfg.flow.max_repeats}"]}, timeout=30)
    open_ids = set(ids)
    while open_ids:
        ev = await ami.next_event(120)
        if ev is None:
            break
        open_ids.discard(ev.get("Uniqueid", "") if ev.get("Event") == "Hangup" else "")
    elapsed = time.monotonic() - t0
    ami.close()
    done = len(ids) - len(open_ids)
    return {"calls": len(nums), "completed": done, "elapsed_s": elapsed,
            "throughput": done / elapsed}


def outcome_rows_per_s(base: Path, n: int = 5000) -> float:
    store = Store.open(base / "rows.db", optout_key=b"bench")
    now = datetime.now(timezone.utc)
    ts = utc(now)
    store.db.execute("INSERT INTO contacts (number, source, created_at, updated_at) "
                     "VALUES ('+33199000010', 'b', ?, ?)", (ts, ts))
    contact = store.one("SELECT * FROM contacts")
    calls = [store.create_attempt(contact, f"c{i}", "+33199000000", now)["id"]
             for i in range(n)]
    result = CallResult(outcome="message_played", stage="goodbye", keys="1",
                        heard={"message": "a" * 64, "legal": "b" * 64}, choice="consent",
                        choice_key="1", answered_prompt="intro", answered_sha256="c" * 64)
    t0 = time.perf_counter()
    for call_id in calls:
        store.finish_answered(call_id, result, now)
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 16384), max(hard, 16384)))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cfg = bench_config(base, args.calls)
        build_prompts(cfg)
        Sandbox(cfg).up(sim_timing=app.sandbox_sim_timing(cfg))
        install_prompts_to_pbx(cfg)
        nums = numbers(args.calls)
        dialplan = app.run(run_dialplan(cfg, nums))
        fastagi = app.run(run_fastagi(cfg, nums))
        out = {
            "calls": args.calls,
            "throughput_ratio": round(fastagi["throughput"] / dialplan["throughput"], 3),
            "fastagi": {k: round(v, 3) for k, v in fastagi.items()},
            "dialplan": {k: round(v, 3) for k, v in dialplan.items()},
            "cpu_ms_per_call": round(fastagi["cpu_ms_per_call"], 3),
            "originations_per_s": round(fastagi["originations_per_s"], 1),
            "key_to_prompt_ms_p50": round(fastagi["key_to_prompt_ms_p50"], 3),
            "key_to_prompt_ms_p99": round(fastagi["key_to_prompt_ms_p99"], 3),
            "outcome_rows_per_s": round(outcome_rows_per_s(base), 1),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
