"""A run that starts while the console has paused its campaign (ivr/campaign/run_control.py,
RunControl.begin) joins the pause: beside another live controller (before: it wrote `running`
and every paused controller dialled again), and alone too (before: a paused controller that
crashed and was restarted by its service manager dialled the calls the console had paused).
`ivr run --resume` is the operator's explicit start over it; any start over a stop writes
`running`. Both backends."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from ivr.campaign import run_control
from ivr.campaign.clock import Clock
from ivr.campaign.run_control import RunControl
from ivr.campaign.state import RunState
from ivr.telephony.fake_pbx import answer

from conftest import Backend
from test_dialer import fiction, make_cfg, rig
from test_reconcile_controllers import register
from test_run_control import CAMPAIGN, say, start_run


@pytest.fixture(autouse=True)
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_control, "POLL_S", 0.1)


def begin(backend: Backend, me: str = "ctl-b", resume: bool = False
          ) -> tuple[RunControl, Any]:
    """A CLI start (not standby) of controller `me`, registered as hold_run does; the row."""
    store = backend.open()
    register(store, me, CAMPAIGN)
    store.controller_id = me
    clock = Clock()
    control = RunControl(make_cfg(backend), store, clock, asyncio.Event(), asyncio.Event(),
                         RunState(CAMPAIGN, store, clock, max_concurrent=2))
    asyncio.run(control.begin(False, resume))
    return control, backend.open().run_control(CAMPAIGN)


def test_a_run_joining_a_paused_live_controller_stays_paused(
        backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    seed = backend.open()
    register(seed, "ctl-a", CAMPAIGN)  # the controller the console paused, still live
    say(backend, desired="paused")
    with caplog.at_level(logging.WARNING, logger="ivr.campaign.run_control"):
        control, row = begin(backend)
    assert control.paused and not control.stop.is_set()
    assert (row["desired"], row["updated_by"]) == ("paused", "alice")
    assert any(f"campaign {CAMPAIGN} is paused in the console (by alice)" in r.getMessage()
               and "resume it there" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("other", ["none", "stopped", "other_campaign"])
def test_a_run_alone_over_a_pause_joins_it_unless_resumed(backend: Backend, other: str) -> None:
    _alone_over_a_pause(backend, other)


# SQLite keeps no lease (one run per campaign, its run lock): an expired one is PostgreSQL's
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_run_beside_an_expired_lease_joins_it_unless_resumed(backend: Backend) -> None:
    _alone_over_a_pause(backend, "expired")


def _alone_over_a_pause(backend: Backend, other: str) -> None:
    seed = backend.open()
    if other != "none":
        register(seed, "ctl-a", "other-campaign" if other == "other_campaign" else CAMPAIGN,
                 stopped=other == "stopped", beat_age_s=60 if other == "expired" else 0)
    say(backend, desired="paused")
    control, row = begin(backend)  # a restart by the service manager, or a plain start
    assert control.paused
    assert (row["desired"], row["updated_by"]) == ("paused", "alice")
    control, row = begin(backend, "ctl-c", resume=True)  # `ivr run --resume`
    assert not control.paused
    assert (row["desired"], row["updated_by"]) == ("running", "cli")


@pytest.mark.parametrize("desired", ["stopped", "hard_stop", "running"])
def test_a_stop_is_replaced_by_running_even_beside_live_controllers(
        backend: Backend, desired: str) -> None:
    register(backend.open(), "ctl-a", CAMPAIGN)
    say(backend, desired=desired)
    control, row = begin(backend)
    assert not control.paused and not control.stop.is_set()
    assert (row["desired"], row["updated_by"]) == ("running", "cli")


def test_the_joining_run_dials_nothing_until_the_console_resumes(backend: Backend) -> None:
    """The whole run: a controller of the campaign live and paused; this one dials nothing
    until the console's Resume."""
    numbers = [fiction(i) for i in range(3)]

    async def scenario() -> tuple[int, str, int]:
        async with rig(backend, {n: answer(["1"], prompt_s=0.05) for n in numbers}) as r:
            register(r.store, "ctl-a", CAMPAIGN)
            say(backend, desired="paused")
            task, _ = await start_run(r)
            await asyncio.sleep(1.0)
            held = len(r.pbx.originates)
            paused = backend.open().run_control(CAMPAIGN)["desired"]
            say(backend, by="bob", desired="running")
            await asyncio.wait_for(task, 30)
            return held, paused, len(r.pbx.originates)
    held, paused, dialled = asyncio.run(scenario())
    assert (held, paused) == (0, "paused")
    assert dialled == 3  # the run went on, and ended, on the console's Resume
