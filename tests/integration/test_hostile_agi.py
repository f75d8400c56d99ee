"""Issue 7.1: the FastAGI port is input someone else controls. Garbage, half-open connections,
slow senders and 1,000 idle connections: no spinning CPU, bounded memory, and a call in
progress is unaffected."""
from __future__ import annotations

import asyncio
import os
import resource
import time

from ivr import app
from ivr.config import Config
from ivr.store.sqlite import Store

from .conftest import add_contacts, fiction


def rss_mb() -> float:
    for line in open(f"/proc/{os.getpid()}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def _attack(port: int, stop: asyncio.Event) -> list[asyncio.StreamWriter]:
    writers: list[asyncio.StreamWriter] = []
    for i in range(1000):                                   # idle: connect, say nothing
        _, w = await asyncio.open_connection("127.0.0.1", port)
        writers.append(w)
    for i in range(50):                                     # garbage
        _, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(os.urandom(4096) + b"\n\n" + os.urandom(512))
        writers.append(w)
    for i in range(50):                                     # half-open: headers never end
        _, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"agi_network_script: ivr\nagi_arg_1: 1\n")
        writers.append(w)

    async def slow() -> None:                               # 1 byte every 200 ms
        _, w = await asyncio.open_connection("127.0.0.1", port)
        writers.append(w)
        for b in b"agi_network_script: ivr\nagi_channel: x\n" * 20:
            if stop.is_set():
                return
            w.write(bytes([b]))
            await asyncio.sleep(0.2)
    for _ in range(20):
        asyncio.create_task(slow())
    return writers


async def _scenario(cfg: Config, store: Store) -> dict[str, float]:
    ctl = await app.start(cfg, store)
    stop = asyncio.Event()
    try:
        rss0 = rss_mb()
        await ctl.dialer.dial(store.one("SELECT * FROM contacts"))
        writers = await _attack(cfg.agi.port, stop)
        peak_conns = ctl.agi.active
        cpu0, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep(3.0)                           # everything idle or trickling
        cpu = (time.process_time() - cpu0) / (time.monotonic() - t0)
        rss1 = rss_mb()
        while ctl.dialer.inflight:
            await asyncio.sleep(0.2)
        stop.set()
        for w in writers:
            w.close()
        await asyncio.sleep(0.5)
        return {"cpu_share": cpu, "rss_growth_mb": rss1 - rss0, "peak": peak_conns,
                "active_after": ctl.agi.active}
    finally:
        await ctl.close()


def test_hostile_fastagi_clients_do_not_disturb_a_call(pbx_cfg: Config) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 8192), max(hard, 8192)))
    store = Store.memory()
    add_contacts(store, [fiction("10", block="60")])
    m = asyncio.run(_scenario(pbx_cfg, store))
    call = store.one("SELECT * FROM calls")
    assert (call["outcome"], call["keys"]) == ("message_played", "1")
    assert m["peak"] >= 1000            # they were really all connected at once
    assert m["cpu_share"] < 0.25        # no spinning: mostly idle while they sit there
    assert m["rss_growth_mb"] < 60      # bounded: about 50 kB per connection at most
    assert m["active_after"] <= 25      # idle and half-open ones were closed by the deadline
