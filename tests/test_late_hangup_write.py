"""Issue 14 item 7 (controller CPU per call): the late Hangup of a call the IVR already settled
is written only when it changes the stored cause. On the yes path the IVR's outcome stores
cause 16 and Asterisk's Hangup then says 16: that write changed nothing but cost a store
transaction per call. A different cause (the real one) is still written. On PostgreSQL the
outcome lands from a worker thread, mostly after the Hangup: a Hangup that comes while the
outcome write is queued is held for it (ivr/callflow/late_causes.py)."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conftest import Backend
from ivr.callflow.late_causes import StoredCauses
from ivr.telephony.fake_pbx import answer
from ivr.telephony.node import ChannelHangup
from test_dialer import contact, fiction, rig


def _spy(store: Any) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    real = store.set_hangup_cause_by_channel

    def spy(channel_id: str, cause: str, campaign: str) -> None:
        seen.append((channel_id, cause))
        real(channel_id, cause, campaign)
    store.set_hangup_cause_by_channel = spy
    return seen


def test_yes_path_late_hangup_with_the_stored_cause_writes_nothing(tmp_path: Path) -> None:
    numbers = [fiction(10), fiction(12), fiction(13)]

    async def scenario() -> tuple[list[tuple[str, str]], list[dict[str, Any]],
                                  list[tuple[str, str]]]:
        async with rig(tmp_path, {n: answer(["1"]) for n in numbers}) as r:
            seen = _spy(r.store)
            for n in numbers:
                await r.dialer.dial(contact(r.store, n))
            await r.until(lambda: not r.dialer.inflight and r.pbx.live == set() and all(
                c["outcome"] and c["hangup_cause"] for c in r.calls()))
            await asyncio.sleep(0.2)  # any late Hangup has arrived
            r.dialer.writer.flush()
            during = list(seen)
            # The same Hangups again, now with another cause: that one is written.
            for c in r.calls():
                r.dialer.stored_causes.recorded(c["channel_id"], "16")
                r.dialer.on_event(ChannelHangup(node="pbx", channel_id=c["channel_id"],
                                                cause=21))
            r.dialer.writer.flush()
            return during, r.calls(), seen[len(during):]
    during, calls, after = asyncio.run(scenario())
    assert [c["outcome"] for c in calls] == ["message_played"] * 3
    assert during == []  # before the change: one write of cause 16 per call
    assert sorted(after) == sorted((c["channel_id"], "21") for c in calls)
    assert [c["hangup_cause"] for c in calls] == ["21"] * 3


def test_a_hangup_before_the_outcome_is_written_is_still_written(tmp_path: Path) -> None:
    """Nothing noted for the channel (the Hangup came before the IVR's write, or its note was
    taken already): written as before."""
    async def scenario() -> list[tuple[str, str]]:
        async with rig(tmp_path, {fiction(10): answer(["1"])}) as r:
            seen = _spy(r.store)
            await r.dialer.dial(contact(r.store, fiction(10)))
            await r.until(lambda: not r.dialer.inflight and r.pbx.live == set())
            await asyncio.sleep(0.2)
            (call,) = r.calls()
            r.dialer.on_event(ChannelHangup(node="pbx", channel_id=call["channel_id"],
                                            cause=16))
            r.dialer.writer.flush()
            return seen
    assert len(asyncio.run(scenario())) == 1


def test_stored_causes_are_taken_once_and_bounded() -> None:
    causes = StoredCauses(limit=2)
    assert causes.recorded("a", "16") is None  # no Hangup held: 16 waits for one
    assert not causes.settled_without_write("a", "17")  # another cause: write it
    assert not causes.settled_without_write("a", "16")  # taken by the first look
    for ch in ("x", "y", "z"):
        causes.recorded(ch, "16")
    assert not causes.settled_without_write("x", "16")  # the oldest went past the bound
    assert causes.settled_without_write("y", "16") and causes.settled_without_write("z", "16")


def test_a_hangup_while_the_outcome_is_queued_is_held_for_that_write() -> None:
    causes = StoredCauses()
    causes.queued("same")
    assert causes.settled_without_write("same", "16")  # held, not written now
    assert causes.recorded("same", "16") is None  # the write stored it: nothing more
    assert not causes.settled_without_write("same", "16")  # taken: a second Hangup writes
    causes.queued("other")
    assert causes.settled_without_write("other", "21")
    assert causes.recorded("other", "16") == "21"  # the write stores the Hangup's own
    causes.queued("unwritten")
    assert causes.settled_without_write("unwritten", "17")
    assert causes.recorded("unwritten", None) == "17"  # no outcome stored: the cause still
    causes.queued("first")  # no Hangup before the write: its cause waits for one
    assert causes.recorded("first", "16") is None
    assert causes.settled_without_write("first", "16")
    assert not causes.settled_without_write("unknown", "16")  # nothing known: written


def _slow_outcome(r: Any, then: Any = None) -> None:
    """The outcome write waits in its worker thread until the Hangup has come (PostgreSQL's
    usual order), then runs `then` on the loop before it writes."""
    real, loop = r.store.finish_answered, asyncio.get_running_loop()

    def slow(*args: Any, **kw: Any) -> Any:
        time.sleep(0.4)
        if then is not None:
            loop.call_soon_threadsafe(then)
            time.sleep(0.2)
        return real(*args, **kw)
    r.store.finish_answered = slow


def _writes(store: Any, fail_once: bool = False) -> list[tuple[int, str]]:
    """The writes of a cause by call id; `fail_once`: the first fails as a store gone away
    would (its batch rolled back and sent again)."""
    seen: list[tuple[int, str]] = []
    real = store.set_hangup_cause

    def spy(call_id: int, cause: str) -> None:
        seen.append((call_id, cause))
        if fail_once and len(seen) == 1:
            raise psycopg.OperationalError("the server went away (test)")
        real(call_id, cause)
    store.set_hangup_cause = spy
    return seen


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_hangup_before_the_outcome_lands_writes_nothing_more(backend: Backend) -> None:
    """The yes path on PostgreSQL with the Hangup first: one write, the outcome's, not two."""
    numbers = [fiction(10), fiction(12)]

    async def scenario() -> tuple[list[Any], list[Any], list[dict[str, Any]]]:
        async with rig(backend, {n: answer(["1"]) for n in numbers}) as r:
            by_channel, by_id = _spy(r.store), _writes(r.store)
            _slow_outcome(r)
            for n in numbers:
                await r.dialer.dial(contact(r.store, n))
            await r.until(lambda: not r.dialer.inflight and r.pbx.live == set() and all(
                c["outcome"] and c["hangup_cause"] for c in r.calls()), timeout=20)
            await r.dialer.writer.settled()
            return by_channel, by_id, r.calls()
    by_channel, by_id, calls = asyncio.run(scenario())
    assert [c["outcome"] for c in calls] == ["message_played"] * 2
    assert [c["hangup_cause"] for c in calls] == ["16"] * 2
    assert by_channel == [] and by_id == []  # before: one write of cause 16 per call


