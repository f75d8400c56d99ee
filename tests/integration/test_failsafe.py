"""Issue 4.7: with the controller unreachable the dialplan failsafe ends the call cleanly, and the
attempt still gets an outcome: `error`, once the controller sees it."""
from __future__ import annotations

import asyncio
import time

from ivr import app
from ivr.config import Config
from ivr.store.sqlite import Store

from .conftest import add_contacts, fiction


async def _failsafe_seen_live(cfg: Config, store: Store) -> float:
    add_contacts(store, [fiction("10")])
    ctl = await app.start(cfg, store, agi=False)  # AMI up, FastAGI down
    try:
        t0 = time.monotonic()
        await ctl.dialer.dial(store.one("SELECT * FROM contacts"))
        while ctl.dialer.inflight and time.monotonic() - t0 < 30:
            await asyncio.sleep(0.1)
        return time.monotonic() - t0
    finally:
        await ctl.close()


def test_failsafe_hangs_up_and_records_error(pbx_cfg: Config) -> None:
    store = Store.memory()
    elapsed = asyncio.run(_failsafe_seen_live(pbx_cfg, store))
    call = store.one("SELECT * FROM calls")
    assert (call["outcome"], call["stage"]) == ("error", "failsafe")
    assert call["hangup_cause"] == "41"  # the failsafe's clean temporary-failure hangup
    assert elapsed < 10  # no dead air: the call ends at once, not at a timeout
    assert call["retry_at"] is not None  # nobody heard anything: a safe retry is planned


async def _controller_down_then_up(cfg: Config, store: Store) -> int:
    add_contacts(store, [fiction("20")])
    ctl = await app.start(cfg, store)
    await ctl.dialer.dial(store.one("SELECT * FROM contacts"))
    await ctl.close()          # the controller goes away with the call in flight
    await asyncio.sleep(6)     # the failsafe ends it; nobody is listening
    assert store.one("SELECT outcome FROM calls")["outcome"] is None
    ctl = await app.start(cfg, store)  # a new run sees the attempt and settles it
    await ctl.close()
    return len(store.open_calls())


def test_attempt_left_open_is_settled_when_the_controller_comes_back(pbx_cfg: Config) -> None:
    store = Store.memory()
    assert asyncio.run(_controller_down_then_up(pbx_cfg, store)) == 0
    call = store.one("SELECT * FROM calls")
    assert (call["outcome"], call["stage"]) == ("error", "reconciled")
