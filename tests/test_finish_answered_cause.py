"""finish_answered returns the hangup cause it leaves stored (an earlier Hangup's is kept by
COALESCE), None when the attempt already had its outcome, on both backends: the IVR notes
that cause for the late-Hangup skip (StoredCauses), not the one it passed."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import add_contact, attempt
from ivr.callflow.late_causes import StoredCauses
from ivr.store import CallResult
from ivr.telephony.fake_pbx import answer
from test_dialer import contact, fiction, rig

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=timezone.utc)


def _call(store: Any, n: int) -> int:
    contact = add_contact(store, f"+3361234560{n}", at=T0, timezone="Europe/Paris")
    return int(attempt(store, contact, "spring", "+33162000000", T0)["id"])


def _result(cause: str | None) -> CallResult:
    return CallResult(outcome="message_played", stage="end", keys="1", heard={},
                      hangup_cause=cause)


def test_finish_answered_returns_the_stored_cause(store: Any) -> None:
    earlier, given, default = _call(store, 1), _call(store, 2), _call(store, 3)
    store.set_hangup_cause(earlier, "17")  # Asterisk's Hangup came before the IVR's write
    later = T0 + timedelta(seconds=30)
    assert store.finish_answered(earlier, _result("21"), later) == "17"
    assert store.finish_answered(given, _result("21"), later) == "21"
    assert store.finish_answered(default, _result(None), later) == "16"
    assert store.finish_answered(earlier, _result("16"), later) is None  # one outcome only
    assert [store.call(i)["hangup_cause"] for i in (earlier, given, default)] == \
        ["17", "21", "16"]


def test_the_ivr_notes_the_stored_cause_for_the_late_hangup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Asterisk's Hangup (cause 17) is stored just before the IVR's outcome write, which keeps
    it: the IVR notes 17 for the late-Hangup skip (StoredCauses), not the 16 it passed."""
    noted: list[tuple[str, str | None]] = []
    real_recorded = StoredCauses.recorded

    def recorded(self: StoredCauses, channel_id: str, cause: str | None) -> str | None:
        noted.append((channel_id, cause))
        return real_recorded(self, channel_id, cause)
    monkeypatch.setattr(StoredCauses, "recorded", recorded)

    async def scenario() -> dict[str, Any]:
        async with rig(tmp_path, {fiction(10): answer(["1"])}) as r:
            real = r.store.finish_answered

            def hangup_first(call_id: int, *args: Any, **kw: Any) -> str | None:
                r.store.set_hangup_cause(call_id, "17")
                return real(call_id, *args, **kw)
            r.store.finish_answered = hangup_first
            await r.dialer.dial(contact(r.store, fiction(10)))
            await r.until(lambda: not r.dialer.inflight and r.pbx.live == set() and all(
                c["outcome"] for c in r.calls()))
            await asyncio.sleep(0.2)
            r.dialer.writer.flush()
            return r.calls()[0]
    call = asyncio.run(scenario())
    assert call["outcome"] == "message_played"
    assert noted == [(call["channel_id"], "17")]  # before the fix: the 16 it passed
