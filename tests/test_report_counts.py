"""The report from the store's kept call counts (schema 10: call_counts, maintained by
triggers) is the report as it was computed before, from every calls row: the same dict, the
same JSON bytes, on both backends, over a store that moved in every way the counts must
follow (several campaigns, calls without a contact, an erased contact, open calls, an outcome
set later, a call deleted, a contact's list renamed, an opposed contact, unknown values), and
after the migration that fills call_counts from an older store's calls."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from conftest import add_contact
from ivr.callflow import outcomes as outcome_table
from ivr.records.report import NO_CONTACT, summary
from ivr.store import Store
from ivr.store.schema import MIGRATIONS

TS = "2026-03-04T10:00:00.000Z"
CAMPAIGNS = ("spring", "autumn", "winter")


def reference(store: Any, campaign: str | None) -> dict[str, Any]:
    """The report as before schema 10, from every row read back and counted here: calls by
    their campaign's binding's list, else their contact's, as it is now (none when the contact
    row is gone), a campaign's contacts by their binding (an opposed number as opted_out), the
    whole store's by contact."""
    ordered = outcome_table.ordered
    contacts = {r["id"]: r for r in store.q("SELECT id, source, status FROM contacts")}
    calls = [r for r in store.q("SELECT contact_id, attempt, campaign, outcome FROM calls")
             if campaign is None or r["campaign"] == campaign]
    if campaign is None:
        kept = [(k["source"], k["status"]) for k in contacts.values()]
    else:
        kept = [(b["source"], "opted_out" if contacts[b["contact_id"]]["status"] ==
                 "opted_out" else b["status"])
                for b in store.q("SELECT contact_id, source, status FROM campaign_contacts "
                                 "WHERE campaign = ?", (campaign,))]
    per_source: dict[str, Any] = {}
    by_status: dict[str, int] = {}
    for source, status in sorted(set(kept)):
        n = kept.count((source, status))
        e = per_source.setdefault(source, {"contacts": 0, "outcomes": {}, "statuses": {}})
        e["contacts"] += n
        e["statuses"][status] = n
        by_status[status] = by_status.get(status, 0) + n
    # A call's list: its campaign's binding's (schema 19), else its contact's, else none.
    bound = {(b["contact_id"], b["campaign"]): b["source"] for b in store.q(
        "SELECT contact_id, campaign, source FROM campaign_contacts")}
    ended = [(bound.get((c["contact_id"], c["campaign"]), contacts[c["contact_id"]]["source"])
              if c["contact_id"] in contacts else None, c["attempt"], c["outcome"])
             for c in calls if c["outcome"] is not None]
    for source, outcome in sorted({(s, o) for s, _, o in ended},
                                  key=lambda so: (so[0] is not None, so[0] or "", so[1])):
        key = source if source is not None else NO_CONTACT
        e = per_source.setdefault(key, {"contacts": 0, "outcomes": {}, "statuses": {}})
        e["outcomes"][outcome] = sum(1 for s, _, o in ended if (s, o) == (source, outcome))
    for e in per_source.values():
        e["outcomes"] = ordered(e["outcomes"])
    outcomes = ordered({o: sum(1 for _, _, x in ended if x == o) for _, _, o in ended})
    human = sum(n for o, n in outcomes.items() if o in outcome_table.HUMAN_ANSWERED)
    said_yes = sum(outcomes.get(o, 0) for o in outcome_table.CONSENTED)
    statuses = {s: 0 for s in outcome_table.CONTACT_STATUSES}
    statuses.update({s: by_status[s] for s in sorted(by_status)})
    return {
        "campaign": campaign, "attempts": len(calls),
        "in_flight": sum(1 for c in calls if c["outcome"] is None), "outcomes": outcomes,
        "answered": sum(n for o, n in outcomes.items() if o in outcome_table.ANSWERED),
        "human_answered": human, "consents": said_yes,
        "consent_rate": round(said_yes / human, 4) if human else None,
        "completion_rate": round(outcomes.get("message_played", 0) / said_yes, 4)
        if said_yes else None,
        "per_attempt": {a: ordered({o: sum(1 for _, b, x in ended if (b, x) == (a, o))
                                    for _, b, o in ended if b == a})
                        for a in sorted({a for _, a, _ in ended})},
        "per_source": per_source, "contacts": statuses,
        "optouts": store.one("SELECT COUNT(*) AS n FROM optouts")["n"],
    }


