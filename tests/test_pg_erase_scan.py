"""PostgreSQL erasure: the leftover scan reads the big tables through their number index and
their free-text columns only (twin of SQLite's SCANS) and still finds every place a full read
finds; the console's rewrite of the changed tables runs after the answer (web/app.py), once
for a burst of erasures, and leaves no byte of the number in any page."""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from ivr.errors import IvrError
from ivr.records.privacy import gdpr_erase
from ivr.store.pg import PgStore
from ivr.store.pg_privacy import BIG_SCANS, SCANNED_TABLES
from ivr.store.sqlite_privacy import SCANS as SQLITE_SCANS

from test_pg_records import raw_pages_holding
from test_web_erase_scan import refused_and_unchanged

T = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
N = "+33612345678"


@pytest.fixture
def pg(pg_store: PgStore) -> PgStore:
    return pg_store


def add(store: PgStore, number: str, source: str = "list") -> int:
    row = store.one("INSERT INTO contacts (number, source, created_at, updated_at) "
                    "VALUES (%s, %s, 'x', 'x') RETURNING id", (number, source))
    assert row is not None
    store.q("INSERT INTO campaign_contacts (contact_id, campaign, source, bound_at) "
            "VALUES (%s, 'c', %s, 'x')", (row["id"], source))
    store.q("INSERT INTO calls (contact_id, number, attempt, campaign, started_at) "
            "VALUES (%s, %s, 1, 'c', 'x')", (row["id"], number))
    return int(row["id"])


def test_each_big_table_scan_searches_sqlites_columns_and_knows_every_column(
        pg: PgStore) -> None:
    for table, sql in BIG_SCANS.items():
        searched, typed = SQLITE_SCANS[table][1], SQLITE_SCANS[table][2]
        cols = [r["c"] for r in pg.q(
            "SELECT column_name AS c FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name = %s ORDER BY ordinal_position", (table,))]
        assert set(cols) == set(searched) | set(typed), table
        for col in searched:
            assert f"strpos({col}, %(n)s)" in sql, f"{table}.{col}"
        assert not re.search(r"strpos\((?!" + "|".join(searched) + r")\w+,", sql), table
    tables = {r["t"] for r in pg.q("SELECT table_name AS t FROM information_schema.tables "
                                   "WHERE table_schema = current_schema()")}
    assert tables - set(SCANNED_TABLES) == set()
    assert pg.unscanned_columns() == []
    pg.q("ALTER TABLE calls ADD COLUMN note TEXT")  # a new column of a known big table
    assert pg.unscanned_columns() == ["calls.note"]
    with pytest.raises(IvrError, match="calls.note"):
        gdpr_erase(pg, N, T)


@pytest.mark.parametrize("table,column,sql", [
    ("calls", "channel_id", "INSERT INTO calls (number, attempt, campaign, started_at, "
     "channel_id) VALUES ('+33199000010', 1, 'demo', 'x', 'Local/' || %s || '@ivr-sim;1')"),
    ("calls", "number", "INSERT INTO calls (number, attempt, campaign, started_at) "
     "VALUES (%s, 1, 'demo', 'x')"),
    ("calls", "hangup_cause", "INSERT INTO calls (number, attempt, campaign, started_at, "
     "hangup_cause) VALUES ('+33199000010', 1, 'demo', 'x', 'cause ' || %s)"),
    ("contacts", "extra", "INSERT INTO contacts (number, source, extra, created_at, "
     "updated_at) VALUES ('+3319900001' || (SELECT COUNT(*) FROM contacts), 'l', "
     "'{\"mobile\": \"' || %s || '\"}', 'x', 'x')"),
    ("consents", "caller_id", "INSERT INTO consents (kind, at, caller_id) "
     "VALUES ('consent', 'x', %s)"),
    ("consents", "number", "INSERT INTO consents (kind, at, number) VALUES ('consent', 'x', %s)"),
    ("campaign_contacts", "source", "INSERT INTO campaign_contacts (contact_id, campaign, "
     "source, bound_at) VALUES (1, 'c' || (SELECT COUNT(*) FROM campaign_contacts), "
     "'list of ' || %s, 'x')"),
    ("users", "name", "INSERT INTO users (name, role, password_hash, created_at) "
     "VALUES ('leak ' || %s, 'viewer', 'h', 'x')"),
])
def test_a_leak_is_found_as_a_whole_number_only(pg: PgStore, table: str, column: str,
                                                sql: str) -> None:
    add(pg, "+33199000099")
    pg.q(sql, (N,))
    assert pg.places_holding(N) == [f"{table}.{column}"]
    assert pg.places_holding(N[:-1]) == []  # a prefix of it is another number
    pg.q(sql.replace("(SELECT COUNT(*)", "1 + (SELECT COUNT(*)"), (N + "1",))
    assert pg.places_holding(N + "1") == [f"{table}.{column}"]  # the longer one is not N
    assert pg.places_holding(N) == [f"{table}.{column}"]
    if column == "number":  # the erasure's own rules cover a number column
        assert gdpr_erase(pg, N, T)["wal_checkpointed"] is True
        assert pg.places_holding(N) == []
        return
    if column == "extra":  # and another contact's extra cell naming the person: removed
        assert gdpr_erase(pg, N, T)["extra_cells_cleared"] == 1
        assert pg.places_holding(N) == []
        assert pg.places_holding(N + "1") == [f"{table}.{column}"]  # another number's: kept
        return
    with pytest.raises(IvrError, match=f"{table}.{column}"):
        gdpr_erase(pg, N, T)
    assert pg.places_holding(N) == [f"{table}.{column}"]  # nothing changed


