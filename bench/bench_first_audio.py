"""Benchmark: dead air from the answer to the first audio, per simulated callee kind.

Measured on Asterisk's side, over the sandbox's monitor AMI user: the answer is the
OriginateResponse Success of the IVR channel (Asterisk sends it when the callee answers, before
the dialplan runs), the first audio is the first AGIExecStart of a STREAM FILE or GET OPTION on
that channel (the intro starting). Kinds:
- silent: a SIP callee over the PJSIP trunk, SIPp as the carrier (uas-silent: 200 OK, no RTP);
- allo: the Local callee 30 (says "allô", then silence, no key);
- machine: the Local callee 80 (a long spoken greeting, no key).
With AMD on, a machine it recognises is hung up without any audio: counted in `no_audio`.

Prints one JSON object per AMD setting: p50/p99/max seconds per kind (with 20 calls a kind the
p99 is the max). Usage (root, sandbox up, SIPp installed, UDP 5070 free):
    python3 bench/bench_first_audio.py [--calls 20] [--amd off|on|both]
Not a test: it asserts nothing; the README records its output.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ivr import app, config
from ivr.prompts.install import install_prompts_to_pbx
from ivr.prompts.build import build_prompts
from ivr.store.sqlite import Store, utc
from ivr.telephony.ami import Ami
from ivr.telephony.sandbox import Sandbox

REPO = Path(__file__).resolve().parent.parent
SIPP = REPO / "tests/integration/sipp/uas-silent.xml"
LOCAL = {"allo": "30", "machine": "80"}  # ivr-sim callees (last two digits)


def bench_config(base: Path, n: int, amd: bool, dial: str) -> config.Config:
    cfg = config.load(REPO / "config.yaml")
    return dataclasses.replace(
        cfg, store=dataclasses.replace(cfg.store, path=str(base / f"fa-{amd}-{n}.db")),
        dialer=dataclasses.replace(cfg.dialer, max_concurrent=3 * n, calls_per_second=50.0,
                                   amd=amd, dial_string=dial),
        retry=dataclasses.replace(cfg.retry, max_attempts=1),
        flow=dataclasses.replace(cfg.flow, ask_slot=False, input_timeout_s=1, max_repeats=0),
        agi=dataclasses.replace(cfg.agi, port=4611))


class Watch:
    """The monitor user's events: answer and first STREAM FILE per channel (monotonic s)."""

    def __init__(self, cfg: config.Config) -> None:
        self.ami = Ami(cfg.pbx.host, cfg.pbx.port, Sandbox(cfg).monitor_user,
                       app.ami_secret(cfg), events=("OriginateResponse", "AGIExecStart"))
        self.answer: dict[str, float] = {}
        self.audio: dict[str, float] = {}
        self.agi: dict[str, float] = {}  # the first AGI command: after AMD, if AMD runs
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.ami.connect()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for ev in self.ami.events():
            now, uid = time.monotonic(), str(ev.get("Uniqueid", ""))
            if ev.get("Event") == "OriginateResponse" and ev.get("Response") == "Success":
                self.answer.setdefault(uid, now)
            elif ev.get("Event") == "AGIExecStart":
                self.agi.setdefault(uid, now)
                if str(ev.get("Command", "")).upper().startswith(("STREAM FILE", "GET OPTION")):
                    self.audio.setdefault(uid, now)

    def close(self) -> None:
        self.ami.close()
        if self.task is not None:
            self.task.cancel()


async def place(cfg: config.Config, numbers: list[str]) -> list[dict[str, Any]]:
    """Dial every number at once through the real controller; wait for every outcome."""
    store = Store.open(cfg.path(cfg.store.path))
    at = datetime.now(timezone.utc)
    for n in numbers:
        store.db.execute("INSERT OR IGNORE INTO contacts (number, source, basis, created_at, "
                         "updated_at) VALUES (?, 'bench', 'consent', ?, ?)", (n, utc(at), utc(at)))
    store.bind_contacts(numbers, campaign=cfg.campaign.name, source="bench", basis="consent",
                        acquired_on=None, now=at)  # as an import for this campaign leaves them
    ctl = await app.start(cfg, store)
    try:
        for n in numbers:
            await ctl.dialer.dial(store.one("SELECT * FROM contacts WHERE number = ?", (n,)))
        deadline = time.monotonic() + 120
        while ctl.dialer.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        await ctl.close()
    return store.q("SELECT number, channel_id, outcome FROM calls")


def pct(values: list[float], q: float) -> float | None:
    g = sorted(values)
    return round(g[min(len(g) - 1, int(q * len(g)))], 3) if g else None


def summary(gaps: list[float], to_agi: list[float], no_audio: int) -> dict[str, Any]:
    return {"n": len(gaps), "p50_s": pct(gaps, 0.5), "p99_s": pct(gaps, 0.99),
            "max_s": pct(gaps, 1.0), "no_audio": no_audio,
            "answer_to_agi_p50_s": pct(to_agi, 0.5)}


def gaps_of(rows: list[dict[str, Any]], watch: Watch, kind_of: dict[str, str]
            ) -> dict[str, dict[str, Any]]:
    per: dict[str, tuple[list[float], list[float], list[int]]] = {
        k: ([], [], [0]) for k in set(kind_of.values())}
    for r in rows:
        gaps, to_agi, missing = per[kind_of[r["number"]]]
        a, b = watch.answer.get(r["channel_id"]), watch.audio.get(r["channel_id"])
        c = watch.agi.get(r["channel_id"])
        if a is not None and c is not None:
            to_agi.append(c - a)
        if a is not None and b is not None:
            gaps.append(b - a)
        else:
            missing[0] += 1
    return {k: summary(g, t, m[0]) for k, (g, t, m) in per.items()}


async def run_setting(base: Path, n: int, amd: bool) -> dict[str, Any]:
    local = bench_config(base / "local", n, amd, "Local/{number}@ivr-sim")
    sip = bench_config(base / "sip", n, amd, "PJSIP/{number}@carrier")
    kind_of = {f"+3319900{b:02d}{s}": k for k, s in LOCAL.items() for b in range(40, 40 + n)}
    kind_of |= {f"+3319900{b:02d}77": "silent" for b in range(40, 40 + n)}
    watch = Watch(local)
    await watch.start()
    try:
        rows = await place(local, [x for x, k in kind_of.items() if k != "silent"])
        sipp = subprocess.Popen(
            ["sipp", "-sf", str(SIPP), "-i", "127.0.0.1", "-p", "5070", "-mi", "127.0.0.1",
             "-mp", "6000", "-m", str(n), "-nostdin", "-timeout", "120s"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd=base)
        try:
            await asyncio.sleep(1.0)  # SIPp binds 5070
            rows += await place(sip, [x for x, k in kind_of.items() if k == "silent"])
        finally:
            sipp.kill()
            sipp.wait()
    finally:
        watch.close()
    return {"amd": amd, "calls_per_kind": n, "answer_to_first_audio": gaps_of(rows, watch, kind_of)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--amd", choices=("off", "on", "both"), default="both")
    args = parser.parse_args()
    settings = {"off": [False], "on": [True], "both": [False, True]}[args.amd]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for d in ("local", "sip"):
            (base / d).mkdir()
        cfg = bench_config(base / "local", args.calls, False, "Local/{number}@ivr-sim")
        build_prompts(cfg)
        Sandbox(cfg).up(sim_timing=app.sandbox_sim_timing(cfg))
        install_prompts_to_pbx(cfg)
        out = [app.run(run_setting(base, args.calls, amd)) for amd in settings]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
