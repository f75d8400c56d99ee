"""report.csv per block of 8,192 call ids (schema 11: call_chunks, kept by triggers): after
any sequence of changes, the download over the blocks kept from the last one is byte for byte
a fresh report.calls_csv, and only the blocks the changes touched were rendered again (the
others are sent as kept). On both backends; the migration fills the versions of an older
store; PostgreSQL's fold of gone connections' rows keeps each block's version."""
from __future__ import annotations

import io
import random
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conftest import add_contact
from test_report_csv_export import PHONES, TEXTS, reference
from ivr.store.schema import MIGRATIONS
from ivr.records import report
from ivr.store import Store, pg_export, sqlite_export
from ivr.store.base import Chunk, RunOwner

T0 = "2026-12-01T10:00:00.000Z"
KEYS = ("c1", "c2", None)  # each campaign's download, and every campaign's


def block(call_id: int) -> int:
    return call_id >> 13


class Downloads:
    """Each key's kept blocks, as the console keeps them; counts the blocks rendered."""

    def __init__(self, store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.store, self.kept = store, {k: {} for k in KEYS}  # type: dict[Any, dict[int, Chunk]]
        self.rendered: list[int] = []
        real = store._render_range

        def spy(campaign, lo, hi, render, first):  # type: ignore[no-untyped-def]
            self.rendered.append(block(lo))
            assert hi == lo + 8191 and lo % 8192 == 0
            return real(campaign, lo, hi, render, first)
        monkeypatch.setattr(store, "_render_range", spy)

    def check(self, touched: dict[Any, set[int]]) -> None:
        """Every key's download is the reference; exactly `touched[key]` rendered again."""
        for key in KEYS:
            out, fresh = io.BytesIO(), {}  # type: io.BytesIO, dict[int, Chunk]
            self.rendered.clear()
            n = report.calls_csv_kept(self.store, out, key, self.kept[key], fresh)
            assert (out.getvalue(), n) == reference(self.store, key), key
            assert sorted(self.rendered) == sorted(touched.get(key, set())), key
            again = {b for b, c in fresh.items() if self.kept[key].get(b) is not c}
            assert again == touched.get(key, set()), key
            self.kept[key] = fresh


def call_row(rnd: random.Random, call_id: int, campaign: str, contacts: list[int]
             ) -> dict[str, Any]:
    def odd(plain: str | None) -> str | None:
        return plain if rnd.random() < 0.8 else rnd.choice([t for t in TEXTS if t is not None])
    return {"id": call_id, "contact_id": rnd.choice(contacts + [None]), "campaign": campaign,
            "number": rnd.choice(PHONES), "attempt": rnd.choice([1, 2, 3]),
            "channel_id": f"ivr-{call_id}", "started_at": T0, "ended_at": odd(T0),
            "outcome": odd("busy"), "stage": odd("intro"), "keys": "1",
            "hangup_cause": odd("16"), "prompts_sha256": '{"intro": "ab"}',
            "caller_id": odd("+33100000000")}


def fill(store: Any, rnd: random.Random) -> tuple[list[int], set[int]]:
    contacts = [add_contact(store, PHONES[i % 4][:-2] + f"{i:02d}", at=T0,
                            source=["list", "a,b", "=evil", "é"][i % 4])["id"]
                for i in range(8)]
    ids: set[int] = set()
    for b in (0, 1, 3):
        for _ in range(12):
            ids.add(b * 8192 + rnd.randrange(1, 8192))
    for call_id in sorted(ids):
        store.db["calls"].insert(call_row(rnd, call_id, rnd.choice(["c1", "c2"]), contacts))
    return contacts, ids


def campaign_blocks(store: Any, sql: str, params: tuple[Any, ...]) -> dict[Any, set[int]]:
    """The blocks of the calls `sql` selects (id, campaign), per key (None: all)."""
    out: dict[Any, set[int]] = {k: set() for k in KEYS}
    for r in store.q(sql, params):
        out[r["campaign"]].add(block(r["id"]))
        out[None].add(block(r["id"]))
    return out


def change(store: Any, rnd: random.Random, contacts: list[int], ids: set[int]
           ) -> dict[Any, set[int]]:
    """One random change, as a run, the console or a tool makes it; the blocks it touched."""
    kind = rnd.choice(["insert", "update", "delete", "erase", "source", "new block"])
    camp = rnd.choice(["c1", "c2"])
    if kind in ("insert", "new block"):
        b = rnd.choice([0, 1, 3]) if kind == "insert" else max(block(i) for i in ids) + 2
        call_id = next(i for i in iter(lambda: b * 8192 + rnd.randrange(8192), None)
                       if i not in ids and i > 0)
        ids.add(call_id)
        store.db["calls"].insert(call_row(rnd, call_id, camp, contacts))
        return {camp: {b}, None: {b}}
    if kind == "erase":  # `ivr gdpr erase`: the number's calls and its contact
        cid = rnd.choice(contacts)
        number = store.one("SELECT number FROM contacts WHERE id = ?", (cid,))["number"]
        touched = campaign_blocks(store, "SELECT id, campaign FROM calls WHERE number = ? OR "
                                  "contact_id = ?", (number, cid))
        with store.transaction():
            store.erase_person(number, erased_number="+00000000000", erased_text="[erased]")
        contacts.remove(cid)
        return touched
    if kind == "source":  # a contact's list renamed by SQL: the CSV joins it
        cid = rnd.choice(contacts)
        touched = campaign_blocks(store, "SELECT id, campaign FROM calls WHERE contact_id = ?",
                                  (cid,))
        store.db.execute("UPDATE contacts SET source = ? WHERE id = ?",
                         (f"renamed,{rnd.random()}", cid))
        return touched
    call_id = rnd.choice(sorted(ids))
    touched = campaign_blocks(store, "SELECT id, campaign FROM calls WHERE id = ?", (call_id,))
    if kind == "delete":
        ids.remove(call_id)
        store.db.execute("DELETE FROM consents WHERE call_id = ?", (call_id,))
        store.db.execute("DELETE FROM calls WHERE id = ?", (call_id,))
    elif rnd.random() < 0.5:  # an old call's hangup cause, as the AMI's Hangup event sets it
        store.set_hangup_cause(call_id, f"cause-{rnd.random()}")
    else:
        store.db.execute("UPDATE calls SET outcome = ? WHERE id = ?",
                         (rnd.choice(["declined", "say \"no\"", "=x"]) + str(call_id),
                          call_id))
    return touched


@pytest.mark.parametrize("seed", [1, 2])
def test_only_the_changed_blocks_are_rendered_again(store: Any, seed: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_export, "BATCH", 5)  # several batches per block
    monkeypatch.setattr(pg_export, "BATCH", 5)
    rnd = random.Random(seed)
    contacts, ids = fill(store, rnd)
    d = Downloads(store, monkeypatch)
    d.check(campaign_blocks(store, "SELECT id, campaign FROM calls", ()))  # all, the first time
    d.check({})  # nothing committed: every block as kept
    kinds = 0
    for _ in range(14):
        if not contacts:
            break
        d.check(change(store, rnd, contacts, ids))
        kinds += 1
    assert kinds >= 10
    # another campaign's change leaves a campaign's download untouched
    other = next(i for i in sorted(ids) if store.one(
        "SELECT campaign FROM calls WHERE id = ?", (i,))["campaign"] == "c2")
    store.set_hangup_cause(other, "41")
    d.check({"c2": {block(other)}, None: {block(other)}})


def test_a_block_left_empty_and_a_new_block_after_a_gap(store: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for call_id in (5, 8200, 40000):
        store.db["calls"].insert({"id": call_id, "number": "+33123", "attempt": 1,
                                  "campaign": "c1", "started_at": T0})
    d = Downloads(store, monkeypatch)
    d.check({"c1": {0, 1, 4}, None: {0, 1, 4}})
    store.db.execute("DELETE FROM calls WHERE id = 8200")
    d.check({"c1": {1}, None: {1}})
    store.db["calls"].insert({"id": 2 ** 40, "number": "+33123", "attempt": 1,
                              "campaign": "c2", "started_at": T0})
    d.check({"c2": {2 ** 27}, None: {2 ** 27}})
    assert d.kept["c1"][1] == Chunk(d.kept["c1"][1].version, 0, b"")


def test_a_store_of_schema_10_gets_its_block_versions(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A store as schema 10 left it (what migration 11 adds taken away), filled, then opened:
    migration 11 gives every block of every campaign a version."""
    path = tmp_path / "old.db"
    old = Store.open(path, optout_key=b"k")
    old.db.conn.executescript(
        "DROP TRIGGER call_counts_bound; DROP TRIGGER call_counts_unbound; "
        "DROP TRIGGER call_counts_rebound; "  # 19, first: they name what goes
        "DROP TRIGGER call_chunks_insert; DROP TRIGGER call_chunks_update; "
        "DROP TRIGGER call_chunks_delete; DROP TRIGGER call_chunks_contact_source; "
        "DROP TRIGGER call_chunks_contact_gone; DROP TABLE call_chunks; "
        "DROP INDEX contacts_plus; DROP INDEX campaign_contacts_plus; DROP INDEX calls_plus; "
        "DROP INDEX calls_caller_id; DROP INDEX consents_plus; DROP INDEX consents_caller_id; "
        "DROP INDEX consents_contact; "  # migration 12
        "ALTER TABLE users DROP COLUMN session_epoch; "  # 13
        "ALTER TABLE api_tokens DROP COLUMN revoked_at; "  # 14
        "DROP TABLE optout_key; "  # 15
        "DROP INDEX calls_open; "  # 16
        "DROP INDEX run_snapshots_at; "  # 17
        "DROP TABLE erasure_holds; "  # 18
        "PRAGMA user_version = 10")
    rnd = random.Random(5)
    contacts, ids = fill(old, rnd)
    old.db.conn.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 10
    again = Store.open(path, optout_key=b"k")
    assert again.version == len(MIGRATIONS)
    versions = {(r["campaign"], r["block"]) for r in again.q("SELECT * FROM call_chunks")}
    assert versions == {(r["campaign"], block(r["id"])) for r in again.q(
        "SELECT id, campaign FROM calls")} and len(versions) >= 5
    d = Downloads(again, monkeypatch)
    d.check(campaign_blocks(again, "SELECT id, campaign FROM calls", ()))
    d.check(change(again, rnd, contacts, ids))


def test_a_postgresql_store_of_schema_10_gets_its_block_versions(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from store_sql import PgTestStore
    old = PgTestStore.open(pg_url, optout_key=b"test-key")
    old.db.execute("DROP TABLE call_chunks CASCADE")
    old.db.execute("DROP FUNCTION call_chunks_calls, call_chunks_contacts CASCADE")
    old.db.execute("DROP FUNCTION call_chunks_bump")
    old.db.execute("DROP INDEX contacts_plus, campaign_contacts_plus, calls_plus, "  # 12
                   "calls_caller_id, consents_plus, consents_caller_id, consents_contact")
    old.db.execute("ALTER TABLE users DROP COLUMN session_epoch")  # 13
    old.db.execute("ALTER TABLE api_tokens DROP COLUMN revoked_at")  # 14
    old.db.execute("DROP TABLE optout_key")  # 15
    old.db.execute("DROP INDEX calls_open")  # 16
    old.db.execute("DROP INDEX run_snapshots_at")  # 17
    old.db.execute("DROP TABLE erasure_holds")  # 18
    old.db.execute("DROP TRIGGER call_counts_bound ON campaign_contacts")  # 19
    old.db.execute("DROP TRIGGER call_counts_rebound ON campaign_contacts")
    old.db.execute("DELETE FROM schema_version WHERE version >= 11")
    rnd = random.Random(6)
    contacts, ids = fill(old, rnd)
    old.close()
    again = PgTestStore.open(pg_url, optout_key=b"test-key")
    try:
        assert again.version == len(MIGRATIONS)
        rows = again.q("SELECT campaign, block, slot, version FROM call_chunks")
        assert {(r["campaign"], r["block"]) for r in rows} == {
            (r["campaign"], block(r["id"])) for r in again.q("SELECT id, campaign FROM calls")}
        d = Downloads(again, monkeypatch)
        d.check(campaign_blocks(again, "SELECT id, campaign FROM calls", ()))
        d.check(change(again, rnd, contacts, ids))
    finally:
        again.close()


def sums(pg: Any) -> dict[tuple[str, int], int]:
    return {(r["campaign"], r["block"]): int(r["v"]) for r in pg.q(
        "SELECT campaign, block, SUM(version) AS v FROM call_chunks GROUP BY 1, 2")}


def gone_from_activity(store: Any, pids: list[int], within_s: float = 30.0) -> None:
    """Until none of `pids` is in pg_stat_activity: a closed connection's backend exits
    a moment after its client, and the fold takes only slots whose backend is gone."""
    deadline = time.monotonic() + within_s
    while store.q("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)):
        assert time.monotonic() < deadline, f"backends {pids} still listed after {within_s} s"
        time.sleep(0.05)


def test_the_fold_of_gone_connections_keeps_each_blocks_version(
        pg_store: Any, pg_store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each connection bumps rows of its own; once it is gone the fold sums them into slot 0:
    each block's version is unchanged, so every kept block is still sent as kept."""
    pids: list[int] = []
    for k in range(4):  # four connections, each writing (and then leaving) into each block
        with psycopg.connect(pg_store_url, autocommit=True) as conn:
            pids.append(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
            for b in (0, 2):
                conn.execute("INSERT INTO calls (id, number, attempt, campaign, started_at) "
                             "VALUES (%s, '+33123', 1, 'c1', %s)", (b * 8192 + 10 + k, T0))
            conn.execute("UPDATE calls SET outcome = 'busy' WHERE id = 10")
    gone_from_activity(pg_store, pids)  # a backend leaves pg_stat_activity after its client
    before = sums(pg_store)
    assert pg_store.one("SELECT COUNT(*) AS n FROM call_chunks")["n"] > len(before) == 2
    d = Downloads(pg_store, monkeypatch)
    kept: dict[int, Chunk] = {}
    report.calls_csv_kept(pg_store, io.BytesIO(), "c1", {}, kept)
    d.kept["c1"] = kept
    owner = RunOwner(1, "host", datetime(2026, 12, 1, tzinfo=timezone.utc))
    with pg_store.hold_run(owner, "c1"):
        assert sums(pg_store) == before
        assert pg_store.one("SELECT COUNT(*) AS n FROM call_chunks")["n"] == len(before)
        assert {r["slot"] for r in pg_store.q("SELECT slot FROM call_chunks")} == {0}
        out: dict[int, Chunk] = {}
        d.rendered.clear()
        report.calls_csv_kept(pg_store, io.BytesIO(), "c1", kept, out)
        assert d.rendered == [] and all(out[b] is kept[b] for b in out)
        pg_store.set_hangup_cause(2 * 8192 + 11, "17")  # writes go on after the fold
        report.calls_csv_kept(pg_store, io.BytesIO(), "c1", out, {})
        assert d.rendered == [2]


def test_a_contact_deleted_under_its_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite without foreign keys (an in-memory store, a tool's connection) lets a called
    contact go: its calls' source field empties, their blocks are rendered again."""
    s = Store.memory()
    contacts, ids = fill(s, random.Random(7))
    d = Downloads(s, monkeypatch)
    d.check(campaign_blocks(s, "SELECT id, campaign FROM calls", ()))
    gone = next(c for c in contacts if s.q("SELECT id FROM calls WHERE contact_id = ?", (c,)))
    touched = campaign_blocks(s, "SELECT id, campaign FROM calls WHERE contact_id = ?", (gone,))
    s.db.execute("DELETE FROM campaign_contacts WHERE contact_id = ?", (gone,))
    s.db.execute("DELETE FROM contacts WHERE id = ?", (gone,))
    d.check(touched)


def test_a_postgresql_download_holds_no_transaction_and_a_change_meanwhile_is_rendered_next(
        pg_store: Any, pg_store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A download paused by a slow client holds no transaction (an erasure's VACUUM FULL gets
    its lock at once); a block changed after the versions were read is kept under the older
    version, so the next download renders it again and gives the store's bytes."""
    monkeypatch.setattr(pg_export, "BATCH", 5)
    with psycopg.connect(pg_store_url, autocommit=True) as conn:
        for call_id in (5, 6, 8192 + 5, 8192 + 6):
            conn.execute("INSERT INTO calls (id, number, attempt, campaign, started_at) "
                         "VALUES (%s, '+33123', 1, 'c1', %s)", (call_id, T0))
    d = Downloads(pg_store, monkeypatch)
    d.check({"c1": {0, 1}, None: {0, 1}})
    pg_store.set_hangup_cause(5, "16")  # block 0 changed: rendered by the next download
    fresh: dict[int, Chunk] = {}
    chunks = pg_store.export_calls_csv_kept("c1", report._line, d.kept["c1"], fresh)
    next(chunks)  # the versions are read and block 0 is on its way: the client pauses here
    with psycopg.connect(pg_store_url, autocommit=True) as other:
        other.execute("SET lock_timeout = '1s'")
        other.execute("VACUUM FULL calls")  # LockNotAvailable if the download held a lock
        other.execute("UPDATE calls SET hangup_cause = '17' WHERE id = 8192 + 6")  # block 1
    list(chunks)  # block 1 is rendered after the change, under the version read before it
    d.kept["c1"] = fresh
    d.check({"c1": {1}, None: {0, 1}})  # c1: block 1 again; the others' first download


def test_the_blocks_gathered_stop_at_the_memory_bound(store: Any) -> None:
    """Past `fresh_max` bytes the download keeps nothing (a campaign too big to keep must
    not be held whole and then dropped): the bytes sent are unchanged."""
    for call_id in (5, 8192 + 5, 2 * 8192 + 5):
        store.db["calls"].insert({"id": call_id, "number": "+33123", "attempt": 1,
                                  "campaign": "c1", "started_at": T0})
    out, fresh = io.BytesIO(), {}  # type: io.BytesIO, dict[int, Chunk]
    n = report.calls_csv_kept(store, out, "c1", {}, fresh, fresh_max=150)
    assert (out.getvalue(), n) == reference(store, "c1") and fresh == {}
    out, fresh = io.BytesIO(), {}
    report.calls_csv_kept(store, out, "c1", {}, fresh, fresh_max=10_000)
    assert out.getvalue() == reference(store, "c1")[0] and sorted(fresh) == [0, 1, 2]
