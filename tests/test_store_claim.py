"""Store.claim_attempt: read, judge and write one attempt in one transaction; the node column."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ivr.store import Claim, History, Store, utc
from ivr.store.schema import MIGRATIONS
from ivr.store.sqlite_calls import campaign_tag

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
NUM = "+33162000010"


@dataclass(frozen=True)
class Yes:
    allowed: bool = True


@dataclass(frozen=True)
class No:
    allowed: bool = False


def add(store: Store, number: str = NUM) -> dict[str, Any]:
    store.db.execute("INSERT INTO contacts (number, source, created_at, updated_at) "
                     "VALUES (?, 'list', ?, ?)", (number, utc(T0), utc(T0)))
    return store.one("SELECT * FROM contacts WHERE number = ?", (number,))  # type: ignore


def claim(store: Store, contact: dict[str, Any], judge: Any = None, *, campaign: str = "c1",
          node: str = "node-a", now: datetime = T0) -> Claim:
    seen: list[History] = []

    def record(h: History) -> Any:
        seen.append(h)
        return judge(h) if judge else Yes()
    got = store.claim_attempt(contact, campaign=campaign, caller_id="+33162000000", node=node,
                              now=now, attempts_since=now - timedelta(days=30),
                              refusals_since=now - timedelta(days=60), judge=record)
    assert len(seen) == 1  # the judge runs exactly once
    return got


def test_an_allowed_claim_writes_the_attempt_with_its_node(store: Store) -> None:
    s = store
    c = add(s)
    got = claim(s, c)
    assert got.decision.allowed and got.call is not None
    row = s.call(got.call["id"])
    assert row is not None
    assert (row["node"], row["attempt"], row["state"], row["campaign"]) == \
        ("node-a", 1, "dialing", "c1")
    assert row["channel_id"].startswith("ivr-") and row["started_at"] == utc(T0)


def test_a_refused_claim_writes_nothing(store: Store) -> None:
    s = store
    c = add(s)
    before = list(s.db.conn.iterdump())
    got = claim(s, c, lambda h: No())
    assert got.call is None and not got.decision.allowed
    assert list(s.db.conn.iterdump()) == before


def test_a_call_in_flight_in_any_campaign_is_seen_by_the_judge(store: Store) -> None:
    s = store
    c = add(s)
    claim(s, c, campaign="other")
    got = claim(s, c, lambda h: No() if h.in_flight else Yes())
    assert got.call is None
    assert len(s.open_calls()) == 1


def test_the_judge_sees_retry_at_of_this_campaign_only_and_past_attempts(store: Store) -> None:
    s = store
    c = add(s)
    first = claim(s, c, now=T0 - timedelta(hours=1)).call
    assert first is not None
    s.finish_unanswered(first["id"], "busy", "17", T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    histories: list[History] = []
    claim(s, c, lambda h: histories.append(h) or No())
    claim(s, c, lambda h: histories.append(h) or No(), campaign="c2")
    here, elsewhere = histories
    assert here.retry_at == T0 + timedelta(hours=1) and not here.in_flight
    assert elsewhere.retry_at is None
    assert here.attempts == elsewhere.attempts == [T0 - timedelta(hours=1)]


def test_refused_on_the_opposition_list_sets_the_contact_opted_out(store: Store) -> None:
    s = store
    c = add(s)
    s.add_optout(NUM, "email", T0)
    s.db.execute("UPDATE contacts SET status = 'pending'")  # a stale status: the hash decides
    got = claim(s, c, lambda h: No() if h.opted_out else Yes())
    assert got.call is None
    assert s.one("SELECT status FROM contacts")["status"] == "opted_out"  # type: ignore
    assert s.open_calls() == []


def test_the_claim_holds_the_write_lock_while_judging(tmp_path: Path) -> None:
    """A second controller on the same file cannot claim while the first one judges."""
    a = Store.open(tmp_path / "s.db", optout_key=b"k")
    b = Store.open(tmp_path / "s.db", optout_key=b"k", busy_timeout_s=0.05)
    c = add(a)

    def meanwhile(h: History) -> Yes:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            claim(b, c)
        return Yes()
    assert claim(a, c, meanwhile).call is not None
    assert claim(b, c, lambda h: No() if h.in_flight else Yes()).call is None
    assert len(b.open_calls()) == 1


def test_open_calls_of_one_node_and_counts(store: Store) -> None:
    s = store
    c, d = add(s), add(s, "+33162000011")
    a = claim(s, c, node="node-a").call
    b = claim(s, d, node="node-b").call
    assert a is not None and b is not None
    assert [r["id"] for r in s.open_calls("node-a")] == [a["id"]]
    assert [r["id"] for r in s.open_calls()] == [a["id"], b["id"]]
    assert s.last_call_id() == b["id"]
    s.finish_unanswered(a["id"], "busy", "17", T0, None)
    s.finish_unanswered(b["id"], "no_answer", "19", T0, None)
    assert s.outcome_counts("c1") == {"busy": 1, "no_answer": 1}
    assert s.outcome_counts("c1", since_id=a["id"]) == {"no_answer": 1}
    assert s.outcome_counts("c2") == {}


def test_outcome_counts_of_the_calls_one_controller_placed(store: Store) -> None:
    s = store
    calls = []
    for number, me in (("+33162000010", "ctl-a"), ("+33162000011", "ctl-b")):
        s.controller_id = me  # as hold_run sets it: written to calls.controller at the claim
        calls.append(claim(s, add(s, number)).call)
    s.controller_id = None
    s.finish_unanswered(calls[0]["id"], "busy", "17", T0, None)
    s.finish_unanswered(calls[1]["id"], "no_answer", "19", T0, None)
    assert s.outcome_counts("c1", controller="ctl-a") == {"busy": 1}
    assert s.outcome_counts("c1", controller="ctl-b") == {"no_answer": 1}
    assert s.outcome_counts("c1", controller="ctl-x") == {}
    assert s.outcome_counts("c1") == {"busy": 1, "no_answer": 1}  # anyone's


def test_last_call_id_of_an_empty_store_is_zero(store: Store) -> None:
    assert store.last_call_id() == 0


def test_migration_2_adds_the_node_column_to_an_existing_store(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("INSERT INTO calls (number, attempt, campaign, started_at) "
                 "VALUES (?, 1, 'old', ?)", (NUM, utc(T0)))
    conn.close()
    s = Store.open(path, optout_key=b"k")
    assert s.version == len(MIGRATIONS) >= 3
    (row,) = s.open_calls()
    assert row["node"] is None and s.open_calls("node-a") == []
    assert row["token_hash"] is None  # 3: an old attempt has no token, no session can open it


def test_an_unknown_outcome_is_refused_by_the_table(store: Store) -> None:
    from ivr.errors import StoreError
    s = store
    got = claim(s, add(s)).call
    assert got is not None
    with pytest.raises(StoreError, match="unknown outcome 'bogus'"):
        s.finish_unanswered(got["id"], "bogus", None, T0, None)


def test_the_claim_reads_the_history_in_one_statement(tmp_path: Path) -> None:
    """SQLite: BEGIN, one history SELECT, the attempt's INSERT with its channel id, COMMIT (it
    was five history queries, then an UPDATE for the channel id); the judge still sees the
    same history as the bulk read gives."""
    s = Store.open(tmp_path / "s.db", optout_key=b"k")
    c = add(s)
    first = claim(s, c, now=T0 - timedelta(hours=1)).call
    assert first is not None
    s.finish_unanswered(first["id"], "busy", "17", T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    bulk = s.history([NUM], T0 - timedelta(days=30), T0 - timedelta(days=60), "c1")[NUM]
    statements: list[str] = []
    s.db.conn.set_trace_callback(statements.append)
    seen: list[History] = []
    second = claim(s, c, lambda h: seen.append(h) or Yes()).call
    s.db.conn.set_trace_callback(None)
    # Trigger steps are traced as repeats of the statement that fired them.
    kinds = [q.split()[0] for i, q in enumerate(statements) if i == 0 or q != statements[i - 1]]
    assert kinds == ["BEGIN", "SELECT", "INSERT", "COMMIT"]
    assert second is not None and second["id"] == first["id"] + 1
    assert (second["state"], second["attempt"]) == ("dialing", 2)
    assert second["channel_id"].startswith(f"ivr-{campaign_tag('c1')}-{second['id']}-")
    assert s.call_by_channel(second["channel_id"])["id"] == second["id"]
    assert seen[0].retry_at == bulk.retry_at == T0 + timedelta(hours=1)
    assert seen[0].attempts == bulk.attempts == [T0 - timedelta(hours=1)]
    assert (seen[0].opted_out, seen[0].in_flight, seen[0].last_refusal) == \
        (bulk.opted_out, bulk.in_flight, bulk.last_refusal) == (False, False, None)
