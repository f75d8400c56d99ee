"""Issue 7.2: 1,000 simultaneous simulated calls end with 1,000 outcome rows, none lost or
duplicated."""
from __future__ import annotations

import asyncio
import dataclasses
import resource
import time
from collections import Counter

from ivr import app
from ivr.config import Config
from ivr.store.sqlite import Store

from .conftest import add_contacts, fiction

N = 1000


def test_thousand_simultaneous_calls(pbx_cfg: Config) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 16384), max(hard, 16384)))
    cfg = dataclasses.replace(pbx_cfg, dialer=dataclasses.replace(
        pbx_cfg.dialer, max_concurrent=N, calls_per_second=1000, amd=False),
        retry=dataclasses.replace(pbx_cfg.retry, max_attempts=1))
    store = Store.memory()
    # Fiction numbers ending in a digit pair with no special behaviour: the callee presses 1
    # during the introduction and hears the message and the legal mentions to the end.
    suffixes = ["12", "13", "14", "15", "16", "17", "18", "19", "21", "22"]
    add_contacts(store, [fiction(s, block=f"{b:02d}") for s in suffixes for b in range(100)])
    assert store.one("SELECT COUNT(*) AS n FROM contacts")["n"] == N
    peak: list[int] = []
    t0 = time.monotonic()
    report, _ = asyncio.run(app.run_campaign(
        cfg, store, on_tick=lambda ctl: peak.append(len(ctl.dialer.inflight))))
    elapsed = time.monotonic() - t0
    calls = store.q("SELECT id, number, outcome, channel_id FROM calls")
    assert report.originated == N and len(calls) == N
    assert len({c["number"] for c in calls}) == N and len({c["channel_id"] for c in calls}) == N
    assert Counter(c["outcome"] for c in calls) == {"message_played": N}
    assert max(peak) >= 0.9 * N  # they were in flight together
    print(f"{N} calls in {elapsed:.1f} s, peak in flight {max(peak)}")
