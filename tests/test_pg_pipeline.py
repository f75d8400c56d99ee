"""PostgreSQL's hot transactions in fewer round trips: the claim in pipeline mode
(ivr/store/pg_pipeline.py), a choice and an answered call's outcome one server function each
(schema 23, ivr/store/pg_functions.py), an unanswered call's outcome too (schema 24); and still
all or nothing: a write that fails undoes its whole transaction and leaves no pooled
connection inside one."""
from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest

from ivr.store.base import CallResult
from store_sql import PgTestStore as PgStore

from conftest import add_contact, attempt, contact

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_capacity  # noqa: E402  (bench/ is not a package)

AT = datetime(2026, 12, 7, 18, 0, tzinfo=timezone.utc)
CONSENT = CallResult(outcome="message_played", stage="message", keys="1", heard={},
                     choice="consent", choice_key="1")

pytestmark = pytest.mark.parametrize("store", ["postgresql"], indirect=True)


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The waits for the server, as the capacity bench counts them (bench_capacity.py): a
    statement outside pipeline mode one, a psycopg transaction two, a pipeline's Sync one."""
    return bench_capacity.count_round_trips(monkeypatch.setattr)


def _open_transactions(store: PgStore) -> int:
    row = store.one("SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = "
                    "current_database() AND state LIKE 'idle in transaction%'")
    return int(row["n"])


def test_a_call_setup_takes_five_round_trips_in_its_three_transactions(
        store: PgStore, round_trips: list[int]) -> None:
    add_contact(store, "+33199001301", at=AT)
    person = contact(store, "+33199001301")
    round_trips[0] = 0
    call = attempt(store, person, "c1", "+33162000000", AT)
    # the lock with the BEGIN, the history, the INSERT with the COMMIT (was 5)
    assert round_trips[0] == 3
    assert call["state"] == "dialing" and call["number"] == "+33199001301"
    assert store.call(call["id"])["channel_id"] == call["channel_id"]
    round_trips[0] = 0
    assert store.record_choice(call["id"], CONSENT, AT)
    assert round_trips[0] == 1  # one command: the server function record_choice (was 4)
    round_trips[0] = 0
    assert store.finish_answered(call["id"], CONSENT, AT) == "16"
    assert round_trips[0] == 1  # one command: the server function finish_answered (was 7, 2)
    proof = store.q("SELECT kind, key, prompt_key, answered_at FROM consents WHERE "
                    "call_id = ?", (call["id"],))
    assert [(r["kind"], r["key"]) for r in proof] == [("consent", "1")]  # completed, not doubled
    assert store.one("SELECT status FROM campaign_contacts WHERE contact_id = ? AND "
                     "campaign = 'c1'", (call["contact_id"],))["status"] == "done"
    assert _open_transactions(store) == 0


def test_an_unanswered_outcome_is_one_round_trip_and_settles_the_contact(
        store: PgStore, round_trips: list[int]) -> None:
    add_contact(store, "+33199001305", at=AT)
    call = attempt(store, contact(store, "+33199001305"), "c1", "+33162000000", AT)
    round_trips[0] = 0
    assert store.finish_unanswered(call["id"], "no_answer", "19", AT, None)  # no retry left
    assert round_trips[0] == 1  # one command: the server function finish_unanswered (was 2)
    row = store.call(call["id"])
    assert (row["state"], row["outcome"], row["hangup_cause"], row["retry_at"]) == (
        "ended", "no_answer", "19", None)
    statuses = store.one("SELECT b.status AS bound, k.status AS own FROM campaign_contacts b "
                         "JOIN contacts k ON k.id = b.contact_id WHERE b.contact_id = ? AND "
                         "b.campaign = 'c1'", (call["contact_id"],))
    assert (statuses["bound"], statuses["own"]) == ("exhausted", "exhausted")
    round_trips[0] = 0
    assert not store.finish_unanswered(call["id"], "busy", "17", AT, None)  # the first stands
    assert round_trips[0] == 1 and store.call(call["id"])["outcome"] == "no_answer"
    assert _open_transactions(store) == 0


def test_a_write_failing_with_the_commit_undoes_the_outcome_and_no_session_stays_open(
        store: PgStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="psycopg")
    add_contact(store, "+33199001302", at=AT)
    call = attempt(store, contact(store, "+33199001302"), "c1", "+33162000000", AT)
    # The contact's status, the outcome's last write (settle_contact, pg_functions.py): refused.
    store.q("CREATE FUNCTION pipeline_refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$")
    store.q("CREATE TRIGGER pipeline_refuse BEFORE UPDATE OF status ON contacts "
            "FOR EACH ROW EXECUTE FUNCTION pipeline_refuse()")
    with pytest.raises(psycopg.errors.RaiseException, match="refused by the test"):
        store.finish_answered(call["id"], CONSENT, AT)
    assert store.call(call["id"])["outcome"] is None  # the outcome went with it
    assert store.q("SELECT 1 AS x FROM consents WHERE call_id = ?", (call["id"],)) == []
    assert _open_transactions(store) == 0
    with pytest.raises(psycopg.errors.RaiseException):  # and a pooled session still works
        store.finish_unanswered(call["id"], "no_answer", "19", AT, None)
    assert store.call(call["id"])["outcome"] is None
    store.q("DROP TRIGGER pipeline_refuse ON contacts")
    assert store.finish_answered(call["id"], CONSENT, AT) == "16"
    assert store.call(call["id"])["outcome"] == "message_played"
    assert [r["kind"] for r in store.q("SELECT kind FROM consents WHERE call_id = ?",
                                         (call["id"],))] == ["consent"]
    assert _open_transactions(store) == 0
    # rolled back by the store, not by the pool (which warns of a connection returned
    # inside a transaction), and no pipeline left with results unread
    assert [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")] == []


def test_a_claim_whose_insert_fails_with_the_commit_writes_no_attempt(store: PgStore) -> None:
    add_contact(store, "+33199001303", at=AT)
    store.q("CREATE FUNCTION pipeline_no_call() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'no call today'; END $$")
    store.q("CREATE TRIGGER pipeline_no_call BEFORE INSERT ON calls "
            "FOR EACH ROW EXECUTE FUNCTION pipeline_no_call()")
    with pytest.raises(psycopg.errors.RaiseException, match="no call today"):
        attempt(store, contact(store, "+33199001303"), "c1", "+33162000000", AT)
    assert store.q("SELECT 1 AS x FROM calls") == []
    assert _open_transactions(store) == 0
    store.q("DROP TRIGGER pipeline_no_call ON calls")
    # the contact's lock went with the rollback: claimed at once, not skipped as in flight
    call = attempt(store, contact(store, "+33199001303"), "c1", "+33162000000", AT)
    assert call["attempt"] == 1


def test_the_proof_row_of_a_call_without_its_contact_row_is_still_written(
        store: PgStore) -> None:
    """The proof is one INSERT … SELECT now, its values parameters of the SELECT: a NULL
    contact id (the contact's row gone) still lands in `contact_id BIGINT`, and the row is
    written, not the outcome's transaction failed."""
    add_contact(store, "+33199001304", at=AT)
    call = attempt(store, contact(store, "+33199001304"), "c1", "+33162000000", AT)
    store.q("UPDATE calls SET contact_id = NULL WHERE id = ?", (call["id"],))
    assert store.finish_answered(call["id"], CONSENT, AT) == "16"
    proof = store.q("SELECT kind, contact_id, call_id FROM consents WHERE call_id = ?",
                    (call["id"],))
    assert [(r["kind"], r["contact_id"], r["call_id"]) for r in proof] == \
        [("consent", None, call["id"])]
