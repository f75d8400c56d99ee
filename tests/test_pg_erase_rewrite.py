"""PostgreSQL erasure as a DBA hosts it. A role that does not own the tables (the app role of
an owner/app split: SELECT, INSERT, UPDATE, DELETE only) cannot VACUUM FULL them: the server
skipped the rewrite with a WARNING and the erasure said `wal_checkpointed: true` while the
number stayed in a dead row version. Now it says the rewrite was refused and why, in one line.
A rewrite that timed out on a lock used to print SQLite's -wal advice, and following it did
nothing (the second erasure changed no row, so rewrote nothing): now it rewrites the tables
an earlier erasure left with dead row versions."""
from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from conftest import shipped_config
from ivr.cli import cli
from ivr.store.pg import PgStore

from test_pg_erase_scan import add
from test_pg_records import raw_pages_holding

N = "+33612345678"
KEY = b"k" * 32


def erase(cfg_file: Path, number: str) -> tuple[dict[str, Any], list[str]]:
    """`ivr gdpr erase`: its JSON counts and its other lines (the warnings)."""
    result = CliRunner().invoke(cli, ["--config", str(cfg_file), "gdpr", "erase", number])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    return json.loads(lines[0]), lines[1:]


def wait_for_dead_rows(pg: PgStore, table: str) -> None:
    """The earlier erasure's dead row versions counted by the statistics (flushed within
    about a second, or when its process ends, as a CLI run does)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        row = pg.one("SELECT n_dead_tup AS d FROM pg_stat_user_tables WHERE relname = %s",
                     (table,))
        if row and row["d"]:
            return
        time.sleep(0.2)
    raise AssertionError(f"no dead row counted in {table}")


@pytest.fixture
def owner(pg_store_url: str, pg_cluster: Any, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[PgStore]:
    """The tables' owner (the cluster's superuser, which ran the migrations), the key the
    CLI uses (IVR_OPTOUT_KEY)."""
    monkeypatch.setenv("IVR_OPTOUT_KEY", KEY.decode())
    store = PgStore.open(pg_store_url, optout_key=KEY)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def app_role(owner: PgStore, pg_store_url: str, pg_cluster: Any,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """(role, url): a login role with the data privileges only, as a DBA grants them."""
    role, password = f"app_{secrets.token_hex(4)}", secrets.token_hex(12)
    db = pg_store_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_store_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public "
                     f"TO {role}")
        conn.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}")
        conn.execute(f"GRANT CONNECT, TEMP ON DATABASE {db} TO {role}")
    monkeypatch.setenv("IVR_STORE_PASSWORD", password)
    try:
        yield role, pg_store_url.replace("//ivr@", f"//{role}@")
    finally:
        with psycopg.connect(pg_store_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE usename = %s", (role,))
            conn.execute(f"REASSIGN OWNED BY {role} TO ivr")
            conn.execute(f"DROP OWNED BY {role}")
        with pg_cluster.admin() as conn:
            conn.execute(f"DROP ROLE {role}")


def test_a_role_not_owning_the_tables_does_not_claim_the_rewrite_and_says_why(
        owner: PgStore, app_role: tuple[str, str], tmp_path: Path) -> None:
    role, url = app_role
    add(owner, N)
    cfg_file = shipped_config(tmp_path, {"url": url})
    counts, warnings = erase(cfg_file, N)
    assert counts["contacts"] == 1
    assert counts["wal_checkpointed"] is False  # was True: the server had skipped the VACUUM
    assert counts["rewrite_refused"] == {"role": role, "tables": ["calls", "contacts"]}
    assert len(warnings) == 1 and "-wal" not in warnings[0]
    assert f"OWNER TO {role}" in warnings[0] and "contacts" in warnings[0]
    assert "contacts" in raw_pages_holding(owner, N)  # what the warning says: still on disk
    # Doing what it says: the role owns the tables; the same erasure again rewrites them.
    for table in ("contacts", "calls", "consents", "optouts", "audit"):
        owner.q(f"ALTER TABLE {table} OWNER TO {role}")
    wait_for_dead_rows(owner, "contacts")
    counts, warnings = erase(cfg_file, N)
    assert counts["wal_checkpointed"] is True and "rewrite_refused" not in counts
    assert warnings == []
    assert raw_pages_holding(owner, N) == []


def test_the_erasure_again_after_a_rewrite_that_timed_out_rewrites(
        owner: PgStore, pg_store_url: str, pg_cluster: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_STORE_PASSWORD", pg_cluster.password())
    monkeypatch.setattr(PgStore, "reclaim_lock_wait_ms", 200)
    add(owner, N)
    cfg_file = shipped_config(tmp_path, {"url": pg_store_url})
    with psycopg.connect(pg_store_url) as other:
        other.execute("LOCK TABLE contacts IN ACCESS SHARE MODE")  # a long reader
        first, warnings = erase(cfg_file, N)
    assert first["contacts"] == 1 and first["wal_checkpointed"] is False
    assert "contacts" in raw_pages_holding(owner, N)
    wait_for_dead_rows(owner, "contacts")  # the first process's statistics reached the server
    again, _ = erase(cfg_file, N)  # what the warning advises: a second process, no row changed
    assert raw_pages_holding(owner, N) == []  # was ['contacts', 'contacts_number_key']
    assert again["contacts"] == 0 and again["wal_checkpointed"] is True
    assert len(warnings) == 1 and "-wal" not in warnings[0] and "ivr.db" not in warnings[0]
    assert "lock" in warnings[0] and f"ivr gdpr erase {N}" in warnings[0]


def test_the_consoles_erasure_by_such_a_role_warns_at_once(
        owner: PgStore, app_role: tuple[str, str]) -> None:
    """The console answers before its rewrite (a thread of the store): the tables the role may
    not rewrite are known before, and its answer carries the CLI's warning."""
    from types import SimpleNamespace

    from ivr.records.privacy import gdpr_erase
    from ivr.web.api import erase_warning
    role, url = app_role
    add(owner, N)
    app = PgStore.open(url, optout_key=KEY)
    try:
        app.reclaim_in_background = True
        result = {"number": N, **gdpr_erase(app, N, datetime.now(timezone.utc))}
        assert result["rewrite_refused"] == {"role": role, "tables": ["calls", "contacts"]}
        assert app._reclaimer is None  # nothing it may rewrite: no thread retrying in vain
    finally:
        app.close()
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(
        cfg=SimpleNamespace(store=SimpleNamespace(path="ivr.db")))))
    warning = erase_warning(request, app, result)  # type: ignore[arg-type]
    assert warning and f"OWNER TO {role}" in warning and f"ivr gdpr erase {N}" in warning


