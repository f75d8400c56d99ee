"""The dialer on the node seam, end to end without root: the fake PBX speaks real AMI to the
real AmiNode and drives the real FastAGI server of the composition root; a real store of each
backend (conftest.backend: a SQLite file, or a PostgreSQL database from `store.url`).

Also the test rig that tests/test_run_loop.py uses (`rig`).
"""
from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import ports
from ivr import app, config
from ivr.campaign import planning, reconcile, settle
from ivr.campaign.clock import Clock, ManualClock
from ivr.campaign.dialer import FAULT_HOLD_S
from ivr.store import workers
from ivr.store.sqlite import Store, parse_utc, utc
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.contract import prompt_sound
from ivr.telephony.fake_pbx import (Callee, FakePbx, answer, busy, congestion, failed,
                                    no_answer)
from ivr.telephony.node import OriginateRefused

from conftest import Backend

SECRET = "s3cret"
HASHES = {k: f"sha-{k}" for k in ("intro", "message", "legal", "goodbye", "invalid",
                                   "no_input", "optout_confirm", "slot_question")}
DELAYS = {"busy": 100.0, "no_answer": 200.0, "congestion": 300.0}


def fiction(suffix: int) -> str:
    return f"+331990000{suffix:02d}"


def free_port() -> int:
    return ports.free_port()  # below the ephemeral range (tests/ports.py)


def make_cfg(where: Path | Backend, delays: Mapping[str, float] = DELAYS, **dialer: Any
             ) -> config.Config:
    """The test's config; `where`: a folder (a SQLite store there) or a Backend."""
    backend = where if isinstance(where, Backend) else Backend("sqlite", where)
    tmp_path = backend.home
    return config.from_dict({
        "campaign": {"name": "utest", "caller_id": "+33199000000", "caller_name": "Utest"},
        "store": backend.section(),
        "agi": {"port": free_port()},
        "flow": {"input_timeout_s": 1, "max_repeats": 0, "ask_slot": False},
        "dialer": {"max_concurrent": 10, "calls_per_second": 100, "ring_timeout_s": 0.3,
                   "dial_string": "Local/{number}@ivr-sim", "amd": False} | dialer,
        "retry": {"max_attempts": 2, "delay_s": dict(delays)},
        "schedule": {"demo_any_hour": True}}, tmp_path)


def add_contacts(store: Store, numbers: list[str], campaign: str = "utest") -> None:
    now = ManualClock().now()
    ts = utc(now)
    for n in numbers:
        store.db.execute("INSERT INTO contacts (number, source, basis, created_at, updated_at) "
                         "VALUES (?, 'list', 'consent', ?, ?)", (n, ts, ts))
    store.bind_contacts(numbers, campaign=campaign, source="list", basis="consent",
                        acquired_on=None, now=now)


def contact(store: Store, number: str) -> dict[str, Any]:
    row = store.one("SELECT * FROM contacts WHERE number = ?", (number,))
    assert row is not None
    return row


