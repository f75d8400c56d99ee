"""A claim whose COMMIT landed but whose answer was lost (a connection killed while the commit
waited: /tmp/hunt-pg's rig killed it during a synchronous standby's wait). Found in a hunt: the
run took the store error for "nothing written", so the contact held an attempt never dialled,
in flight for the whole run (a controller never reconciles its own rows) and then counted
against the person as `error`. Now the claim's withdrawal is queued (campaign/lost_claim.py):
the attempt goes, and the contact is called in the same run. Both backends; the fake PBX."""
from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import psycopg

from ivr.telephony.fake_pbx import answer

from conftest import Backend
from test_dialer import fiction, rig
from test_run_loop import run_campaign

NUMBERS = [fiction(30), fiction(31), fiction(32)]


def test_a_claim_written_but_its_answer_lost_is_withdrawn_and_the_contact_called(
        backend: Backend) -> None:
    lost = (psycopg.OperationalError("server closed the connection unexpectedly")
            if backend.name == "postgresql" else sqlite3.OperationalError("disk I/O error"))
    claims: list[str] = []

    async def scenario() -> tuple[Any, list[dict[str, Any]], dict[str, str]]:
        async with rig(backend, {n: answer(["1"]) for n in NUMBERS}) as r:
            real = r.store.claim_attempt

            def answer_lost(contact: Any, **kw: Any) -> Any:
                got = real(contact, **kw)  # committed ...
                claims.append(contact["number"])
                if contact["number"] == NUMBERS[1] and claims.count(NUMBERS[1]) == 1:
                    raise lost  # ... and the answer never came back
                return got
            r.store.claim_attempt = answer_lost
            report, _, _ = await run_campaign(r)
            await r.settled()
            status = {row["number"]: row["status"]
                      for row in r.store.q("SELECT number, status FROM contacts")}
            return report, r.calls(), status
    report, calls, status = asyncio.run(scenario())
    assert report.stopped_by == "finished" and report.originated == len(NUMBERS), report
    assert [c for c in calls if c["outcome"] is None] == []  # no attempt left open
    assert sorted(c["number"] for c in calls) == NUMBERS  # one attempt each: none counted twice
    assert {c["outcome"] for c in calls} == {"message_played"}
    assert status == {n: "done" for n in NUMBERS} and claims.count(NUMBERS[1]) == 2


def test_the_withdrawal_waits_for_the_store_and_lands_before_the_next_claim(
        backend: Backend) -> None:
    """The store still away when the withdrawal is first written: it is queued (the run
    pauses, as for any write), lands once the store answers, and the contact is called."""
    lost = (psycopg.OperationalError("server closed the connection unexpectedly")
            if backend.name == "postgresql" else OSError("disk I/O error"))  # retryable
    withdrawals: list[int] = []

    async def scenario() -> tuple[Any, list[dict[str, Any]]]:
        async with rig(backend, {n: answer(["1"]) for n in NUMBERS}) as r:
            real_claim, real_withdraw = r.store.claim_attempt, r.store.withdraw_attempt

            def answer_lost(contact: Any, **kw: Any) -> Any:
                got = real_claim(contact, **kw)
                if contact["number"] == NUMBERS[0] and not withdrawals:
                    raise lost
                return got

            def withdraw(call_id: int) -> bool:
                withdrawals.append(call_id)
                if len(withdrawals) == 1:
                    raise lost  # still away
                return bool(real_withdraw(call_id))
            r.store.claim_attempt, r.store.withdraw_attempt = answer_lost, withdraw
            report, _, _ = await run_campaign(r)
            await r.settled()
            return report, r.calls()
    report, calls = asyncio.run(scenario())
    assert report.originated == len(NUMBERS) and report.paused, report
    assert len(withdrawals) == 2 and len(set(withdrawals)) == 1
    assert sorted(c["number"] for c in calls) == NUMBERS
    assert all(c["outcome"] == "message_played" for c in calls), calls