@pytest.mark.parametrize("fail_once", [False, True], ids=["at-once", "sent-again"])
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_held_hangup_with_another_cause_is_written_with_the_outcome(
        backend: Backend, fail_once: bool) -> None:
    """Sent again (its first try rolled back), the outcome's write still stores the held
    cause: it was taken once, by the first try."""
    async def scenario() -> tuple[list[Any], dict[str, Any]]:
        async with rig(backend, {fiction(10): answer(["1"])}) as r:
            by_id = _writes(r.store, fail_once)
            channel: list[str] = []

            def hangup() -> None:  # the real cause, after the PBX's 16
                (call,) = r.calls()
                channel.append(call["channel_id"])
                r.dialer.on_event(ChannelHangup(node="pbx", channel_id=call["channel_id"],
                                                cause=21))
            _slow_outcome(r, hangup)
            await r.dialer.dial(contact(r.store, fiction(10)))
            await r.until(lambda: not r.dialer.inflight and r.pbx.live == set() and all(
                c["outcome"] for c in r.calls()), timeout=20)
            await r.dialer.writer.settled()
            await asyncio.wait_for(r.dialer.writer.drained.wait(), 10)  # sent again: landed
            (call,) = r.calls()
            return by_id, call
    by_id, call = asyncio.run(scenario())
    assert call["outcome"] == "message_played" and call["hangup_cause"] == "21"
    assert by_id == [(call["id"], "21")] * (2 if fail_once else 1)