@dataclass
class Rig:
    pbx: FakePbx
    ctl: app.Controller
    store: Store
    cfg: config.Config
    clock: Clock

    @property
    def dialer(self) -> Any:
        return self.ctl.dialer

    def calls(self) -> list[dict[str, Any]]:
        """Every attempt's row. On PostgreSQL the dialer's writes land from a worker thread
        (SafeWriter.remote): `until` and `settled` wait for them."""
        self.dialer.writer.flush()
        return self.store.q("SELECT * FROM calls ORDER BY id")

    async def settled(self) -> None:
        """Every write the dialer made so far is in the store (a no-op on SQLite)."""
        await self.dialer.writer.settled()

    async def until(self, cond: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait (real time) for cond, then for the writes made so far to land; a ManualClock
        is moved along meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not cond():
            assert loop.time() < deadline, "timed out"
            if isinstance(self.clock, ManualClock):
                await store_settled()
                self.clock.advance(0.05)
            await asyncio.sleep(0.01)
        await self.settled()


async def store_settled(limit_s: float = 2.0) -> None:
    """Until no store call is under way in a thread (PostgreSQL): a manual clock holds still
    meanwhile. A round trip of tens of real ms on a loaded machine was up to a second of a
    fast-driven run clock, and a pacing change looked late (CI). A call held past `limit_s`
    (a test's hung store) lets the clock go on, and is not waited for again."""
    until = time.monotonic() + limit_s
    while pending := [f for f in workers.under_way() if f not in _GIVEN_UP]:
        if time.monotonic() >= until:
            _GIVEN_UP.update(pending)
            return
        await asyncio.sleep(0.001)


_GIVEN_UP: weakref.WeakSet[Any] = weakref.WeakSet()  # calls store_settled stopped waiting for


@asynccontextmanager
async def rig(where: Path | Backend, callees: Mapping[str, Callee] | Callable[[str], Callee],
              *, clock: Clock | None = None, numbers: list[str] | None = None,
              setup: Callable[[Store], None] = lambda s: None,
              delays: Mapping[str, float] = DELAYS, **dialer: Any) -> AsyncIterator[Rig]:
    """`where`: the test's folder (SQLite) or its Backend (either store)."""
    backend = where if isinstance(where, Backend) else Backend("sqlite", where)
    cfg = make_cfg(backend, delays, **dialer)
    store = backend.open()
    add_contacts(store, numbers if numbers is not None else list(callees))  # type: ignore
    setup(store)
    clock = clock or Clock()
    async with FakePbx(callees, user="ivr", secret=SECRET) as pbx:
        node = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", SECRET)
        ctl = await app.start(cfg, store, clock, node=node, hashes=HASHES)
        try:
            yield Rig(pbx, ctl, store, cfg, clock)
        finally:
            await ctl.close()


async def dial_all(r: Rig, numbers: list[str]) -> None:
    for n in numbers:
        try:
            await r.dialer.dial(contact(r.store, n))
        except OriginateRefused:
            pass


def test_retry_delay_per_cause_comes_from_the_outcome_table(backend: Backend) -> None:
    callees = {fiction(70): busy(), fiction(71): no_answer(), fiction(72): congestion(),
               fiction(73): failed(1), fiction(10): answer(["1"])}

    async def scenario() -> list[dict[str, Any]]:
        async with rig(backend, callees, clock=ManualClock()) as r:
            await dial_all(r, list(callees))
            await r.until(lambda: not r.dialer.inflight and r.pbx.live == set())
            return r.calls()
    calls = {c["number"]: c for c in asyncio.run(scenario())}
    expected = {70: ("busy", 100.0), 71: ("no_answer", 200.0), 72: ("congestion", 300.0),
                73: ("failed", None), 10: ("message_played", None)}
    for suffix, (outcome, delay) in expected.items():
        call = calls[fiction(suffix)]
        assert call["outcome"] == outcome, call
        assert call["node"] == "pbx"
        if delay is None:
            assert call["retry_at"] is None
        else:
            gap = parse_utc(call["retry_at"]) - parse_utc(call["ended_at"])
            assert gap == timedelta(seconds=delay)


def test_originate_request_uses_the_dialplan_contract(backend: Backend) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], str, str]:
        async with rig(backend, {fiction(10): answer(["1"])}) as r:
            await dial_all(r, [fiction(10)])
            await r.until(lambda: not r.dialer.inflight)
            return r.pbx.originates, r.calls(), r.dialer.agi_url, r.cfg.campaign.name
    originates, calls, agi_url, cfg_name = asyncio.run(scenario())
    (orig,), (call,) = originates, calls
    assert orig["Context"] == "ivr-outbound" and orig["Exten"] == "s"
    assert orig["ChannelId"] == call["channel_id"]
    assert orig["OtherChannelId"] == call["channel_id"] + "-2"
    token = orig["Variable"].pop("IVR_TOKEN")  # issue 19: the attempt's secret, hex
    legal = orig["Variable"].pop("IVR_LEGAL")  # the failsafe's legal mentions, this version
    assert legal == prompt_sound(cfg_name, "legal", HASHES["legal"])
    confirm = orig["Variable"].pop("IVR_OPTOUT_CONFIRM")  # played once the key is journaled
    assert confirm == prompt_sound(cfg_name, "optout_confirm", HASHES["optout_confirm"])
    assert orig["Variable"] == {"CALL_ID": str(call["id"]), "IVR_AGI": agi_url, "IVR_AMD": "0",
                                "IVR_OPTOUT_DIGIT": "9"}  # the failsafe's opposition key
    assert len(bytes.fromhex(token)) >= 16 and token not in repr(call)
    assert orig["Channel"] == f"Local/{fiction(10)}@ivr-sim"
    assert call["outcome"] == "message_played"
    assert call["token_hash"] is None  # spent by the session that played the flow


