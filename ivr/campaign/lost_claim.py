"""A claim whose answer was lost: the store raised (a connection killed while its COMMIT was
on the way), yet its attempt may be written. Nothing was dialled; left there, the attempt held
the contact in flight for this whole run (a controller never reconciles its own live rows)
and then cost the person an attempt as `error`. Its withdrawal is queued on the SafeWriter, so
it lands once the store answers, before the next claim; a claim that wrote nothing finds
nothing to withdraw.
"""
from __future__ import annotations

from collections.abc import Callable, Container
from datetime import datetime
from typing import Any

from ivr.store.base import utc


def withdrawal(store: Any, campaign: str, number: str, node: str, at: datetime,
               tracked: Container[int]) -> Callable[[], None]:
    """The write that withdraws the attempt this controller's claim of `number` on `node` at
    `at` (what the claim sent: no other attempt of it has those) wrote, if any; `tracked`:
    the calls the dialer placed, never touched."""
    started, me = utc(at), getattr(store, "controller_id", None)

    def withdraw() -> None:
        for row in store.open_calls(node=node, campaign=campaign, controller=me):
            if (row["number"], row["started_at"], row.get("controller")) == (number, started, me) \
                    and int(row["id"]) not in tracked:
                store.withdraw_attempt(int(row["id"]))
    return withdraw
