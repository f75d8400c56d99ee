"""The console's erasure: the leftover scan on SQLite reads only the rows holding the number's
text (fast over a big store), and still finds exactly the places a full read finds."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

import pytest

from ivr.records.privacy import gdpr_erase
from ivr.store import Store
from ivr.errors import IvrError

from conftest import add_contact

T = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
N = "+33612345678"


def test_leftover_scan_finds_every_place_and_only_whole_numbers() -> None:
    s = Store.memory()
    add_contact(s, N, at=T)
    add_contact(s, N + "9", at=T)  # a longer number: not the same person
    s.add_user(f"leak {N}", "viewer", "h", T)  # a number where no erasure rule expects one
    assert s.places_holding(N) == ["contacts.number", "audit.detail", "users.name"]
    assert s.places_holding(N + "9") == ["contacts.number"]
    assert s.places_holding(N[:-1]) == []  # a prefix of both numbers is neither
    with pytest.raises(IvrError, match="users.name"):
        gdpr_erase(s, N, T)
    assert s.places_holding(N) == ["contacts.number", "audit.detail", "users.name"]  # kept
    assert gdpr_erase(s, N + "9", T)["contacts"] == 1
    assert s.places_holding(N + "9") == []


def test_every_column_is_searched_or_typed_and_each_statement_searches_its_columns() -> None:
    from ivr.store.sqlite_privacy import SCANS
    s = Store.memory()
    assert s.unscanned_columns() == []
    for table, (sql, searched, typed) in SCANS.items():
        cols = [r[1] for r in s.db.conn.execute(f"PRAGMA table_info({table})")]
        assert [c for c in cols if c in searched] == list(searched), table  # schema order
        assert set(cols) == set(searched) | set(typed), table
        for col in searched:
            assert f"instr({col}, :n)" in sql or f"{col} >= :n AND {col} < :above" in sql, \
                f"{table}.{col}"
    s.db.conn.execute("ALTER TABLE calls ADD COLUMN note TEXT")  # a new column of a known table
    assert s.unscanned_columns() == ["calls.note"]
    with pytest.raises(IvrError, match="calls.note"):
        gdpr_erase(s, N, T)


@pytest.mark.parametrize("table,column,sql", [
    ("calls", "channel_id", "INSERT INTO calls (number, attempt, campaign, started_at, "
     "channel_id) VALUES ('+33199000010', 1, 'demo', 'x', 'Local/' || ? || '@ivr-sim;1')"),
    ("calls", "number", "INSERT INTO calls (number, attempt, campaign, started_at) "
     "VALUES (?, 1, 'demo', 'x')"),
    ("contacts", "extra", "INSERT INTO contacts (number, source, extra, created_at, "
     "updated_at) VALUES ('+3319900001' || (SELECT COUNT(*) FROM contacts), 'l', "
     "'{\"mobile\": \"' || ? || '\"}', 'x', 'x')"),
    ("consents", "caller_id", "INSERT INTO consents (kind, at, caller_id) "
     "VALUES ('consent', 'x', ?)"),
    ("campaign_contacts", "source", "INSERT INTO campaign_contacts (contact_id, campaign, "
     "source, bound_at) VALUES (1, 'c' || (SELECT COUNT(*) FROM campaign_contacts), "
     "'list of ' || ?, 'x')"),
])
def test_a_leak_in_a_big_table_is_found(table: str, column: str, sql: str) -> None:
    s = Store.memory()
    add_contact(s, "+33199000099", at=T)
    s.db.conn.execute(sql, (N,))
    assert s.places_holding(N) == [f"{table}.{column}"]
    assert s.places_holding(N[:-1]) == []  # a prefix of it is another number
    s.db.conn.execute(sql, (N + "1",))  # a longer number holding N's digits is not N
    assert s.places_holding(N + "1") == [f"{table}.{column}"]
    assert s.places_holding(N) == [f"{table}.{column}"]


# A row of each big table with its required columns; the test sets one searched column.
BASE: dict[str, dict[str, object]] = {
    "contacts": {"number": "+33199000001", "source": "l", "created_at": "x", "updated_at": "x"},
    "campaign_contacts": {"contact_id": 1, "campaign": "c2", "source": "l", "bound_at": "x"},
    "calls": {"number": "+33199000010", "attempt": 1, "campaign": "demo", "started_at": "x"},
    "consents": {"kind": "consent", "at": "x"},
}
# contacts.name and a binding's name (schema 25) have an erasure rule of their own (the
# number's text goes, the name stays: test_rights_named_in_extra), so a copy there no longer
# stops the erasure
OWN_RULE = {("contacts", "name"), ("campaign_contacts", "name")}
BIG_COLUMNS = [(t, c) for t in BASE for c in __import__(
    "ivr.store.sqlite_privacy", fromlist=["SCANS"]).SCANS[t][1] if (t, c) not in OWN_RULE]


def crowded_store() -> Store:
    """Rows around the leak: caller IDs the per-value walk must step past, numbers next to N."""
    s = Store.memory()
    add_contact(s, "+33199000099", at=T)
    for i, caller in enumerate(("+33100000001", None, f'"Mairie" <{N}0>', "+33900000009")):
        s.db.conn.execute("INSERT INTO calls (number, attempt, campaign, started_at, caller_id, "
                          "channel_id) VALUES (?, 1, 'demo', 'x', ?, ?)",
                          (N[:-1] + str(i), caller, f"ivr-0-{i}-ab"))
        s.db.conn.execute("INSERT INTO consents (kind, at, number, caller_id) VALUES "
                          "('consent', 'x', ?, ?)", (N + str(i), caller))
    return s


@pytest.mark.parametrize("table,column", BIG_COLUMNS)
def test_a_number_hidden_in_any_searched_column_of_a_big_table_stops_the_erasure(
        table: str, column: str) -> None:
    """Every searched column of the four big tables, each now read through an index (a
    number column's, caller_id's per distinct value, or the '+' partial index): a copy of N
    there is found, as a whole number only, and the erasure changes nothing."""
    s = crowded_store()
    # A number column holds N by design (the erasure's rules cover it): a copy typed by hand.
    text = f"{N} (typed by hand)" if column == "number" else f"left by a tool: {N};"
    row = {**BASE[table], column: text}
    s.db.conn.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES "
                      f"({', '.join('?' * len(row))})", tuple(row.values()))
    refused_and_unchanged(s, table, column)


def refused_and_unchanged(s: Any, table: str, column: str) -> None:
    """The copy of N put in table.column (either backend) is found there, its prefix is not,
    and the erasure refuses naming it, changing nothing."""
    places = [f"{table}.{column}"] + (  # the report's counts and blocks copy a campaign
        ["call_counts.campaign", "call_chunks.campaign"] if f"{table}.{column}" ==
        "calls.campaign" else [])
    assert s.places_holding(N) == places
    assert s.places_holding(N[:-1]) == []  # its prefix (also N[:-1] + digit nearby) is not it
    before = s.q(f"SELECT COUNT(*) AS n FROM {table}")
    with pytest.raises(IvrError, match=f"nothing changed: the number is also in "
                                       f"{', '.join(places)};"):
        gdpr_erase(s, N, T)
    assert s.places_holding(N) == places
    assert s.q(f"SELECT COUNT(*) AS n FROM {table}") == before


def test_the_big_tables_are_read_through_their_indexes_only() -> None:
    """The plans: no big table is read row by row (a '*_plus' index whose WHERE differs from
    the statement's by a word would fall back to reading every row)."""
    from ivr.store.sqlite_privacy import SCANS
    s = crowded_store()
    p = {"n": N, "above": N[:-1] + "9"}
    for table in BASE:
        plan = [r[3] for r in s.db.conn.execute("EXPLAIN QUERY PLAN " + SCANS[table][0], p)]
        assert not [line for line in plan if re.fullmatch(r"SCAN \w+", line)
                    and line != "SCAN d"], (table, plan)
        if table != "campaign_contacts":  # a number column's index, and the '+' rows'
            assert any(f"INDEX {table}_plus" in line for line in plan), (table, plan)
    erase = [r[3] for r in s.db.conn.execute(
        "EXPLAIN QUERY PLAN DELETE FROM consents WHERE number = :n OR contact_id IN (SELECT id "
        "FROM contacts WHERE number = :n) OR call_id IN (SELECT id FROM calls WHERE number = :n "
        "OR contact_id IN (SELECT id FROM contacts WHERE number = :n))", {"n": N})]
    assert "SCAN consents" not in erase, erase
