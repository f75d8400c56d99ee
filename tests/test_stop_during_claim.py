"""A stop or a pause that comes while a call is being claimed (on PostgreSQL a claim is a round
trip in a worker thread, during which the loop reads the console's control): that call never
rings, and its attempt is withdrawn, so the contact keeps its attempts and is dialled later as
if the claim had not happened. The real run loop, the fake PBX over real AMI and FastAGI, a
store of each backend (conftest.backend)."""
from __future__ import annotations

import asyncio
from typing import Any

from ivr.telephony.fake_pbx import answer

from conftest import Backend
from test_dialer import Rig, fiction, rig
from test_run_control import CAMPAIGN, fast_poll, say, start_run  # noqa: F401 (fixture)


def slow_second_claim(r: Rig, meanwhile: Any) -> list[int]:
    """The second claim is written, then takes 0.5 s more (a slow store); `meanwhile` runs
    right after it is written. Returns the call ids claimed."""
    place, claimed = r.dialer.place, []

    async def slow(contact: dict[str, Any]) -> Any:
        claim, send = await place(contact)
        if claim.call is not None:
            claimed.append(int(claim.call["id"]))
            if len(claimed) == 2:
                meanwhile()
                await asyncio.sleep(0.5)  # the control's watch (0.1 s) sees it meanwhile
        return claim, send
    r.dialer.place = slow  # type: ignore[method-assign]
    return claimed


def test_a_soft_stop_during_a_claim_sends_nothing_and_costs_no_attempt(
        backend: Backend) -> None:
    numbers = [fiction(i) for i in range(3)]
    stop = asyncio.Event()

    async def scenario() -> dict[str, Any]:
        async with rig(backend, {n: answer(["1"], prompt_s=0.1) for n in numbers},
                       max_concurrent=1) as r:
            claimed = slow_second_claim(r, stop.set)
            task, _ = await start_run(r, stop=stop)
            report = await asyncio.wait_for(task, 30)
            await r.settled()
            # Only an attempt never sent is withdrawn: one with its outcome stays.
            kept = not r.store.withdraw_attempt(claimed[0])
            return {"report": report, "sent": len(r.pbx.originates), "claimed": claimed,
                    "kept": kept, "calls": r.calls(),
                    "pending": r.store.contact_status_counts(CAMPAIGN).get("pending")}
    got = asyncio.run(scenario())
    assert got["report"].stopped_by == "operator" and got["report"].originated == 1
    assert got["sent"] == 1 and len(got["claimed"]) == 2  # claimed, never sent
    assert [(c["id"], c["outcome"]) for c in got["calls"]] == [
        (got["claimed"][0], "message_played")], got["calls"]  # the second's row withdrawn
    assert got["pending"] == 2  # still due: the one withdrawn and the one never claimed
    assert got["kept"]


def test_a_pause_during_a_claim_holds_that_call_and_resume_dials_it_as_its_first_attempt(
        backend: Backend) -> None:
    numbers = [fiction(i) for i in range(3)]

    async def scenario() -> dict[str, Any]:
        async with rig(backend, {n: answer(["1"], prompt_s=0.1) for n in numbers},
                       max_concurrent=1) as r:
            claimed = slow_second_claim(r, lambda: say(backend, desired="paused"))
            task, _ = await start_run(r)
            await r.until(lambda: len(claimed) == 2)
            await asyncio.sleep(1.5)  # paused: the claimed call waits, nothing is dialled
            held = {"sent": len(r.pbx.originates), "calls": r.calls(),
                    "in_flight": r.dialer.in_flight()}
            say(backend, by="bob", desired="running")
            report = await asyncio.wait_for(task, 30)
            return {"held": held, "report": report, "calls": r.calls(), "claimed": claimed}
    got = asyncio.run(scenario())
    held = got["held"]
    assert held["sent"] == 1 and held["in_flight"] == 0, held
    assert [c["id"] for c in held["calls"]] == [got["claimed"][0]], held["calls"]
    assert got["report"].originated == 3 and got["report"].stopped_by == "finished"
    calls = got["calls"]
    assert sorted(c["number"] for c in calls) == sorted(numbers), calls  # one row a number
    assert all((c["attempt"], c["outcome"]) == (1, "message_played") for c in calls), calls
