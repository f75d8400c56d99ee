"""Schemas 23 and 24 on PostgreSQL (ivr/store/pg_functions.py): a call's outcome, answered or
not, and its key's proof are server functions, one command each. What they must keep of the
statements they replace: each statement's own snapshot, so that a write waiting on the call's
row lock sees the proof row the holder of that lock committed, and completes it instead of
writing a second one (one statement with CTEs would read a snapshot taken before the wait,
and insert it twice), or finds the outcome committed meanwhile and writes nothing."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import psycopg
import pytest

from ivr.store.base import CallResult
from ivr.store.pg_schema import MIGRATIONS
from store_sql import PgTestStore

from conftest import add_contact, attempt, contact

AT = datetime(2026, 12, 7, 19, 0, tzinfo=timezone.utc)
REFUSAL = CallResult(outcome="declined", stage="intro", keys="2", heard={}, choice="refusal",
                     choice_key="2")
FUNCTIONS = ("finish_answered", "finish_unanswered", "record_choice", "settle_contact")


# conftest's `store` on PostgreSQL alone: its database is the test's `pg_store_url`
store_on_postgresql = pytest.mark.parametrize("store", ["postgresql"], indirect=True)


def _functions(store: PgTestStore) -> set[str]:
    return {r["proname"] for r in store.q(
        "SELECT proname FROM pg_proc WHERE proname IN ('finish_answered', 'finish_unanswered', "
        "'record_choice', 'settle_contact')")}


def test_a_store_of_schema_22_gets_the_functions_of_23_and_24_on_upgrade(pg_store_url: str) -> None:
    old = PgTestStore.open(pg_store_url, optout_key=b"test-key")
    assert _functions(old) == set(FUNCTIONS)
    old.q("DROP FUNCTION finish_answered, finish_unanswered, record_choice, settle_contact")
    old.one("WITH gone AS (DELETE FROM schema_version WHERE version >= 23 RETURNING version) "
            "SELECT COUNT(*) AS n FROM gone")
    old.close()
    again = PgTestStore.open(pg_store_url, optout_key=b"test-key")
    try:
        assert again.version == len(MIGRATIONS) and _functions(again) == set(FUNCTIONS)
        assert [r["version"] for r in again.q("SELECT version FROM schema_version WHERE "
                                               "version IN (23, 24) ORDER BY 1")] == [23, 24]
        add_contact(again, "+33199001401", at=AT)
        call = attempt(again, contact(again, "+33199001401"), "c1", "+33162000000", AT)
        assert again.record_choice(call["id"], REFUSAL, AT)
        assert again.finish_answered(call["id"], REFUSAL, AT) == "16"
        add_contact(again, "+33199001409", at=AT)
        other = attempt(again, contact(again, "+33199001409"), "c1", "+33162000000", AT)
        assert again.finish_unanswered(other["id"], "busy", "17", AT, None)
    finally:
        again.close()


def _behind_a_lock(url: str, call_id: int, holder_writes: Callable[[Any], None],
                   waiter: Callable[[], Any]) -> Any:
    """Run `waiter` (a store write) while another session holds the call's row lock; that
    session writes (`holder_writes`) and commits once the waiter is blocked on the lock."""
    got: list[Any] = []
    with psycopg.connect(url) as holder:
        holder.execute("SELECT 1 FROM calls WHERE id = %s FOR UPDATE", (call_id,))
        thread = threading.Thread(target=lambda: got.append(waiter()))
        thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not holder.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND "
                "wait_event_type = 'Lock' AND pid <> pg_backend_pid()").fetchall():
            time.sleep(0.02)
        holder_writes(holder)
        holder.commit()
        thread.join(10)
    assert got, "the write behind the lock never returned"
    return got[0]


def _key_proof(holder: Any, call_id: int) -> None:
    """The key's proof row, as another write of the same choice would commit it."""
    holder.execute(
        "INSERT INTO consents (call_id, contact_id, number, kind, key, at, caller_id, "
        "campaign) SELECT id, contact_id, number, 'refusal', '2', '2026-12-07T18:59:00.000Z', "
        "caller_id, campaign FROM calls WHERE id = %s", (call_id,))


def _proofs(store: PgTestStore, call_id: int) -> list[tuple[str, str]]:
    return [(r["kind"], r["at"]) for r in store.q(
        "SELECT kind, at FROM consents WHERE call_id = ? ORDER BY id", (call_id,))]


@store_on_postgresql
def test_a_choice_written_behind_the_lock_sees_the_proof_committed_meanwhile(
        store: PgTestStore, pg_store_url: str) -> None:
    add_contact(store, "+33199001402", at=AT)
    call = attempt(store, contact(store, "+33199001402"), "c1", "+33162000000", AT)
    added = _behind_a_lock(pg_store_url, call["id"], lambda h: _key_proof(h, call["id"]),
                           lambda: store.record_choice(call["id"], REFUSAL, AT))
    assert added is False  # the other write's row stands alone
    assert _proofs(store, call["id"]) == [("refusal", "2026-12-07T18:59:00.000Z")]


@store_on_postgresql
def test_an_outcome_written_behind_the_lock_completes_the_proof_committed_meanwhile(
        store: PgTestStore, pg_store_url: str) -> None:
    add_contact(store, "+33199001403", at=AT)
    call = attempt(store, contact(store, "+33199001403"), "c1", "+33162000000", AT)
    done = CallResult(outcome="declined", stage="intro", keys="2", heard={"intro": "abc"},
                      choice="refusal", choice_key="2", answered_prompt="intro",
                      answered_sha256="abc")
    cause = _behind_a_lock(pg_store_url, call["id"], lambda h: _key_proof(h, call["id"]),
                           lambda: store.finish_answered(call["id"], done, AT))
    assert cause == "16"
    assert _proofs(store, call["id"]) == [("refusal", "2026-12-07T18:59:00.000Z")]  # its time
    row = store.one("SELECT prompt_key, prompt_sha256 FROM consents WHERE call_id = ?",
                    (call["id"],))
    assert (row["prompt_key"], row["prompt_sha256"]) == ("intro", "abc")  # completed
    assert store.call(call["id"])["outcome"] == "declined"


@store_on_postgresql
def test_an_unanswered_outcome_behind_the_lock_leaves_the_outcome_committed_meanwhile(
        store: PgTestStore, pg_store_url: str) -> None:
    """Two controllers settling one attempt (one reconciles it, the other hears its hangup):
    the write waiting on the call's row lock sees the other's outcome and writes nothing."""
    add_contact(store, "+33199001404", at=AT)
    call = attempt(store, contact(store, "+33199001404"), "c1", "+33162000000", AT)

    def other_outcome(holder: Any) -> None:
        holder.execute("UPDATE calls SET state = 'ended', outcome = 'no_answer', "
                       "hangup_cause = '19' WHERE id = %s", (call["id"],))
    written = _behind_a_lock(pg_store_url, call["id"], other_outcome,
                             lambda: store.finish_unanswered(call["id"], "busy", "17", AT,
                                                             None))
    assert written is False
    row = store.call(call["id"])
    assert (row["outcome"], row["hangup_cause"]) == ("no_answer", "19")
    assert store.one("SELECT status FROM campaign_contacts WHERE contact_id = ? AND "
                     "campaign = 'c1'", (call["contact_id"],))["status"] != "busy"
