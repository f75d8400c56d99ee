"""A stop or a pause that comes while a call is being claimed (on PostgreSQL a claim is a round
trip in a worker thread, during which the loop reads the console's control): that call never
rings, and its attempt is withdrawn, so the contact keeps its attempts and is dialled later as
if the claim had not happened. The real run loop, the fake PBX over real AMI and FastAGI, a
store of each backend (conftest.backend); and a withdrawn id given again on SQLite."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from ivr import app
from ivr.campaign import run_control
from ivr.campaign.clock import ManualClock
from ivr.campaign.state import RunState, Snapshot
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import FakePbx, answer

from conftest import Backend, attempt, store_with
from test_dialer import HASHES, SECRET, Rig, add_contacts, contact, fiction, make_cfg, rig
from test_run_control import CAMPAIGN, say, start_run

T = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)
CALLER = "+33162000000"


@pytest.fixture(autouse=True)
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's word read every 0.1 s (0.5 s in the product), as in test_run_control."""
    monkeypatch.setattr(run_control, "POLL_S", 0.1)


def slow_second_claim(r: Rig, meanwhile: Callable[[], None],
                      seen: Callable[[], bool] = lambda: True) -> list[int]:
    """The second claim is written, then takes longer (a slow store): `meanwhile` runs right
    after it is written, and the claim returns once the run has `seen` it (the control's
    watch read the console's word: not timed, a loaded machine only makes it later).
    Returns the call ids claimed."""
    place, claimed = r.dialer.place, []

    async def slow(contact: dict[str, Any]) -> Any:
        claim, send = await place(contact)
        if claim.call is not None:
            claimed.append(int(claim.call["id"]))
            if len(claimed) == 2:
                meanwhile()
                deadline = asyncio.get_running_loop().time() + 30
                while not seen():
                    assert asyncio.get_running_loop().time() < deadline, "never seen"
                    await asyncio.sleep(0.01)
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
            run: dict[str, list[Snapshot]] = {"snaps": []}  # the run's, once started
            claimed = slow_second_claim(r, lambda: say(backend, desired="paused"), lambda: any(
                s.console == run_control.PAUSED for s in run["snaps"]))
            task, run["snaps"] = await start_run(r)
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


def test_another_campaigns_withdrawn_attempt_hides_no_call_from_this_runs_counts() -> None:
    """SQLite gives a withdrawn attempt's id, if it was the highest, to the next claim: a run
    of another campaign that started meanwhile counts from its own campaign's last id, so the
    call that reuses the id is still its own (found in review: it counted from the highest id
    of any campaign, and missed that call)."""
    numbers = ("+33639980001", "+33639980002", "+33639980003")
    s = store_with(*numbers, at=T)
    first = attempt(s, contact(s, numbers[0]), "c1", CALLER, T)
    s.finish_unanswered(first["id"], "busy", "17", T, None)
    claimed = attempt(s, contact(s, numbers[1]), "c1", CALLER, T)  # c1's claim, the highest id
    run_b = RunState("c2", s, ManualClock(), max_concurrent=1)  # c2's run starts now
    assert s.withdraw_attempt(claimed["id"])  # c1 paused before sending it
    own = attempt(s, contact(s, numbers[2]), "c2", CALLER, T)
    assert own["id"] == claimed["id"]  # the id given again
    s.finish_unanswered(own["id"], "busy", "17", T, None)
    assert s.outcome_counts("c2", since_id=run_b.since_id) == {"busy": 1}


async def started(snaps: list[Snapshot]) -> None:
    while not snaps:
        await asyncio.sleep(0.01)


def test_a_run_counts_its_call_that_took_another_campaigns_withdrawn_id(tmp_path: Path) -> None:
    """The whole `app.run_campaign` (SQLite): it starts, in standby, while another campaign's
    claimed attempt holds the highest call id; that attempt is withdrawn; the console's Start
    then lets this run claim, and its first call gets the freed id. The run's final counts
    still hold every one of its calls (it counts from its own campaign's last id)."""
    numbers = [fiction(40 + i) for i in range(2)]
    cfg = make_cfg(tmp_path)
    store = app.open_store(cfg)
    add_contacts(store, numbers)
    add_contacts(store, [fiction(49)], campaign="c-other")
    other = attempt(store, contact(store, fiction(49)), "c-other", CALLER, T)
    snaps: list[Snapshot] = []

    async def scenario() -> Any:
        async with FakePbx({n: answer(["1"]) for n in numbers}, user="ivr",
                           secret=SECRET) as pbx:
            node = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", SECRET)
            run = asyncio.ensure_future(app.run_campaign(
                cfg, store, node=node, hashes=HASHES, on_snapshot=snaps.append, standby=True))
            await asyncio.wait_for(started(snaps), 30)  # its counts' first id is read
            console = app.open_store(cfg)
            assert console.withdraw_attempt(int(other["id"]))  # the other campaign paused
            console.set_run_control("utest", by="alice", now=datetime.now(timezone.utc),
                                    desired="running")
            report, _ = await asyncio.wait_for(run, 60)
            return report
    report = asyncio.run(scenario())
    calls = store.q("SELECT id, outcome FROM calls WHERE campaign = 'utest' ORDER BY id")
    assert calls[0]["id"] == other["id"], calls  # the freed id was given to this run
    assert report.originated == 2 and snaps[-1].finished
    assert dict(snaps[-1].counts) == {"message_played": 2}, snaps[-1]
