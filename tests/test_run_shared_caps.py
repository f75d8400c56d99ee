"""Two controllers of one campaign on one store (hw4 finding 1): `dialer.max_concurrent` is
the campaign-wide cap and a node's `max_channels` caps the calls of every controller dialling
through it (campaign/nodes.py, Shares), on both backends. The second controller joins while the
first is full: neither the join nor the shares moving overshoots."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timezone
from typing import Any

from ivr import app
from ivr.campaign import run as campaign_run
from ivr.campaign.clock import Clock
from ivr.store import Store, utc
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import FakePbx, answer

from conftest import Backend
from test_dialer import HASHES, SECRET, add_contacts, fiction, make_cfg
from test_reconcile_controllers import register

CAMPAIGN = "utest"


def beat(stores: list[Store]) -> None:
    """The test's controllers heartbeat (as hold_run's thread would on PostgreSQL)."""
    now = utc(datetime.now(timezone.utc))
    for s in stores:
        s.db.execute("UPDATE controllers SET heartbeat_at = ? WHERE id = ?",
                     (now, s.controller_id))


@asynccontextmanager
async def controller(backend: Backend, name: str, pbxs: list[FakePbx], caps: list[int],
                     **dialer: Any) -> AsyncIterator[app.Controller]:
    """One more controller of the campaign: its own store connection, config (AGI port) and
    AMI links to the same nodes; registered in `controllers` as `name`."""
    store = backend.open()
    register(store, name, CAMPAIGN)
    store.controller_id = name
    cfg = make_cfg(backend, **dialer)
    nodes = [AmiNode(f"n{i + 1}", "127.0.0.1", p.ami_port, "ivr", SECRET, max_channels=cap)
             for i, (p, cap) in enumerate(zip(pbxs, caps))]
    ctl = await app.start(cfg, store, Clock(), node=nodes, hashes=HASHES)
    try:
        yield ctl
    finally:
        await ctl.close()


def test_two_controllers_share_the_campaign_cap_and_each_nodes_channels(
        backend: Backend) -> None:
    numbers = [fiction(i) for i in range(20)]
    caps = [3, 3]  # each node: 3 channels across both controllers
    most = {"total": 0, "n1": 0, "n2": 0}

    async def scenario() -> tuple[list[int], list[dict[str, Any]]]:
        callees = {n: answer(["1"], prompt_s=0.15) for n in numbers}
        async with AsyncExitStack() as stack:
            pbxs = [await stack.enter_async_context(FakePbx(callees, user="ivr",
                                                            secret=SECRET)) for _ in caps]
            seed = backend.open()
            add_contacts(seed, numbers)
            a = await stack.enter_async_context(controller(
                backend, "ctl-a", pbxs, caps, max_concurrent=4, calls_per_second=50))
            ctls = [a]

            def watch(d: Any) -> None:  # in flight only grows at a claim: look after each
                place = d.place

                async def placed(contact: dict[str, Any]) -> Any:
                    got = await place(contact)
                    dialers = [c.dialer for c in ctls]
                    most["total"] = max(most["total"], sum(x.in_flight() for x in dialers))
                    for n in ("n1", "n2"):
                        most[n] = max(most[n], sum(len(x.nodes[n].calls) for x in dialers))
                    return got
                d.place = placed
            watch(a.dialer)

            async def run(c: app.Controller) -> Any:
                return await campaign_run.run(c.cfg, c.store, c.dialer, c.clock,
                                              asyncio.Event(), asyncio.Event())

            async def beating() -> None:
                while True:
                    beat([c.store for c in ctls])
                    await asyncio.sleep(1.0)
            beats = asyncio.ensure_future(beating())
            try:
                first = asyncio.ensure_future(run(a))
                while a.dialer.in_flight() < 4:  # alone: the whole cap
                    await asyncio.sleep(0.01)
                b = await stack.enter_async_context(controller(
                    backend, "ctl-b", pbxs, caps, max_concurrent=4, calls_per_second=50))
                ctls.append(b)
                watch(b.dialer)
                await asyncio.wait_for(asyncio.gather(first, run(b)), 60)
            finally:
                beats.cancel()
            return [p.max_live for p in pbxs], seed.q("SELECT * FROM calls")
    max_live, calls = asyncio.run(scenario())
    assert {c["number"] for c in calls} == set(numbers)
    assert {c["outcome"] for c in calls} == {"message_played"}
    if backend.name == "postgresql":  # the claim re-reads the contact under its row lock
        assert len(calls) == 20, calls
    # (SQLite runs one controller per campaign, sqlite_runlock: its claim trusts the plan's
    # contact row, so a plan read before the other's outcome may dial a contact again.)
    assert {c["controller"] for c in calls} == {"ctl-a", "ctl-b"}  # both dialled
    assert most["total"] <= 4, most  # the campaign-wide cap, not 4 per controller
    assert most["n1"] <= 3 and most["n2"] <= 3, most  # each node's max_channels, all in all
    assert max(max_live) <= 3, max_live