def test_refused_claim_sends_nothing(backend: Backend) -> None:
    async def scenario() -> tuple[Any, int, int]:
        async with rig(backend, {fiction(10): answer(["1"])}) as r:
            r.store.add_optout(fiction(10), "post", r.clock.now())
            claim = await r.dialer.dial(contact(r.store, fiction(10)))
            return claim, len(r.pbx.originates), len(r.calls())
    claim, originates, calls = asyncio.run(scenario())
    assert claim.call is None and claim.decision.reason == "opted_out"
    assert originates == 0 and calls == 0


def test_shutting_down_is_an_error_retried_after_congestion_and_holds_the_node(
        backend: Backend) -> None:
    clock = ManualClock()

    async def scenario() -> tuple[list[dict[str, Any]], bool, bool, int]:
        async with rig(backend, {fiction(10): answer(["1"]), fiction(11): busy()},
                       clock=clock) as r:
            r.pbx.shutting_down = True
            await dial_all(r, [fiction(10)])
            held = not r.dialer.ready()
            clock.advance(FAULT_HOLD_S - 0.1)
            still = not r.dialer.ready()
            r.pbx.shutting_down = False
            clock.advance(0.2)
            assert r.dialer.ready()
            await dial_all(r, [fiction(11)])
            await r.until(lambda: not r.dialer.inflight)
            return r.calls(), held, still, len(r.pbx.originates)
    calls, held, still, originates = asyncio.run(scenario())
    assert held and still and originates == 2
    first = calls[0]
    assert first["outcome"] == "error"
    gap = parse_utc(first["retry_at"]) - parse_utc(first["ended_at"])
    assert gap == timedelta(seconds=DELAYS["congestion"])
    assert calls[1]["outcome"] == "busy"


def test_a_plain_refusal_is_withdrawn_without_hold(backend: Backend) -> None:
    """The node's own refusal dials nobody: the attempt is withdrawn (the contact keeps its
    attempts, node_guard.py), and one refusal does not hold the node."""
    from ivr.telephony.fake_pbx import refuse

    async def scenario() -> tuple[list[dict[str, Any]], bool]:
        async with rig(backend, {fiction(10): refuse("Channel not available")},
                       clock=ManualClock()) as r:
            await dial_all(r, [fiction(10)])
            await r.settled()
            return r.calls(), r.dialer.ready()
    calls, ready = asyncio.run(scenario())
    assert calls == []
    assert ready


def _open_attempt(store: Store, cfg: config.Config, number: str, node: str) -> int:
    claim = planning.claim(cfg, store, contact(store, number), node, ManualClock().now())
    assert claim.call is not None
    return int(claim.call["id"])


def test_reconciliation_after_a_drop_settles_only_its_nodes_gone_attempts(
        backend: Backend) -> None:
    live_n, gone_n, other_n = fiction(10), fiction(11), fiction(12)
    callees = {live_n: answer(["1"], prompt_s=0.3), gone_n: answer(), other_n: answer()}

    async def scenario() -> tuple[list[dict[str, Any]], bool, int]:
        async with rig(backend, callees) as r:
            await dial_all(r, [live_n])
            await r.until(lambda: bool(r.pbx.live))
            gone = _open_attempt(r.store, r.cfg, gone_n, "pbx")     # lost in the drop
            other = _open_attempt(r.store, r.cfg, other_n, "pbx-b")  # another node's
            logins = r.pbx.logins
            r.pbx.drop()
            await r.until(lambda: r.pbx.logins > logins and r.store.call(gone)["outcome"])
            adopted = any(f.number == live_n for f in r.dialer.inflight.values())
            await r.until(lambda: not r.dialer.inflight, timeout=15)
            return r.calls(), adopted, other
    calls, adopted, other = asyncio.run(scenario())
    by_number = {c["number"]: c for c in calls}
    assert adopted
    assert by_number[live_n]["outcome"] == "message_played"  # kept, finished normally
    gone = by_number[gone_n]
    assert (gone["outcome"], gone["stage"]) == ("error", "reconciled")
    assert parse_utc(gone["retry_at"]) > parse_utc(gone["ended_at"])
    assert by_number[other_n]["outcome"] is None  # another node's attempt: untouched
    assert by_number[other_n]["id"] == other