def test_the_erasure_still_finds_every_copy_through_the_indexed_scan(pg: PgStore) -> None:
    add(pg, N)
    add(pg, N + "9")  # a longer number: another person
    assert pg.places_holding(N) == ["contacts.number", "calls.number"]
    counts = gdpr_erase(pg, N, T)
    assert (counts["contacts"], counts["calls"], counts["wal_checkpointed"]) == (1, 1, True)
    assert pg.places_holding(N) == []
    assert pg.places_holding(N + "9") == ["contacts.number", "calls.number"]


def test_the_consoles_store_rewrites_after_the_answer(pg_store_url: str) -> None:
    from ivr.web.app import Stores
    stores = Stores(lambda: PgStore.open(pg_store_url, optout_key=b"test-key"))
    store = stores.get()
    try:
        assert store.reclaim_in_background is True and PgStore.reclaim_in_background is False
    finally:
        store.close()


def test_the_consoles_rewrite_follows_the_answer_once_for_a_burst(pg: PgStore) -> None:
    pg.reclaim_in_background, pg.reclaim_delay_s = True, 0.5
    numbers = [f"+3361234567{i}" for i in range(3)]
    for n in numbers:
        add(pg, n)
    vacuums = []
    real = pg._exec

    def spy(sql: str, params: object = ()) -> int:
        if sql.startswith("VACUUM FULL"):
            vacuums.append(sql)
        return real(sql, params)  # type: ignore[arg-type]
    pg._exec = spy  # type: ignore[method-assign]
    for n in numbers:  # answered before any rewrite: each says it is not done yet
        assert gdpr_erase(pg, n, T)["wal_checkpointed"] is False
    assert vacuums == []
    assert "contacts" in raw_pages_holding(pg, numbers[0])  # the old row versions, still there
    deadline = time.monotonic() + 30
    while pg._reclaimer is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pg._reclaimer is None and pg._reclaim == frozenset()
    assert sorted(vacuums) == ["VACUUM FULL calls", "VACUUM FULL contacts"]  # once each
    for n in numbers:
        assert raw_pages_holding(pg, n) == [] and pg.places_holding(n) == []


def test_the_consoles_rewrite_waits_for_a_pause_in_the_stores_use(pg: PgStore) -> None:
    """Requests keep coming: the rewrite waits (its locks would hold them up) until
    reclaim_max_wait_s; left alone, the store is rewritten after reclaim_delay_s."""
    import threading
    pg.reclaim_in_background, pg.reclaim_delay_s, pg.reclaim_max_wait_s = True, 1.5, 6.0
    add(pg, N)
    stop = threading.Event()

    def console() -> None:  # a request every 50 ms
        while not stop.wait(0.05):
            pg.q("SELECT 1 AS x")
    busy = threading.Thread(target=console)
    busy.start()
    try:
        started = time.monotonic()
        assert gdpr_erase(pg, N, T)["wal_checkpointed"] is False
        time.sleep(3.5)
        assert pg._reclaim == frozenset({"contacts", "calls"})  # not while busy
        while pg._reclaimer is not None and time.monotonic() < started + 30:
            time.sleep(0.1)
        assert pg._reclaim == frozenset() and time.monotonic() - started >= 6.0
    finally:
        stop.set()
        busy.join()
    assert raw_pages_holding(pg, N) == []


@pytest.fixture
def pg_icu(pg_cluster: Any, pg_url: str) -> Iterator[PgStore]:
    """A database whose collation is ICU French, as a server initialised in a French locale."""
    name = f"{pg_url.rsplit('/', 1)[1]}_erase_icu"
    with pg_cluster.admin() as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu "
                     "ICU_LOCALE 'fr-FR' LOCALE 'C.UTF-8'")
    store = PgStore.open(pg_cluster.url_for(name), optout_key=b"test-key")
    try:
        yield store
    finally:
        store.close()
        pg_cluster.drop_database(name)


@pytest.mark.parametrize("number", ["+33612345679", "+33612345670", "+33699999999"])
def test_the_scan_finds_a_number_ending_in_any_digit_under_any_collation(
        pg_icu: PgStore, number: str) -> None:
    # A range [number, number with its last digit + 1) on the index was empty for a number
    # ending in 9 outside the C collation (':' sorts before the digits there).
    add(pg_icu, number)
    pg_icu.q("INSERT INTO consents (call_id, contact_id, number, kind, key, at, campaign) "
             "SELECT id, contact_id, number, 'consent', '1', 'x', 'c' FROM calls")
    assert pg_icu.places_holding(number) == ["contacts.number", "calls.number",
                                             "consents.number"]