def test_an_erasure_rewrites_what_it_changed_not_every_table_with_dead_rows(
        owner: PgStore) -> None:
    """Before (e7a09d0): every table with dead row versions was rewritten, and a live
    campaign's calls always has some (an outcome written): each erasure held the claims
    behind a VACUUM FULL of calls (16 s on 3,000,000 calls)."""
    from ivr.records.privacy import gdpr_erase
    from ivr.store.pg_reclaim import FILENODE
    other = add(owner, "+33612345679")
    owner.q("INSERT INTO contacts (number, source, created_at, updated_at) "
            "VALUES (%s, 'list', 'x', 'x')", (N,))  # never called: no call row to erase
    owner.q("UPDATE calls SET outcome = 'no_answer' WHERE contact_id = %s", (other,))
    wait_for_dead_rows(owner, "calls")
    calls_file = owner.one(FILENODE, {"t": "calls"})
    counts = gdpr_erase(owner, N, datetime.now(timezone.utc))
    assert (counts["contacts"], counts["calls"], counts["wal_checkpointed"]) == (1, 0, True)
    assert owner.one(FILENODE, {"t": "calls"}) == calls_file  # not rewritten
    assert raw_pages_holding(owner, N) == []


def test_an_erasure_whose_rewrite_never_ran_is_finished_by_the_next(
        owner: PgStore, pg_store_url: str, pg_cluster: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The console answers before its rewrite; restarted before the rewrite ran (or a Ctrl-C
    during the CLI's VACUUM FULL), the erasure had owed nothing (d2fd2f3): erasing again said
    done while the number stayed on disk. The debt is now written with the erasure."""
    from ivr.records.privacy import gdpr_erase
    monkeypatch.setenv("IVR_STORE_PASSWORD", pg_cluster.password())
    add(owner, N)
    console = PgStore.open(pg_store_url, optout_key=KEY)
    console.reclaim_in_background = True
    console.reclaim_delay_s = console.reclaim_max_wait_s = 3600.0  # never, before the restart
    try:
        assert gdpr_erase(console, N, datetime.now(timezone.utc))["wal_checkpointed"] is False
    finally:
        console.close()  # the console restarted: its thread never rewrote
    assert "contacts" in raw_pages_holding(owner, N)
    again, warnings = erase(shipped_config(tmp_path, {"url": pg_store_url}), N)
    assert (again["contacts"], again["wal_checkpointed"], warnings) == (0, True, [])
    assert raw_pages_holding(owner, N) == []


def test_the_audit_rows_keyed_hash_leaves_the_disk_with_the_erasure(owner: PgStore) -> None:
    """Found in review: clearing the audit's subject_hash (a keyed hash, a pseudonym brute
    force reverses) was not counted among the erasure's changes, so audit was not rewritten
    and its old row versions kept the hash on disk."""
    from ivr.records.privacy import gdpr_erase
    add(owner, N)
    owner.audit("consent_viewed", N, {"rows": 0}, datetime.now(timezone.utc))
    digest = owner.number_hash(N)
    assert owner.one("SELECT count(*) AS n FROM audit WHERE subject_hash = %s", (digest,))["n"]
    counts = gdpr_erase(owner, N, datetime.now(timezone.utc))
    assert counts["wal_checkpointed"] is True
    assert raw_pages_holding(owner, digest) == [] and raw_pages_holding(owner, N) == []


def test_an_erasure_in_a_schema_whose_name_needs_quotes(pg_url: str) -> None:
    """Found in review: the erasure's catalogue reads cast current_schema() to regnamespace,
    which folds case and refuses a '-': in a schema "Ivr-T" every erasure died at its first
    statement with a traceback."""
    from ivr.records.privacy import gdpr_erase
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "Ivr-T"')
    sep = "&" if "?" in pg_url else "?"
    store = PgStore.open(f"{pg_url}{sep}options=-csearch_path%3D%22Ivr-T%22", optout_key=KEY)
    try:
        assert store.one("SELECT current_schema() AS s")["s"] == "Ivr-T"
        add(store, N)
        counts = gdpr_erase(store, N, datetime.now(timezone.utc))
        assert (counts["contacts"], counts["wal_checkpointed"]) == (1, True)
        assert store.one("SELECT count(*) AS n FROM contacts")["n"] == 0
    finally:
        store.close()


def test_an_erasure_committed_after_a_later_one_is_still_rewritten(owner: PgStore,
                                                                   pg_store_url: str) -> None:
    """Found in review: the rewrite marked done every owed row up to the highest id it saw.
    Ids are drawn at insert, not at commit: an erasure whose owed row (a lower id) committed
    after another erasure's rewrite was taken as covered, and if its own rewrite never ran
    (the process killed), its tables kept the number's dead rows for good."""
    from ivr.store.pg_reclaim import DONE, LEFT_OWED, OWED
    slow = psycopg.connect(pg_store_url, autocommit=False)  # erasure P2, not committed yet
    try:
        slow.execute("INSERT INTO audit (at, action, detail) VALUES ('x', %s, %s)",
                     (OWED, json.dumps({"tables": ["consents"]})))
        owner._audit(OWED, None, {"tables": ["contacts"]}, datetime.now(timezone.utc))  # P1
        assert owner.checkpoint_wal() is True  # P1 rewrites what it sees owed
        slow.commit()  # P2 commits, then dies before its own rewrite
    finally:
        slow.close()
    left = [json.loads(r["detail"])["tables"] for r in owner.q(
        LEFT_OWED, {"owed": OWED, "done": DONE})]
    assert left == [["consents"]]
    assert owner.checkpoint_wal() is True  # the next erasure's rewrite takes it
    assert owner.q(LEFT_OWED, {"owed": OWED, "done": DONE}) == []
