"""Issue 14 item 1: the PostgreSQL backend's records, contacts and privacy modules give the same
rows as SQLite's for the same inputs (imports, lists, the report, proof, access, erasure,
retention), on a real private PostgreSQL (the `pg_url` fixture)."""
from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import attempt
from ivr.errors import ImportFileError, IvrError
from ivr.records import contacts as contacts_mod
from ivr.records import report
from ivr.records.contacts import import_csv, share_list
from ivr.records.privacy import consent_proof, gdpr_erase, gdpr_export, purge
from ivr.store import CallResult, Store
from ivr.store.pg import PgStore

T0 = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
CALLER = "+33162000000"
KEY = b"test-key"
N = [f"+3319900001{i}" for i in range(10)]  # fiction numbers: N[0] .. N[9]
CSV = ("number,name,city\n"
       f"{N[0]},Alice,Lyon\n{N[1]},Bob,Paris\nnot-a-number,Eve,Nice\n{N[2]},Carol,\n"
       f"{N[3]},Dan,Lille\n{N[1]},Bob,Paris 12e\n{N[4]},Erin,Nantes\n,Nobody,\n")


@pytest.fixture
def both(pg_url: str) -> Iterator[tuple[Store, PgStore]]:
    """A fresh SQLite store and a fresh PostgreSQL one with the same opposition key."""
    pg = PgStore.open(pg_url, optout_key=KEY)
    try:
        yield Store.memory(KEY), pg
    finally:
        pg.close()


CHANNEL = re.compile(r"ivr-[0-9a-f]+-[0-9]+-[0-9a-f]+")


def scrub(value: Any) -> Any:
    """The value with what is random per attempt (channel ids, token hashes) blanked."""
    if isinstance(value, dict):
        return {k: None if k == "token_hash" else scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(v) for v in value)
    return CHANNEL.sub("ivr-channel", value) if isinstance(value, str) else value


def same(stores: tuple[Store, PgStore], run: Callable[[Any], Any]) -> Any:
    """Run `run` on both stores; its results must be equal (but for the random parts of an
    attempt). Returns PostgreSQL's."""
    lite, pg = (run(s) for s in stores)
    assert scrub(pg) == scrub(lite)
    return pg


def table(store: Any, name: str) -> list[dict[str, Any]]:
    """Every row of a table in a fixed order (no parameter: the SQL is the same on both)."""
    order = {"contacts": "id", "calls": "id", "consents": "id", "audit": "id",
             "optouts": "id", "campaign_contacts": "contact_id, campaign"}[name]
    return store.q(f"SELECT * FROM {name} ORDER BY {order}")  # test-only text, no values


def do_import(store: Any, path: Path, campaign: str = "spring", source: str = "list-a",
              now: datetime = T0) -> contacts_mod.ImportReport:
    return import_csv(store, path, campaign=campaign, source=source, basis="consent",
                      acquired_on="2026-01-15", default_region="FR", now=now)


def row_of(store: Any, number: str) -> dict[str, Any]:
    return store.person_data(number)["contacts"][0]  # type: ignore[no-any-return]


def test_import_with_rejects_duplicates_and_opposition_gives_the_same_rows(
        both: tuple[Store, PgStore], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contacts_mod, "BATCH", 2)  # several batches: seen_in_import across them
    path = tmp_path / "list.csv"
    path.write_text(CSV)
    for s in both:
        s.add_optout(N[3], "post", T0)
    first = same(both, lambda s: do_import(s, path))
    assert (first.added, first.merged, first.duplicates, first.opted_out) == (5, 1, 1, 1)
    assert [line for line, _ in first.rejected] == [4, 9]  # a bad and an empty number
    again = same(both, lambda s: do_import(s, path, now=T0 + timedelta(days=1)))
    assert again.added == 0 and again.unchanged == 5
    rows = same(both, lambda s: table(s, "contacts"))
    assert [r["number"] for r in rows] == [N[0], N[1], N[2], N[3], N[4]]
    assert json.loads(rows[1]["extra"]) == {"city": "Paris"}  # a repeat keeps the first value
    assert rows[3]["status"] == "opted_out"
    bound = same(both, lambda s: table(s, "campaign_contacts"))
    assert [(b["campaign"], b["status"]) for b in bound][3] == ("spring", "opted_out")
    same(both, lambda s: s.contacts_by_number([N[0], N[9]]))
    same(both, lambda s: sorted(s.opted_out_among([N[3], N[4]])))
    # The import's connection went back to the pool: later statements run in autocommit.
    assert both[1].q("SELECT to_regclass('pg_temp.ivr_import_seen') AS t") == [{"t": None}]