# A row of each big table with its required columns; the test sets one searched column.
BASE: dict[str, dict[str, object]] = {
    "contacts": {"number": "+33199000001", "source": "l", "created_at": "x", "updated_at": "x"},
    "campaign_contacts": {"contact_id": 0, "campaign": "c2", "source": "l", "bound_at": "x"},
    "calls": {"number": "+33199000010", "attempt": 1, "campaign": "demo", "started_at": "x"},
    "consents": {"kind": "consent", "at": "x"},
}


def crowd(store: PgStore) -> int:
    """Rows around the leak: caller IDs the per-value walk must step past, numbers next to N
    (one holding N's digits then more), an erased call."""
    contact = add(store, "+33199000099")
    for i, caller in enumerate(("+33100000001", None, f'"Mairie" <{N}0>', "+33900000009")):
        store.q("INSERT INTO calls (number, attempt, campaign, started_at, caller_id, "
                "channel_id) VALUES (%s, 1, 'demo', 'x', %s, %s)",
                (N[:-1] + str(i), caller, f"ivr-0-{i}-ab"))
        store.q("INSERT INTO consents (kind, at, number, caller_id) VALUES "
                "('consent', 'x', %s, %s)", (N + str(i), caller))
    store.q("INSERT INTO calls (number, attempt, campaign, started_at) "
            "VALUES ('erased', 1, 'demo', 'x')")
    return contact


@pytest.mark.parametrize("table,column", [  # the names: their own rule (test_web_erase_scan)
    (t, c) for t in BASE for c in SQLITE_SCANS[t][1]
    if (t, c) not in {("contacts", "name"), ("campaign_contacts", "name")}])
def test_a_number_hidden_in_any_searched_column_of_a_big_table_stops_the_erasure(
        pg: PgStore, table: str, column: str) -> None:
    """Every searched column of the four big tables, now read through an index (a bare
    number by equality, caller_id per distinct value, any other text through the '+' partial
    index): a copy of N there is found, as a whole number only, and the erasure changes
    nothing. A number column holds N by design: the copy there is typed by hand."""
    contact = crowd(pg)
    text = f"{N} (typed by hand)" if column == "number" else f"left by a tool: {N};"
    row = {**BASE[table], column: text}
    if table == "campaign_contacts":
        row["contact_id"] = contact
    pg.q(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))})",
         tuple(row.values()))
    refused_and_unchanged(pg, table, column)


def test_the_big_tables_are_read_through_their_indexes_only(pg: PgStore) -> None:
    """The plans, with sequential scans priced out: none is left, so each '*_plus' index's
    WHERE is what the statement asks (a word of difference and the planner could not prove
    the index holds every row the statement wants: it would read every row)."""
    crowd(pg)

    def plan(sql: str) -> str:
        with pg.transaction():
            pg.q("SET LOCAL enable_seqscan = off")
            return "\n".join(r["QUERY PLAN"] for r in pg.q("EXPLAIN " + sql, {"n": N}))
    for table, sql in BIG_SCANS.items():
        assert f"Seq Scan on {table}" not in plan(sql), plan(sql)
        assert f"{table}_plus" in plan(sql), plan(sql)
    erase = plan(
        "DELETE FROM consents WHERE number = %(n)s OR "
        "contact_id = ANY(ARRAY(SELECT id FROM contacts WHERE number = %(n)s)) OR call_id = "
        "ANY(ARRAY(SELECT id FROM calls WHERE number = %(n)s OR contact_id = ANY(ARRAY("
        "SELECT id FROM contacts WHERE number = %(n)s))))")
    assert "Seq Scan on consents" not in erase, erase


def test_a_copy_committed_while_the_erasure_runs_stops_it(pg: PgStore,
                                                          pg_store_url: str) -> None:
    """The scan runs in the erasure's transaction, after its own changes: a copy another
    connection commits meanwhile (here, between the erasure's statements and its scan) is
    seen, and the erasure rolls back."""
    add(pg, N)
    other = PgStore.open(pg_store_url, optout_key=b"test-key")
    real = pg.erase_person

    def erase_then_leak(number: str, **kw: Any) -> dict[str, int]:
        counts = real(number, **kw)
        other.q("INSERT INTO calls (number, attempt, campaign, started_at, amd_status) "
                "VALUES ('+33199000010', 1, 'demo', 'x', %s)", (f"NOTSURE {N}",))
        return counts
    pg.erase_person = erase_then_leak  # type: ignore[method-assign]
    try:
        with pytest.raises(IvrError, match="calls.amd_status;"):
            gdpr_erase(pg, N, T)
    finally:
        other.close()
    assert pg.places_holding(N) == ["contacts.number", "calls.number", "calls.amd_status"]
