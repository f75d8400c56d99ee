"""Issue 14 item 7 (controller CPU per call): the late Hangup of a call the IVR already settled
is written only when it changes the stored cause. On the yes path the IVR's outcome stores
cause 16 and Asterisk's Hangup then says 16: that write changed nothing but cost a store
transaction per call. A different cause (the real one) is still written."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ivr.campaign.nodes import StoredCauses
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
                r.dialer.stored_causes.note(c["channel_id"], "16")
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
    causes.note("a", "16")
    assert not causes.already("a", "17")  # another cause: write it
    assert not causes.already("a", "16")  # taken by the first look
    for ch in ("x", "y", "z"):
        causes.note(ch, "16")
    assert not causes.already("x", "16")  # the oldest went past the bound
    assert causes.already("y", "16") and causes.already("z", "16")
