"""A standby run (`ivr run --standby`) leaves standby only on a desired state written after it
began: saving the pacing alone on the console's run page is neither a Start nor a Stop, whatever
the row the last run left (none, `running`, `stopped`). Before: any write that moved the row's
updated_at applied its old desired state (a pacing save started the run, or ended it), and a
pacing save with no row yet created one saying `running`. Both backends."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ivr.campaign.clock import Clock
from ivr.campaign.run_control import RunControl
from ivr.campaign.state import RunState
from ivr.store import Store
from ivr.web import service

from conftest import Backend
from test_dialer import fiction, make_cfg, rig
from test_run_control import CAMPAIGN, console, fast_poll, say, start_run  # noqa: F401

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
LAST_RUN = ["none", "running", "stopped"]  # the row the last run left


def controller(backend: Backend, name: str = "A") -> RunControl:
    """A controller's run control alone (no dialler), polling fast."""
    cfg, store, clock = make_cfg(backend), backend.open(), Clock()
    state = RunState(CAMPAIGN, store, clock, max_concurrent=cfg.dialer.max_concurrent,
                     nodes=lambda: ())
    return RunControl(cfg, store, clock, asyncio.Event(), asyncio.Event(), state,
                      controller=name, poll_s=0.02)


async def settle() -> None:
    await asyncio.sleep(0.3)  # many polls


def test_a_pacing_only_write_keeps_the_desired_states_word(store: Store) -> None:
    """updated_at/updated_by are the desired state's last write; a row a pacing creates does
    not say `running` (the pacing is kept, and read by value)."""
    row = store.set_run_control("c1", max_concurrent=5, by="alice", now=T0)
    assert (row["desired"], row["max_concurrent"]) == ("paused", 5)
    store.set_run_control("c1", desired="stopped", by="bob", now=T0 + timedelta(seconds=1))
    row = store.set_run_control("c1", calls_per_second=2.5, by="carol",
                                now=T0 + timedelta(seconds=2))
    assert (row["desired"], row["max_concurrent"], row["calls_per_second"]) == (
        "stopped", 5, 2.5)
    assert (row["updated_at"], row["updated_by"]) == ("2026-03-02T10:00:01.000Z", "bob")
    row = store.set_run_control("c1", desired="running", calls_per_second=1.0, by="dan",
                                now=T0 + timedelta(seconds=3))
    assert (row["desired"], row["calls_per_second"]) == ("running", 1.0)
    assert (row["updated_at"], row["updated_by"]) == ("2026-03-02T10:00:03.000Z", "dan")
    assert [a["actor"] for a in store.audit_log()] == ["dan", "carol", "bob", "alice"]


@pytest.mark.parametrize("last_run", LAST_RUN)
def test_saving_the_pacing_neither_starts_nor_stops_a_standby_run(backend: Backend,
                                                                    last_run: str) -> None:
    if last_run != "none":
        say(backend, desired=last_run)

    async def scenario() -> dict[str, Any]:
        a = controller(backend)
        waiting = asyncio.ensure_future(a.begin(True))
        await settle()
        say(backend, by="otto", max_concurrent=1)
        await settle()
        out = {"waiting": not waiting.done(), "stopped": a.stop.is_set(),
               "pacing": a.max_concurrent}
        say(backend, by="carol", desired="running")  # the Start
        await asyncio.wait_for(waiting, 10)
        out["started"] = (a.desired, a.max_concurrent, a.stop.is_set())
        return out
    got = asyncio.run(scenario())
    assert got == {"waiting": True, "stopped": False, "pacing": 1,
                   "started": ("running", 1, False)}


def test_a_pause_then_a_pacing_keep_standby_and_resume_starts_every_controller(
        backend: Backend) -> None:
    """Two standby controllers: a console pause and a pacing keep both waiting; Resume starts
    both; a pause after it is seen by both (read by value every tick, as before)."""
    say(backend, desired="running")  # the last run's row

    async def scenario() -> list[Any]:
        a, b = controller(backend, "A"), controller(backend, "B")
        waiting = [asyncio.ensure_future(c.begin(True)) for c in (a, b)]
        await settle()
        say(backend, by="otto", desired="paused")
        await settle()
        say(backend, by="otto", calls_per_second=0.5)
        await settle()
        held = [(w.done(), c.desired, c.calls_per_second) for w, c in zip(waiting, (a, b))]
        say(backend, by="otto", desired="running")  # Resume
        await asyncio.wait_for(asyncio.gather(*waiting), 10)
        say(backend, by="otto", desired="paused")
        for c in (a, b):
            await c.read()
        return [held, [c.paused for c in (a, b)]]
    held, paused = asyncio.run(scenario())
    assert held == [(False, "paused", 0.5)] * 2 and paused == [True, True]


def test_the_store_away_at_the_standbys_start_does_not_make_an_old_row_a_start(
        backend: Backend) -> None:
    """The first row read is the baseline, even when the store answers only later: an old
    `running` left by the last run is not a Start given to this one."""
    say(backend, desired="running")

    async def scenario() -> tuple[bool, int]:
        a = controller(backend)
        real, tries = a.store.run_control, []

        def away(campaign: str) -> Any:
            tries.append(1)
            if len(tries) <= 3:
                raise OSError("store away")
            return real(campaign)
        a.store.run_control = away  # type: ignore[method-assign]
        waiting = asyncio.ensure_future(a.begin(True))
        await settle()
        held = not waiting.done()
        say(backend, by="carol", desired="running")
        await asyncio.wait_for(waiting, 10)
        return held, len(tries)
    held, tries = asyncio.run(scenario())
    assert held and tries > 4


@pytest.mark.parametrize("last_run", LAST_RUN)
def test_the_run_pages_pacing_dials_nobody_before_start(backend: Backend,
                                                        last_run: str) -> None:
    """The whole run: the console's pacing save (service.pacing, what POST /run/pacing calls)
    during standby dials nobody and ends nothing; the Start then dials every contact."""
    from ivr.telephony.fake_pbx import answer
    numbers = [fiction(i) for i in range(3)]
    if last_run != "none":
        say(backend, desired=last_run)

    async def scenario() -> tuple[int, bool, Any]:
        async with rig(backend, {n: answer(["1"], prompt_s=0.1) for n in numbers}) as r:
            task, _ = await start_run(r, standby=True)
            await asyncio.sleep(0.5)
            service.pacing(r.cfg, console(backend), CAMPAIGN, 1, None, "otto",
                           datetime.now(timezone.utc))
            await asyncio.sleep(1.0)
            held, ended = len(r.pbx.originates), task.done()
            if not ended:
                say(backend, by="carol", desired="running")
            return held, ended, await asyncio.wait_for(task, 30)
    held, ended, report = asyncio.run(scenario())
    assert (held, ended) == (0, False)
    assert report.originated == 3 and report.stopped_by == "finished"
