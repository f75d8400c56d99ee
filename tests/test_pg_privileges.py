"""A role without a privilege the store needs (a DBA's PostgreSQL, PG15's public schema): one
line naming what to grant, nothing half-written; before, psycopg's traceback."""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from ivr.errors import StoreError
from ivr.records.contacts import import_csv
from ivr.store.pg import PgStore


@contextmanager
def role(url: str, monkeypatch: pytest.MonkeyPatch, *grants: str) -> Iterator[tuple[str, str]]:
    """A login role on the test's database, with `grants` (statements run as the cluster's
    superuser, {role} and {db} filled in as identifiers), dropped after; (its URL, its name)."""
    name, password = f"r_{secrets.token_hex(4)}", secrets.token_hex(16)
    db = conninfo_to_dict(url)["dbname"]
    ids = {"role": sql.Identifier(name), "db": sql.Identifier(db)}
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {role} LOGIN PASSWORD {pw}").format(
            pw=sql.Literal(password), **ids))
        for grant in grants:
            admin.execute(sql.SQL(grant).format(**ids))
        monkeypatch.setenv("IVR_STORE_PASSWORD", password)
        try:
            yield url.replace("ivr@", f"{name}@", 1), name
        finally:
            admin.execute(sql.SQL("DROP OWNED BY {role}").format(**ids))
            admin.execute(sql.SQL("DROP ROLE {role}").format(**ids))


def tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]


def test_no_create_on_the_schema_is_one_line_naming_the_grant(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with role(pg_url, monkeypatch, "REVOKE CREATE ON SCHEMA public FROM PUBLIC") as (url, name):
        with pytest.raises(StoreError) as err:
            PgStore.open(url, optout_key=b"test-key").close()
    msg = str(err.value)
    assert "\n" not in msg and "permission denied for schema public" in msg
    assert f"grant create on schema public to {name}" in msg
    assert "password" not in msg.replace("IVR_STORE_PASSWORD", "")
    assert tables(pg_url) == []  # nothing half-written


def test_no_temp_on_the_database_refuses_the_import_before_any_row(
        pg_store_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    grants = ("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
              "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
              "REVOKE TEMPORARY ON DATABASE {db} FROM PUBLIC")
    csv = tmp_path / "list.csv"
    csv.write_text("number\n+33199000001\n+33199000002\n")
    with role(pg_store_url, monkeypatch, *grants) as (url, name):
        store = PgStore.open(url, optout_key=b"test-key")
        try:
            with pytest.raises(StoreError) as err:
                import_csv(store, csv, campaign="c1", source="list", basis="consent",
                           acquired_on=None, default_region="FR",
                           now=datetime(2026, 12, 3, tzinfo=timezone.utc))
            assert store.q("SELECT id FROM contacts") == []  # nothing half-written
        finally:
            store.close()
    msg = str(err.value)
    assert "\n" not in msg and "cannot import the contact list" in msg
    db = conninfo_to_dict(pg_store_url)["dbname"]
    assert f"grant temporary on database {db} to {name}" in msg


def test_no_privilege_on_the_tables_is_one_line_at_open(
        pg_store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with role(pg_store_url, monkeypatch) as (url, name):
        with pytest.raises(StoreError) as err:
            PgStore.open(url, optout_key=b"test-key").close()
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("cannot read the store")
    assert "permission denied for table schema_version" in msg
    assert f"make {name} the owner of schema_version" in msg


def test_a_role_granted_what_the_advice_says_can_claim(
        pg_store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the advice named the tables' privileges only, and a role given exactly that had
    every claim refused (the attempt's id is drawn from calls' sequence) and the run paused as
    'store unavailable' for good."""
    with role(pg_store_url, monkeypatch) as (url, name):
        with pytest.raises(StoreError) as err:
            PgStore.open(url, optout_key=b"test-key").close()
    msg = str(err.value)
    assert "usage, select, update on all sequences" in msg
    advised = ("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
               "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    with role(pg_store_url, monkeypatch, *advised) as (url, name):
        store = PgStore.open(url, optout_key=b"test-key")
        try:  # the claim's own draw (pg_calls: nextval of calls' sequence)
            row = store.one("SELECT nextval(pg_get_serial_sequence('calls', 'id')) AS id")
            assert row is not None and row["id"] >= 1
        finally:
            store.close()