def test_attempts_left_by_a_crash_are_reconciled_at_start(backend: Backend) -> None:
    numbers = [fiction(10)]

    def leftover(store: Store) -> None:
        _open_attempt(store, make_cfg(backend), numbers[0], "pbx")

    async def scenario() -> list[dict[str, Any]]:
        async with rig(backend, {numbers[0]: answer()}, setup=leftover) as r:
            await r.settled()  # the start's reconciliation (PostgreSQL: from a worker thread)
            return r.calls()
    (call,) = asyncio.run(scenario())
    assert (call["outcome"], call["stage"]) == ("error", "reconciled")


def test_pbx_went_down_follows_the_node_and_the_clock(tmp_path: Path) -> None:
    clock = ManualClock()

    async def scenario() -> tuple[bool, bool]:
        async with rig(tmp_path, {}, clock=clock, numbers=[]) as r:
            waiting = asyncio.create_task(r.dialer.pbx_went_down(within_s=2.0))
            await r.until(lambda: waiting.done())  # the manual clock runs out: not down
            up_result = waiting.result()
            down = asyncio.create_task(r.dialer.pbx_went_down(within_s=2.0))
            await r.pbx.stop()
            await r.until(lambda: down.done())
            return up_result, down.result()
    assert asyncio.run(scenario()) == (False, True)


def test_a_live_call_of_an_earlier_controller_is_adopted_not_settled(backend: Backend) -> None:
    number = fiction(10)

    async def scenario() -> tuple[bool, str | None, list[dict[str, Any]]]:
        async with rig(backend, {number: answer(["1"], prompt_s=0.3)}) as r:
            await dial_all(r, [number])
            await r.until(lambda: bool(r.pbx.live))
            # A second controller (a restarted `ivr run`) on the same store and PBX.
            node = AmiNode("pbx", "127.0.0.1", r.pbx.ami_port, "ivr", SECRET)
            cfg2 = make_cfg(backend)
            ctl2 = await app.start(cfg2, r.store, node=node, hashes=HASHES)
            try:
                adopted = [f.number for f in ctl2.dialer.inflight.values()] == [number]
                outcome_at_adoption = r.store.call(r.calls()[0]["id"])["outcome"]
                await r.until(lambda: not ctl2.dialer.inflight, timeout=15)
            finally:
                await ctl2.close()
            return adopted, outcome_at_adoption, r.calls()
    adopted, at_adoption, calls = asyncio.run(scenario())
    assert adopted and at_adoption is None
    assert [c["outcome"] for c in calls] == ["message_played"]  # its IVR's outcome, not error


def test_an_adopted_call_that_ends_without_an_ivr_report_is_reconciled(
        backend: Backend) -> None:
    """A live channel of an earlier run (here its failsafe still playing the legal mentions
    after that controller died) is adopted; when it ends with no IVR of ours to report, its
    `error` is a reconciliation's (stage `reconciled`), as when the channel is already gone."""
    number = fiction(11)

    async def scenario() -> dict[str, Any]:
        async with rig(backend, {}, numbers=[number]) as r:
            got = planning.claim(r.cfg, r.store, contact(r.store, number), "pbx",
                                 r.clock.now())  # the earlier run's open attempt
            r.store.mark_answered(int(got.call["id"]), r.clock.now())
            call = r.store.call(int(got.call["id"]))
            flight = reconcile.adopt(r.dialer, r.dialer.nodes["pbx"], call)
            assert flight.adopted and flight.answered
            settle.expire(r.dialer, flight)  # its Hangup came, and no IVR of ours reported
            await r.settled()
            return r.store.call(int(got.call["id"]))
    call = asyncio.run(scenario())
    assert (call["outcome"], call["stage"]) == ("error", "reconciled")
