"""Found in review: while the store was away (a PostgreSQL outage overnight), the pool's watch
said "orphaned attempts not settled" every 5 s, 720 lines an hour, where the run itself says
its store is away once per outage. Now once per outage, and again after it recovered."""
from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

from ivr.campaign import pool_watch


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.t += s
        await asyncio.sleep(0)


def test_a_store_outage_is_said_once_then_again_after_a_recovery(caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="ivr.campaign.pool_watch")
    away = [True]

    def orphaned(campaign: str, now: Any) -> list[Any]:
        if away[0]:
            raise OSError("connection refused")
        return []
    store = SimpleNamespace(controller_id="ctl-1", orphaned_calls=orphaned)
    clock = Clock()

    async def off_loop(fn: Any, *args: Any) -> Any:
        return fn(*args)
    dialer = SimpleNamespace(clock=clock, nodes={}, store=store, off_loop=off_loop,
                             writer=SimpleNamespace(flush=lambda: None),
                             cfg=SimpleNamespace(campaign=SimpleNamespace(name="c1")))
    dialer.clock.now = lambda: None

    async def main() -> None:
        task = asyncio.ensure_future(pool_watch.watch(dialer))  # type: ignore[arg-type]
        while clock.t < 60:  # 12 rounds of ORPHANS_S with the store away
            await asyncio.sleep(0)
        away[0] = False
        while clock.t < 70:
            await asyncio.sleep(0)
        away[0] = True
        while clock.t < 90:
            await asyncio.sleep(0)
        task.cancel()
    asyncio.run(main())
    said = [r for r in caplog.records if "orphaned attempts not settled" in r.getMessage()]
    assert [r.levelno for r in said].count(logging.WARNING) == 2
    assert len(said) >= 15  # the others at DEBUG