def call(store: Any, contact_id: int | None, attempt: int, campaign: str,
         outcome: str | None) -> None:
    store.db.execute("INSERT INTO calls (contact_id, number, attempt, campaign, started_at, "
                     "outcome) VALUES (?, '+33199000099', ?, ?, ?, ?)",
                     (contact_id, attempt, campaign, TS, outcome))


def fill_store(store: Any) -> list[int]:
    """Contacts of three lists in several campaigns, and calls of every kind."""
    ids = []
    for i in range(12):
        ids.append(add_contact(store, f"+331990001{i:02d}", at=TS, source=f"list{i % 3}",
                               status=("done", "pending", "weird-status")[i % 3],
                               campaigns=CAMPAIGNS[:1 + i % 3])["id"])
    outcomes = ["message_played", "declined", "no_answer", "busy", "machine", None,
                "unheard-of", "message_partial", "opted_out", "no_input"]
    for i in range(60):
        who = None if i % 11 == 0 else ids[i % len(ids)]
        call(store, who, 1 + i % 3, CAMPAIGNS[i % 3], outcomes[i % len(outcomes)])
    return ids


def move_everything(store: Any, ids: list[int]) -> None:
    """Every kind of change the counts must follow after the calls were written."""
    open_call = store.one("SELECT id FROM calls WHERE outcome IS NULL ORDER BY id")["id"]
    store.db.execute("UPDATE calls SET outcome = 'busy' WHERE id = ?", (open_call,))
    store.db.execute("UPDATE calls SET attempt = 4, campaign = 'winter' WHERE id = 2")
    store.db.execute("UPDATE calls SET contact_id = ? WHERE id = 3", (ids[5],))
    store.db.execute("DELETE FROM calls WHERE id = 4")
    store.db.execute("UPDATE contacts SET source = 'renamed' WHERE id = ?", (ids[1],))
    store.db.execute("UPDATE contacts SET status = 'opted_out' WHERE id = ?", (ids[2],))
    number = store.one("SELECT number FROM contacts WHERE id = ?", (ids[7],))["number"]
    with store.transaction():
        store.erase_person(number, erased_number="+00000000000", erased_text="[erased]")
    store.db.execute("INSERT INTO optouts (number_hash, number, via, created_at) "
                     "VALUES ('h1', NULL, 'phone-key', ?)", (TS,))


def assert_same_reports(store: Any) -> None:
    for campaign in (*CAMPAIGNS, "unknown", None):
        got, want = summary(store, campaign), reference(store, campaign)
        assert got == want, campaign
        assert json.dumps(got) == json.dumps(want), campaign  # the same bytes: the same order


def test_the_kept_counts_give_the_report_as_before(store: Any) -> None:
    ids = fill_store(store)
    assert_same_reports(store)
    move_everything(store, ids)
    assert_same_reports(store)
    # The counts really moved: erased, renamed, deleted and later outcomes all show.
    data = summary(store, None)
    assert data["attempts"] == 59 and data["in_flight"] == 5
    assert NO_CONTACT in data["per_source"] and "renamed" in data["per_source"]
    assert data["per_source"]["renamed"]["outcomes"] and data["optouts"] == 1


