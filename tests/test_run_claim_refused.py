"""A claim refused because another controller took the contact first dials nobody, so it
spends no pacing slot (hw4 finding 4): under a slow pacing, the controller that walks the plan
one contact behind another moves on to the next due contact at once instead of sitting idle
for a whole interval per refusal (it lost every claim and placed nothing)."""
from __future__ import annotations

import asyncio
from typing import Any

from ivr.campaign import run as campaign_run
from ivr.campaign.clock import ManualClock
from ivr.telephony.fake_pbx import failed

from conftest import Backend, attempt
from test_dialer import fiction, rig
from test_run_loop import drive, stamp_originates


def test_a_refused_claim_gives_its_pacing_slot_to_the_next_contact(backend: Backend) -> None:
    numbers = [fiction(30), fiction(31), fiction(32)]

    async def scenario() -> tuple[float, list[float], list[str], list[dict[str, Any]]]:
        async with rig(backend, {n: failed(1) for n in numbers}, clock=ManualClock(),
                       calls_per_second=0.2) as r:  # one call every 5 s
            stamps = stamp_originates(r)
            claimed: list[str] = []
            place = r.dialer.place

            async def raced(contact: dict[str, Any]) -> Any:
                if not claimed:  # another controller claims this contact just before us
                    r.store.controller_id = "other-controller"
                    attempt(r.store, contact, "utest", r.cfg.campaign.caller_id,
                            r.clock.now(), node="pbx")
                    r.store.controller_id = None
                claimed.append(contact["number"])
                return await place(contact)
            r.dialer.place = raced  # type: ignore[method-assign]
            stop = asyncio.Event()
            t0 = r.clock.monotonic()
            task = asyncio.ensure_future(campaign_run.run(
                r.cfg, r.store, r.dialer, r.clock, stop, asyncio.Event()))

            async def stop_after_first() -> None:
                while not stamps and not task.done():
                    await asyncio.sleep(0.005)
                stop.set()
            stopper = asyncio.ensure_future(stop_after_first())
            await drive(r.clock, task)
            await asyncio.wait_for(task, 60)
            await stopper
            return t0, stamps, claimed, r.calls()
    t0, stamps, claimed, calls = asyncio.run(scenario())
    assert claimed[:2] == numbers[:2], claimed  # the first refused, the next claimed
    mine = [c for c in calls if c["controller"] != "other-controller"]
    assert [c["number"] for c in mine] == [numbers[1]], calls
    # The refused claim dialled nobody: the next contact left at once, not 5 s later.
    assert stamps and stamps[0] - t0 < 1.0, (t0, stamps)
