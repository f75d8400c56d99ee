"""Two holes of the shared caps (campaign/nodes.py, Shares), on both backends:
- `dialer.calls_per_second` is the campaign's rate, set for the carrier: two live controllers
  of one campaign place about that rate together, not twice it;
- a node's `max_channels` caps the calls of every controller dialling through it, whatever
  its campaign: two campaigns on one node never have more than its cap in flight together."""
from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from ivr import app
from ivr.campaign import run as campaign_run
from ivr.campaign.clock import Clock
from ivr.campaign.clock import ManualClock
from ivr.campaign.nodes import JOIN_S, Peers, Shares
from ivr.store import Store
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import FakePbx, answer

from conftest import Backend, add_contact, attempt
from test_dialer import HASHES, SECRET, add_contacts, fiction, make_cfg
from test_reconcile_controllers import NOW, register
from test_run_shared_caps import beat


@asynccontextmanager
async def controller(backend: Backend, name: str, campaign: str, pbx: FakePbx, cap: int,
                     **dialer: Any) -> AsyncIterator[app.Controller]:
    """A controller of `campaign` on its own store connection, registered as `name`, dialling
    through the one node n1 (`cap` channels)."""
    store = backend.open()
    register(store, name, campaign)
    store.controller_id = name
    cfg = make_cfg(backend, **dialer)
    cfg = dataclasses.replace(cfg, campaign=dataclasses.replace(cfg.campaign, name=campaign))
    node = AmiNode("n1", "127.0.0.1", pbx.ami_port, "ivr", SECRET, max_channels=cap)
    ctl = await app.start(cfg, store, Clock(), node=[node], hashes=HASHES)
    try:
        yield ctl
    finally:
        await ctl.close()


async def beating(ctls: list[app.Controller]) -> None:
    """The test's controllers heartbeat (as hold_run's thread would on PostgreSQL)."""
    while True:
        beat([c.store for c in ctls])
        await asyncio.sleep(1.0)


def watch_places(ctls: list[app.Controller], on_place: Any) -> None:
    """Call `on_place(controller, placed)` after each claim of each controller."""
    for c in ctls:
        place = c.dialer.place

        async def placed(contact: dict[str, Any], place: Any = place, c: Any = c) -> Any:
            got = await place(contact)
            claim, send = got
            on_place(c, send is not None and claim.call is not None)
            return got
        c.dialer.place = placed  # type: ignore[method-assign]


def run_of(c: app.Controller, stop: asyncio.Event) -> Any:
    return asyncio.ensure_future(campaign_run.run(c.cfg, c.store, c.dialer, c.clock, stop,
                                                  asyncio.Event()))


def test_two_controllers_place_the_campaigns_calls_per_second_together(
        backend: Backend) -> None:
    numbers = [fiction(i) for i in range(80)]
    rate, window = 4.0, 4.0
    stamps: list[tuple[float, str]] = []

    async def scenario() -> None:
        callees = {n: answer(["1"], prompt_s=0.1) for n in numbers}
        async with AsyncExitStack() as stack:
            pbx = await stack.enter_async_context(FakePbx(callees, user="ivr", secret=SECRET))
            add_contacts(backend.open(), numbers)
            ctls = [await stack.enter_async_context(controller(
                backend, name, "utest", pbx, 0, max_concurrent=20, calls_per_second=rate))
                for name in ("ctl-a", "ctl-b")]
            watch_places(ctls, lambda c, ok: ok and stamps.append(
                (time.monotonic(), c.store.controller_id)))
            beats = asyncio.ensure_future(beating(ctls))
            stop = asyncio.Event()
            try:
                runs = [run_of(c, stop) for c in ctls]
                deadline = time.monotonic() + JOIN_S + 20
                while (not stamps or time.monotonic() < stamps[0][0] + window + 0.5) \
                        and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                stop.set()
                await asyncio.wait_for(asyncio.gather(*runs), 30)
            finally:
                beats.cancel()
    asyncio.run(scenario())
    assert stamps, "nobody was dialled"
    t0 = stamps[0][0]
    during = [who for t, who in stamps if t < t0 + window]
    # The rate together: ~rate * window (+1 for the first); one rate per controller: twice.
    assert len(during) <= rate * window * 1.3 + 1, (len(during), stamps)
    assert len(during) >= rate * window * 0.6, (len(during), stamps)
    assert set(during) == {"ctl-a", "ctl-b"}  # both dialled, each at its half of the rate


