"""Issue 16 item 11: calls.answered_at (and the consent's) is when the callee answered, from the
PBX's answer event (OriginateResponse Success), not when the AGI began after AMD()."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

from ivr.campaign.clock import Clock
from ivr.store.sqlite import Store, parse_utc, utc
from ivr.telephony.fake_pbx import answer

from conftest import Backend
from test_dialer import add_contacts, contact, dial_all, fiction, rig

RING_S, AMD_S = 0.2, 1.5


def test_the_answer_event_time_is_stored_not_the_agi_start(backend: Backend) -> None:
    """The fake callee rings 0.2 s, then AMD listens 1.5 s before the AGI: the stored answer
    time is the ring time (± 0.4 s of scheduling), the consent carries the same."""
    number = fiction(10)
    callees = {number: answer(["1"], delay_s=RING_S, amd_s=AMD_S)}

    async def scenario() -> tuple[dict[str, Any], dict[str, Any] | None]:
        async with rig(backend, callees, clock=Clock(), amd=True) as r:
            await dial_all(r, [number])
            await r.until(lambda: not r.dialer.inflight and r.pbx.live == set())
            return r.calls()[0], r.store.one("SELECT * FROM consents")
    call, consent = asyncio.run(scenario())
    assert call["outcome"] == "message_played", call
    rang = (parse_utc(call["answered_at"]) - parse_utc(call["started_at"])).total_seconds()
    assert RING_S - 0.05 <= rang <= RING_S + 0.4, call
    assert consent is not None and consent["answered_at"] == call["answered_at"]


def _one_call(backend: Backend) -> tuple[Store, int]:
    store = backend.open()
    add_contacts(store, [fiction(10)])
    row = store.create_attempt(contact(store, fiction(10)), "utest", "+33199000000",
                               datetime(2026, 12, 1, 10, 0, 0, tzinfo=timezone.utc))
    return store, int(row["id"])


def test_the_earliest_answer_wins_whichever_write_came_first(backend: Backend) -> None:
    store, call_id = _one_call(backend)
    answer_at = datetime(2026, 12, 1, 10, 0, 1, tzinfo=timezone.utc)
    agi_at = answer_at + timedelta(seconds=5)
    store.mark_answered(call_id, agi_at)       # the AGI wrote first (its fallback time)
    store.record_answer(call_id, answer_at)    # the answer event corrects it
    assert store.call(call_id)["answered_at"] == utc(answer_at)  # type: ignore[index]
    store.mark_answered(call_id, agi_at)       # a later AGI start does not move it back
    store.record_answer(call_id, agi_at)       # nor a later event
    assert store.call(call_id)["answered_at"] == utc(answer_at)  # type: ignore[index]


def test_the_answer_event_corrects_a_consent_already_written(backend: Backend) -> None:
    store, call_id = _one_call(backend)
    late = utc(datetime(2026, 12, 1, 10, 0, 6, tzinfo=timezone.utc))
    # A consent row written with the call's outcome (a refusal's, written at its key before
    # the end, is the next test's).
    store.db.execute("UPDATE calls SET state = 'ended', outcome = 'message_played', "
                     "ended_at = ? WHERE id = ?", (late, call_id))
    store.db.execute("INSERT INTO consents (call_id, number, kind, key, at, caller_id, campaign,"
                     " answered_at) VALUES (?, ?, 'consent', '1', ?, '+33199000000', 'utest', ?)",
                     (call_id, fiction(10), late, late))
    store.record_answer(call_id, datetime(2026, 12, 1, 10, 0, 1, tzinfo=timezone.utc))
    row = store.one("SELECT answered_at FROM consents WHERE call_id = ?", (call_id,))
    assert row == {"answered_at": "2026-12-01T10:00:01.000Z"}


def test_the_answer_event_corrects_a_refusal_written_at_its_key(backend: Backend) -> None:
    """Found in review: PostgreSQL corrected the proof row only once the call had ended, but
    a refusal's row is written the moment its key is pressed (record_choice): a controller
    dying before the end left it with the AGI's later time on PostgreSQL, not on SQLite."""
    from ivr.store import CallResult
    store, call_id = _one_call(backend)
    answer_at = datetime(2026, 12, 1, 10, 0, 1, tzinfo=timezone.utc)
    store.mark_answered(call_id, answer_at + timedelta(seconds=4))  # the AGI's start
    refusal = CallResult(outcome="declined", stage="ask", keys="2", heard={},
                         choice="refusal", choice_key="2")
    assert store.record_choice(call_id, refusal, answer_at + timedelta(seconds=9))
    store.record_answer(call_id, answer_at)  # the OriginateResponse, read late
    row = store.one("SELECT answered_at FROM consents WHERE call_id = ?", (call_id,))
    assert row == {"answered_at": utc(answer_at)}
    assert store.call(call_id)["outcome"] is None  # type: ignore[index]