def test_a_store_of_schema_9_gets_its_counts_from_its_calls(tmp_path: Path) -> None:
    """A store as schema 9 left it (what migration 10 adds taken away), filled with calls
    and contacts, then opened: migration 10 counts its calls."""
    path = tmp_path / "old.db"
    old = Store.open(path, optout_key=b"k")
    old.db.conn.executescript(
        "DROP TRIGGER call_counts_bound; DROP TRIGGER call_counts_unbound; "
        "DROP TRIGGER call_counts_rebound; "  # 19, first: they name what goes
        "DROP TRIGGER call_counts_insert; DROP TRIGGER call_counts_update; "
        "DROP TRIGGER call_counts_delete; DROP TRIGGER call_counts_add; "
        "DROP TRIGGER call_counts_contact_source; DROP TRIGGER call_counts_contact_gone; "
        "DROP VIEW call_counts_bump; DROP TABLE call_counts; DROP INDEX contacts_status; "
        "DROP INDEX campaign_contacts_source; DROP TRIGGER call_chunks_insert; "
        "DROP TRIGGER call_chunks_update; DROP TRIGGER call_chunks_delete; "
        "DROP TRIGGER call_chunks_contact_source; DROP TRIGGER call_chunks_contact_gone; "
        "DROP TABLE call_chunks; "
        "DROP INDEX contacts_plus; DROP INDEX campaign_contacts_plus; DROP INDEX calls_plus; "
        "DROP INDEX calls_caller_id; DROP INDEX consents_plus; DROP INDEX consents_caller_id; "
        "DROP INDEX consents_contact; "  # migration 12
        "ALTER TABLE users DROP COLUMN session_epoch; "  # 13
        "ALTER TABLE api_tokens DROP COLUMN revoked_at; "  # 14
        "DROP TABLE optout_key; "  # 15
        "DROP INDEX calls_open; "  # 16
        "DROP INDEX run_snapshots_at; "  # 17
        "DROP TABLE erasure_holds; "  # 18
        "PRAGMA user_version = 9")
    ids = fill_store(old)
    old.db.conn.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 9
    again = Store.open(path, optout_key=b"k")
    assert again.version == len(MIGRATIONS)
    assert_same_reports(again)
    move_everything(again, ids)
    assert_same_reports(again)


def test_a_contact_deleted_under_its_calls_leaves_them_without_one() -> None:
    """SQLite without foreign keys (an in-memory store, a tool's connection) lets a called
    contact go: its calls then count as without a contact, as the join said before."""
    s = Store.memory()
    ids = fill_store(s)
    s.db.execute("DELETE FROM campaign_contacts WHERE contact_id = ?", (ids[4],))
    s.db.execute("DELETE FROM contacts WHERE id = ?", (ids[4],))
    assert s.one("SELECT COUNT(*) AS n FROM calls WHERE contact_id = ?", (ids[4],))["n"] > 0
    assert_same_reports(s)


def test_postgresql_keeps_the_plan_of_a_calls_list_lookup(pg_store_url: str) -> None:
    """Schema 22: the counts' trigger looks a call's list up in PL/pgSQL, whose plan the
    server keeps for the session (a LANGUAGE sql function with a FROM was parsed and planned
    again in each transaction: three times a call). A store of schema 21 gets it on upgrade,
    and the counts stay the report's."""
    from store_sql import PgTestStore
    from ivr.store.schema_lists import PG_19

    def language(s: Any) -> str:
        return s.one("SELECT l.lanname AS lang FROM pg_proc p JOIN pg_language l ON l.oid = "
                     "p.prolang WHERE p.proname = 'call_source'")["lang"]
    old = PgTestStore.open(pg_store_url, optout_key=b"test-key")
    assert language(old) == "plpgsql"
    # Back to schema 21: migration 19's functions again, 22 and later not recorded.
    old.one(PG_19.split("CREATE OR REPLACE FUNCTION call_counts_contacts")[0] + "SELECT 1 AS x")
    old.one("WITH gone AS (DELETE FROM schema_version WHERE version >= 22 RETURNING version) "
            "SELECT MIN(version) AS v FROM gone")
    assert language(old) == "sql"
    old.close()
    again = PgTestStore.open(pg_store_url, optout_key=b"test-key")
    try:
        assert again.version == len(MIGRATIONS) and language(again) == "plpgsql"
        assert again.one("SELECT COUNT(*) AS n FROM schema_version WHERE version = 22")["n"] == 1
        ids = fill_store(again)
        assert_same_reports(again)
        move_everything(again, ids)  # a call's contact and campaign changed, an outcome set
        assert_same_reports(again)
    finally:
        again.close()