def test_share_list_binds_once_and_is_audited_alike(both: tuple[Store, PgStore],
                                                    tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(CSV)
    same(both, lambda s: do_import(s, path))
    assert same(both, lambda s: share_list(s, source="list-a", campaign="autumn",
                                           basis="member_file", now=T0,
                                           from_campaign="spring")) == 5
    assert same(both, lambda s: share_list(s, source="list-a", campaign="autumn",
                                           basis="member_file", now=T0,
                                           from_campaign="spring")) == 0
    audit = same(both, lambda s: [(r["action"], r["subject_hash"], r["detail"], r["actor"])
                                  for r in table(s, "audit")])
    shared = [json.loads(d) for a, _, d, _ in audit if a == "list_shared"]
    assert shared == [{"source": "list-a", "from_campaign": "spring", "campaign": "autumn",
                       "basis": "member_file", "contacts": 5},
                      {"source": "list-a", "from_campaign": "spring", "campaign": "autumn",
                       "basis": "member_file", "contacts": 0}]
    for s in both:
        with pytest.raises(ImportFileError, match="no list named 'list-b'"):
            share_list(s, source="list-b", campaign="autumn", basis="consent", now=T0,
                       from_campaign="spring")
    same(both, lambda s: (s.list_exists("list-a", "spring"), s.list_exists("list-b", "spring")))
    same(both, lambda s: s.contact_campaigns(N[0]))
    same(both, lambda s: s.pending_sources("autumn"))


def calls_history(store: Any) -> None:
    """Attempts in two campaigns: answered with each choice, unanswered, one still open."""
    choices = [("consent", "1", "message_played"), ("refusal", "2", "declined"),
               ("optout", "9", "opted_out")]
    for i, (choice, key, outcome) in enumerate(choices):
        call = attempt(store, row_of(store, N[i]), "spring", CALLER, T0 + timedelta(minutes=i))
        result = CallResult(outcome=outcome, stage="question", keys=key,
                            heard={"intro": "a" * 64, "question": "b" * 64}, choice=choice,
                            choice_key=key, answered_prompt="question",
                            answered_sha256="b" * 64, slot=None)
        assert store.finish_answered(call["id"], result, T0 + timedelta(minutes=i, seconds=40))
    busy = attempt(store, row_of(store, N[4]), "spring", CALLER, T0 + timedelta(minutes=5))
    assert store.finish_unanswered(busy["id"], "busy", "17", T0 + timedelta(minutes=6),
                                   retry_at=T0 + timedelta(hours=1))
    attempt(store, row_of(store, N[0]), "autumn", CALLER, T0 + timedelta(minutes=7))


def report_rows(store: Any, campaign: str | None) -> dict[str, Any]:
    out = io.StringIO()
    report.calls_csv(store, out, campaign)
    return {"summary": report.summary(store, campaign), "csv": out.getvalue(),
            "totals": store.call_totals(campaign),
            "per_attempt": store.outcomes_per_attempt(campaign),
            "contacts": store.contacts_per_source(campaign),
            "outcomes": store.outcomes_per_source(campaign),
            "statuses": store.contact_status_counts(campaign),
            "unbound": store.unbound_sources(), "optouts": store.optout_count()}


def test_per_source_counts_and_report_queries_equal_sqlites(both: tuple[Store, PgStore],
                                                            tmp_path: Path) -> None:
    path, other = tmp_path / "list.csv", tmp_path / "other.csv"
    path.write_text(CSV)
    other.write_text(f"number\n{N[5]}\n{N[6]}\n")
    same(both, lambda s: do_import(s, path))
    same(both, lambda s: do_import(s, other, source="list-b"))
    same(both, lambda s: share_list(s, source="list-a", campaign="autumn", basis="consent",
                                    now=T0, from_campaign="spring"))
    for s in both:
        calls_history(s)
    same(both, lambda s: gdpr_erase(s, N[2], T0 + timedelta(hours=2)))  # its call: no source
    for campaign in ("spring", "autumn", None):
        got = same(both, lambda s: report_rows(s, campaign))
    spring = same(both, lambda s: report_rows(s, "spring"))
    assert spring["totals"] == (4, 0)
    assert spring["outcomes"][0] == {"source": None, "outcome": "opted_out", "n": 1}
    assert {(r["source"], r["status"]): r["n"] for r in spring["contacts"]} == {
        ("list-a", "done"): 2, ("list-a", "pending"): 2, ("list-b", "pending"): 2}
    assert got["totals"] == (5, 1) and got["unbound"] == []
    assert same(both, lambda s: [r["contacts"] for r in s.pending_sources("spring")]) == [2, 2]
    same(both, lambda s: [r["number"] for r in s.pending_contacts("spring")])


def test_consent_proof_gdpr_export_and_erasure_leave_nothing(both: tuple[Store, PgStore],
                                                            tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(CSV)
    same(both, lambda s: do_import(s, path))
    for s in both:
        calls_history(s)
    proof = same(both, lambda s: consent_proof(s, N[2]))
    assert [(p["source"], p["kind"]) for p in proof] == [("call", "optout"),
                                                          ("optouts", "optout")]
    assert proof[0]["heard_sha256"] == {"intro": "a" * 64, "question": "b" * 64}
    later = T0 + timedelta(days=1)
    export = same(both, lambda s: gdpr_export(s, N[0], later))
    assert (len(export["calls"]), len(export["consents"]), len(export["campaigns"])) == (2, 1, 1)
    counts = same(both, lambda s: gdpr_erase(s, N[0], later))
    assert counts["calls"] == 2 and counts["wal_checkpointed"] is True
    pg = both[1]
    assert pg.places_holding(N[0]) == [] and pg.unscanned_columns() == []
    assert every_text(pg, N[0]) == [] and raw_pages_holding(pg, N[0]) == []
    assert pg.places_holding(N[1]) == ["contacts.number", "calls.number", "consents.number"]
    same(both, lambda s: consent_proof(s, N[2]))
    same(both, lambda s: gdpr_erase(s, N[2], later))  # an objector: the keyed hash stays
    assert every_text(pg, N[2]) == [] and raw_pages_holding(pg, N[2]) == []
    assert same(both, lambda s: s.optout_of(N[2]))["number"] is None


def every_text(store: PgStore, needle: str) -> list[str]:
    """Independent scan: every column of every table of the schema, as text."""
    found = []
    for t in store.q("SELECT table_name AS t FROM information_schema.tables "
                     "WHERE table_schema = current_schema()"):
        for row in store.q(f'SELECT * FROM "{t["t"]}"'):  # test-only text, no values
            found += [f"{t['t']}.{c}" for c, v in row.items() if needle in str(v)]
    return found


def raw_pages_holding(store: PgStore, needle: str) -> list[str]:
    """Tables and indexes whose raw pages (pageinspect) still hold the number's bytes: a
    deleted or updated row version stays in its page until VACUUM FULL rewrites the table."""
    store.q("CREATE EXTENSION IF NOT EXISTS pageinspect")
    found = []
    for rel in store.q("SELECT c.relname AS r, pg_relation_size(c.oid) / 8192 AS pages "
                       "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'i')"):
        for page in range(int(rel["pages"])):
            raw = store.one("SELECT get_raw_page(%s, %s::int) AS p", (rel["r"], page))
            if raw and needle.encode() in bytes(raw["p"]):
                found.append(rel["r"])
                break
    return found


def test_a_table_without_an_erasure_rule_stops_the_erasure(both: tuple[Store, PgStore]
                                                          ) -> None:
    pg = both[1]
    pg.q("CREATE TABLE leak (id INTEGER, phone TEXT)")
    assert pg.unscanned_columns() == ["leak.id", "leak.phone"]
    with pytest.raises(IvrError, match="leak.id, leak.phone"):
        gdpr_erase(pg, N[0], T0)


def test_purge_deletes_the_same_rows(both: tuple[Store, PgStore], tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(CSV)
    same(both, lambda s: do_import(s, path))
    for s in both:
        calls_history(s)
        s.add_optout(N[7], "post", T0 - timedelta(days=800))
    # Cutoff T0 + 2 min: the first two answered calls and their consents are older.
    counts = same(both, lambda s: purge(s, timedelta(days=30),
                                        T0 + timedelta(days=30, minutes=2)))
    assert (counts["calls"], counts["consents"], counts["optout_numbers_cleared"]) == (2, 2, 1)
    for name in ("contacts", "campaign_contacts", "calls", "consents", "optouts"):
        same(both, lambda s: table(s, name))
    assert same(both, lambda s: purge(s, timedelta(days=1), T0 + timedelta(days=400)))[
        "consents"] == 1


def test_the_calls_export_streams_past_one_page(both: tuple[Store, PgStore]) -> None:
    pg = both[1]
    pg.q("INSERT INTO calls (number, attempt, campaign, started_at) SELECT '+33199000010', 1, "
         "CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END, '2026-03-02T10:00:00.000Z' "
         "FROM generate_series(1, 12001) AS i")
    ids = [r["id"] for r in pg.export_calls()]
    assert ids == list(range(1, 12002))
    assert [r["id"] for r in pg.export_calls("a")] == list(range(2, 12002, 2))


def snapshot_rows(store: Any) -> list[dict[str, Any]]:
    """The snapshot rows but for their stamp: PostgreSQL's is its own clock's, with the age on
    it (`age_s`), SQLite's the controller's (`checked_stamps` checks both)."""
    return [{k: v for k, v in r.items() if k not in ("at", "age_s")}
            for r in store.snapshots("spring")]


def checked_stamps(both: tuple[Store, PgStore], lite_at: dict[str, str]) -> None:
    """SQLite keeps the controller's stamp; PostgreSQL stamps now on its clock, age ~0."""
    lite, pg = both
    assert {r["controller"]: r["at"] for r in lite.snapshots("spring")} == lite_at
    now = datetime.now(timezone.utc)
    for r in pg.snapshots("spring"):
        assert abs((datetime.fromisoformat(r["at"].replace("Z", "+00:00")) - now)
                   .total_seconds()) < 30, r
        assert 0 <= r["age_s"] < 30, r


def console_reads(store: Any) -> dict[str, Any]:
    return {"campaigns": store.campaigns(), "recent": store.recent_calls("spring", limit=3),
            "hourly": store.calls_per_hour("spring"), "lists": store.lists_of("spring"),
            "page": store.contacts_page("spring", limit=2, offset=1),
            "opposed": store.contacts_page("spring", status="opted_out"),
            "of_list": store.contacts_page("spring", source="list-b"),
            "snapshots": snapshot_rows(store), "control": store.run_control("spring"),
            "users": store.users(), "audit": store.audit_log(limit=50)}


def console_history(store: Any) -> None:
    store.set_run_control("spring", max_concurrent=5, by="alice", now=T0)
    store.set_run_control("spring", desired="paused", calls_per_second=0.1, by="bob",
                          now=T0 + timedelta(seconds=1))
    store.publish_snapshot("spring", "ctl-b", {"in_flight": 2, "état": "en cours"}, T0)
    store.publish_snapshot("spring", "ctl-a", {"in_flight": 1}, T0)
    store.publish_snapshot("spring", "ctl-a", {"in_flight": 0}, T0 + timedelta(seconds=2))
    store.set_run_control("winter", by=None, now=T0)
    assert store.add_user("zoé", "viewer", "hash-z", T0) == 1
    assert store.add_user("Alice", "admin", "hash-a", T0) == 2
    store.set_user("zoé", role="operator", disabled=True)
    store.add_api_token("Alice", "t" * 64, T0)


def test_the_console_part_gives_the_same_rows(both: tuple[Store, PgStore],
                                              tmp_path: Path) -> None:
    path, other = tmp_path / "list.csv", tmp_path / "other.csv"
    path.write_text(CSV)
    other.write_text(f"number\n{N[5]}\n")
    same(both, lambda s: do_import(s, path))
    same(both, lambda s: do_import(s, other, source="list-b"))
    for s in both:
        s.add_optout(N[4], "post", T0)
        calls_history(s)
        console_history(s)
    got = same(both, console_reads)
    checked_stamps(both, {"ctl-a": "2026-03-02T10:00:02.000Z",
                          "ctl-b": "2026-03-02T10:00:00.000Z"})
    assert got["campaigns"] == ["autumn", "spring", "winter"]
    assert [r["id"] for r in got["recent"]] == [4, 3, 2]
    assert got["control"]["desired"] == "paused" and got["control"]["calls_per_second"] == 0.1
    assert [(r["controller"], r["snapshot"]) for r in got["snapshots"]] == [
        ("ctl-a", {"in_flight": 0}), ("ctl-b", {"in_flight": 2, "état": "en cours"})]
    assert [u["name"] for u in got["users"]] == ["Alice", "zoé"]
    assert [r["number"] for r in got["opposed"]] == [N[2], N[4]]
    assert [(r["source"], r["status"], r["n"]) for r in got["lists"]] == [
        ("list-a", "done", 2), ("list-a", "opted_out", 2), ("list-a", "pending", 1),
        ("list-b", "pending", 1)]
    same(both, lambda s: (s.user_by_token("t" * 64, T0 + timedelta(hours=1)),
                          s.user_by_name("zoé"), s.user_by_token("x" * 64, T0)))
    for s in both:
        with pytest.raises(ValueError, match="exists already"):
            s.add_user("Alice", "admin", "h", T0)
        with pytest.raises(ValueError, match="does not exist"):
            s.set_user("nobody", role="viewer")


@pytest.fixture
def both_icu(pg_cluster: Any, pg_url: str) -> Iterator[tuple[Store, PgStore]]:
    """As `both`, on a database whose text collation is ICU French (as a server initialised
    in a French locale would have): orderings must still be SQLite's."""
    name = f"{pg_url.rsplit('/', 1)[1]}_icu"
    with pg_cluster.admin() as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu "
                     "ICU_LOCALE 'fr-FR' LOCALE 'C.UTF-8'")  # test-only text, no values
    pg = PgStore.open(pg_cluster.url_for(name), optout_key=KEY)
    try:
        assert pg.one("SELECT 'b' < 'B' AS icu")["icu"] is True  # not C: lower case first
        yield Store.memory(KEY), pg
    finally:
        pg.close()
        pg_cluster.drop_database(name)


def test_orderings_are_sqlites_whatever_the_databases_collation(
        both_icu: tuple[Store, PgStore], tmp_path: Path) -> None:
    for source, numbers in (("list-b", N[:3]), ("List-a", N[3:5]), ("_list", N[5:6])):
        path = tmp_path / f"{source}.csv"
        path.write_text("number\n" + "\n".join(numbers) + "\n")
        for campaign in ("spring", "Autumn"):
            same(both_icu, lambda s: do_import(s, path, campaign=campaign, source=source))
    for s in both_icu:
        calls_history(s)
        s.add_user("bob", "viewer", "h", T0)
        s.add_user("Alice", "viewer", "h", T0)
        s.publish_snapshot("spring", "b-ctl", {}, T0)
        s.publish_snapshot("spring", "B-ctl", {}, T0)
    got = same(both_icu, lambda s: {
        "per_source": s.contacts_per_source("spring"), "all": s.contacts_per_source(None),
        "pending": s.pending_sources("spring"), "outcomes": s.outcomes_per_source("spring"),
        "campaigns": s.contact_campaigns(N[0]), "names": s.campaigns(), "users": s.users(),
        "lists": s.lists_of("spring"), "snapshots": snapshot_rows(s)})
    assert [r["source"] for r in got["pending"]] == ["List-a", "_list"]  # C order
    assert got["names"] == ["Autumn", "autumn", "spring"]
    assert [u["name"] for u in got["users"]] == ["Alice", "bob"]
    assert [r["controller"] for r in got["snapshots"]] == ["B-ctl", "b-ctl"]


def test_the_rewrite_after_an_erasure_waits_for_no_long_transaction(
        both: tuple[Store, PgStore], pg_url: str, tmp_path: Path) -> None:
    """A transaction holding a table makes checkpoint_wal give up (False, as SQLite's busy
    checkpoint) instead of queueing every controller behind it; the next call rewrites it."""
    import psycopg
    pg = both[1]
    path = tmp_path / "list.csv"
    path.write_text(CSV)
    do_import(pg, path)
    pg.reclaim_lock_wait_ms = 200
    with psycopg.connect(pg_url) as other:
        other.execute("LOCK TABLE contacts IN ACCESS SHARE MODE")  # a long reader
        counts = gdpr_erase(pg, N[0], T0)
        assert counts["contacts"] == 1 and counts["wal_checkpointed"] is False
        assert sorted(raw_pages_holding(pg, N[0])) == ["contacts", "contacts_number_key"]
    with pg.transaction():
        assert pg.checkpoint_wal() is False  # VACUUM cannot run inside a transaction
    assert pg.checkpoint_wal() is True
    assert raw_pages_holding(pg, N[0]) == []
    assert pg.one("SHOW lock_timeout") == {"lock_timeout": "0"}  # the pool's setting is back


def test_a_failed_batch_leaves_nothing_of_what_it_queued(both: tuple[Store, PgStore]) -> None:
    """An import session queues its rows; a failed transaction or savepoint drops them, the
    others are written, as SQLite would have written them at once."""
    def add(s: Any, number: str) -> None:
        s.add_contact(number, name=None, timezone=None, source="s", basis="consent",
                      acquired_on=None, extra="{}", status="pending", now=T0)
        s.mark_seen_in_import(number)

    def session(s: Any) -> tuple[Any, ...]:
        with s.import_session():
            with pytest.raises(RuntimeError):
                with s.transaction():
                    add(s, N[0])
                    raise RuntimeError("the batch failed")
            with s.transaction():
                add(s, N[1])
                with pytest.raises(RuntimeError):
                    with s.transaction():  # a savepoint
                        add(s, N[2])
                        raise RuntimeError("one line failed")
                add(s, N[3])
            add(s, N[4])  # autocommit: written at once
            seen = s.seen_in_import(N[:5])
        return sorted(seen), table(s, "contacts")

    seen, rows = same(both, session)
    assert seen == [N[1], N[3], N[4]] and [r["number"] for r in rows] == [N[1], N[3], N[4]]
