"""The console's erasure: the leftover scan on SQLite reads only the rows holding the number's
text (fast over a big store), and still finds exactly the places a full read finds."""
from __future__ import annotations

from datetime import datetime, timezone

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