def test_two_campaigns_on_one_node_never_exceed_its_max_channels(backend: Backend) -> None:
    ours, theirs = [fiction(i) for i in range(12)], [fiction(i) for i in range(40, 52)]
    most = {"n1": 0}
    live: list[app.Controller] = []

    def look(c: app.Controller, ok: bool) -> None:  # in flight only grows at a claim
        most["n1"] = max(most["n1"], sum(len(x.dialer.nodes["n1"].calls) for x in live))

    async def scenario() -> tuple[int, list[dict[str, Any]]]:
        callees = {n: answer(["1"], prompt_s=0.4) for n in ours + theirs}
        async with AsyncExitStack() as stack:
            pbx = await stack.enter_async_context(FakePbx(callees, user="ivr", secret=SECRET))
            seed = backend.open()
            add_contacts(seed, ours)
            add_contacts(seed, theirs, campaign="other")
            a = await stack.enter_async_context(controller(
                backend, "ctl-a", "utest", pbx, 3, max_concurrent=4, calls_per_second=50))
            live.append(a)
            watch_places([a], look)
            beats = asyncio.ensure_future(beating(live))
            try:
                first = run_of(a, asyncio.Event())
                while a.dialer.in_flight() < 3:  # alone on the node: its whole cap
                    await asyncio.sleep(0.01)
                b = await stack.enter_async_context(controller(
                    backend, "ctl-b", "other", pbx, 3, max_concurrent=4, calls_per_second=50))
                live.append(b)
                watch_places([b], look)
                await asyncio.wait_for(asyncio.gather(first, run_of(b, asyncio.Event())), 90)
            finally:
                beats.cancel()
            return pbx.max_live, seed.q("SELECT * FROM calls")
    max_live, calls = asyncio.run(scenario())
    assert {c["number"] for c in calls} == set(ours + theirs)
    assert {c["campaign"] for c in calls if c["number"] in theirs} == {"other"}
    assert most["n1"] <= 3, most  # the node's max_channels, both campaigns together
    assert max_live <= 3, max_live


def test_other_campaigns_controllers_count_on_the_nodes_they_may_dial(store: Store) -> None:
    """store.peer_load: another campaign's live controller counts on a node it has calls on or
    its published snapshot lists (it may dial it as soon as it starts), nowhere else."""
    register(store, "ctl-a", "c1")
    register(store, "ctl-y", "other")
    register(store, "ctl-z", "other")
    register(store, "ctl-x", "other", stopped=True)  # stopped: counts nowhere
    for ctl in ("ctl-z", "ctl-x"):
        store.publish_snapshot("other", ctl, {"nodes": [{"name": "n1"}, {"name": "n2"}]},
                               NOW)
    store.controller_id = "ctl-y"
    attempt(store, add_contact(store, "+33162000009", at=NOW), "other", "+33162000000", NOW,
            node="n1")
    store.controller_id = "ctl-a"
    peers = Peers.from_rows(store.peer_load("c1"), "ctl-a", "c1")
    assert peers.ids == ("ctl-a",) and peers.busy == 0  # alone in its campaign
    assert peers.elsewhere_on == {"n1": 1}
    assert peers.users_on == {"n1": {"ctl-y", "ctl-z"}, "n2": {"ctl-z"}}
    assert peers.node_limit("ctl-a", "n1", 3) == 1  # 3 // 3, within 3 less ctl-y's call
    assert peers.node_limit("ctl-a", "n2", 3) == 2  # 3 // 2, the odd one to rank 0
    assert peers.node_limit("ctl-a", "n3", 3) is None  # nobody else on it: the whole cap
    shares = Shares(store, "c1", (), ManualClock())
    shares.apply(peers)
    assert shares.max_concurrent(4) == 0  # started beside them: it waits until they saw it
