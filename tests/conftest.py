"""Shared builders of the unit tests: configs, stores, contacts and a CLI config file.

Plain helpers are imported with `from conftest import ...`; `store` and `cfg_file` are fixtures.
`pg_cluster` (one private PostgreSQL per session, ivr/store/pg_cluster.py) and `pg_url` (a
fresh, empty database per test) give the tests a real PostgreSQL. Without PostgreSQL's binaries
they skip, except under CI, where they fail: the integration tests are never skipped there.
(tests/integration has its own conftest for the sandbox PBX.)
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from ivr import config
from ivr.errors import StoreError
from ivr.store import Store, utc
from ivr.store.pg_cluster import PgCluster, bindir, port_free
from ivr.store.schema import MIGRATIONS

REPO = Path(__file__).resolve().parents[1]
CALLER_ID = "+33162000000"  # in an ARCEP range for automated calls


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`make test` runs `-n 2 --dist loadgroup`: every test under tests/integration is one unit
    of work, so one worker runs them in order, alone on the sandbox, while the other worker runs
    the unit tests beside them (the unit tests already run beside the integration suite's
    lock holders). Our own scheduler: xdist 3.8's xdist_group marking does not group under
    pytest 9 (tried: the tests of one group went to both workers)."""
    # Any distribution mode: with plain `-n 2` (load) the integration tests would otherwise
    # run on both workers at once, against the one sandbox.
    from xdist.scheduler import LoadScopeScheduling

    class SandboxApart(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith("tests/integration/"):
                return "tests/integration"
            return nodeid  # every unit test stands alone: any worker, any order
    return SandboxApart(config, log)


def make_config(base_dir: Path = Path("."), **sections: Any) -> config.Config:
    """A Config from its sections, e.g. make_config(campaign={...}, schedule={...})."""
    return config.from_dict(sections, base_dir=base_dir)


def sqlite_at_schema(path: Path, version: int) -> sqlite3.Connection:
    """A SQLite file holding the first `version` migrations only, as an older release left
    it: the caller writes its rows, commits and closes, then opens it to upgrade."""
    conn = sqlite3.connect(path)
    for script in MIGRATIONS[:version]:
        conn.executescript(script)
    return conn


def store_at(path: Path, busy_timeout_s: float = 0.05) -> Store:
    """A file store (WAL) with a fixed opposition key and a short lock wait."""
    return Store.open(path, optout_key=b"k", busy_timeout_s=busy_timeout_s)


# The campaign names the unit tests' configs use: a contact added by add_contact belongs to
# all of them unless the test names its campaigns (lists belong to campaigns, schema 5).
TEST_CAMPAIGNS = ("campaign", "c1", "demo", "utest", "demo-municipales-2026")


def add_contact(store: Store, number: str, *, at: datetime | str, source: str = "list",
                campaigns: tuple[str, ...] = TEST_CAMPAIGNS, **fields: Any) -> dict[str, Any]:
    """Insert one contact row as an import would leave it, bound to `campaigns`; `fields` sets
    any other column (name, timezone, basis, acquired_on, status, slot; extra as a dict)."""
    ts = at if isinstance(at, str) else utc(at)
    if isinstance(fields.get("extra"), dict):
        fields["extra"] = json.dumps(fields["extra"])
    row = {"number": number, "source": source, "created_at": ts, "updated_at": ts, **fields}
    store.db["contacts"].insert(row)  # sqlite-utils: columns from the dict, values bound
    found = contact(store, number)
    for campaign in campaigns:  # the list's name on its binding too (schema 25)
        store.db["campaign_contacts"].insert({
            "contact_id": found["id"], "campaign": campaign, "source": source,
            "basis": fields.get("basis"), "acquired_on": fields.get("acquired_on"),
            "status": fields.get("status", "pending"), "bound_at": ts,
            "name": fields.get("name")})
    return found


@pytest.fixture
def opened_stores(monkeypatch: pytest.MonkeyPatch) -> list[Store]:
    """Every SQLite store Store.open returns during the test, left open (close does nothing)
    so the test reads what a bench or a command wrote after it is done."""
    kept: list[Store] = []
    real_open = Store.open
    monkeypatch.setattr(Store, "open", classmethod(
        lambda cls, *a, **kw: kept.append(real_open(*a, **kw)) or kept[-1]))
    monkeypatch.setattr(Store, "close", lambda self: None)
    return kept


def contact(store: Store, number: str) -> dict[str, Any]:
    found = store.one("SELECT * FROM contacts WHERE number = ?", (number,))
    assert found is not None, number
    return found


@dataclass(frozen=True)
class _Allowed:
    allowed: bool = True


def attempt(store: Store, contact: dict[str, Any], campaign: str, caller_id: str,
            now: datetime, node: str = "node-test") -> dict[str, Any]:
    """An attempt written through claim_attempt with a judge that allows everything: for
    tests that build a history, not for the rules (planning.claim applies those)."""
    got = store.claim_attempt(contact, campaign=campaign, caller_id=caller_id, node=node,
                              now=now, attempts_since=now, refusals_since=now,
                              judge=lambda past: _Allowed())
    assert got.call is not None
    return got.call


def store_with(*numbers: str, at: datetime | str, **fields: Any) -> Store:
    """An in-memory store holding these contacts."""
    s = Store.memory()
    for n in numbers:
        add_contact(s, n, at=at, **fields)
    return s


def fill(store: Store, *numbers: str, at: datetime | str, **fields: Any) -> Store:
    """`store` holding these contacts (store_with's twin for the parametrised `store`)."""
    for n in numbers:
        add_contact(store, n, at=at, **fields)
    return store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """A fresh, empty store of each backend: SQLite in memory, and PostgreSQL on a fresh
    database of the session's private cluster (tests/store_sql.py: the raw-SQL helpers the
    tests use work on both)."""
    if request.param == "sqlite":
        yield Store.memory()
        return
    from store_sql import PgTestStore
    pg = PgTestStore.open(request.getfixturevalue("pg_store_url"), optout_key=b"test-key")
    try:
        yield pg  # type: ignore[misc]
    finally:
        pg.close()


# The backend matrix only where the backend matters: a test of code that refuses before it
# touches the store runs on SQLite alone (each PostgreSQL item costs a database copy).
# `@sqlite_only` overrides the fixture's params for that test (indirect parametrisation).
sqlite_only = pytest.mark.parametrize("store", ["sqlite"], indirect=True)


@dataclass
class Backend:
    """A store a test opens from its config, as the program does: `store.path` (a SQLite file
    under the test's folder) or `store.url` (a fresh, migrated PostgreSQL database of the
    session's cluster, its password in IVR_STORE_PASSWORD). For the tests that build their own
    store and config (the dialer's and run loop's rig, tests/test_dialer.py; the console's,
    tests/web_fixture.py)."""
    name: str  # "sqlite" | "postgresql"
    home: Path  # the test's tmp_path: config, prompts, the SQLite file
    url: str | None = None
    opened: list[Any] = field(default_factory=list)
    key: bytes = b"test-key"  # PostgreSQL's opposition key (SQLite: IVR_OPTOUT_KEY or beside)
    fresh_db: Any = None  # PostgreSQL: () -> the URL of one more fresh, migrated database

    def section(self) -> dict[str, str]:
        """The config's `store` section."""
        return {"url": self.url} if self.url else {"path": str(self.home / "ivr.db")}

    def open(self) -> Store:
        """One more connection to this store (the run's, a second controller's, a reader's);
        a PostgreSQL one with the tests' raw-SQL conveniences (tests/store_sql.py)."""
        if self.url is None:
            return Store.open(self.home / "ivr.db")
        from store_sql import PgTestStore
        pg = PgTestStore.open(self.url, optout_key=self.key)
        self.opened.append(pg)
        return pg  # type: ignore[return-value]

    def program(self, busy_timeout_s: float = 5.0) -> Any:
        """A connection as the program opens it (no test conveniences: PgStore itself), closed
        after the test: what a console's store factory returns."""
        if self.url is None:
            return Store.open(self.home / "ivr.db", busy_timeout_s=busy_timeout_s)
        from ivr.store.pg import PgStore
        pg = PgStore.open(self.url, optout_key=self.key)
        self.opened.append(pg)
        return pg

    def sibling(self, home: Path) -> "Backend":
        """Another empty store of the same backend under `home` (a second, separate run)."""
        if self.url is None:
            return Backend("sqlite", home)
        return Backend(self.name, home, self.fresh_db(), self.opened, self.key, self.fresh_db)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """`store`'s matrix for the tests that open their store from a config (Backend)."""
    if request.param == "sqlite":
        yield Backend("sqlite", tmp_path)
        return
    url = request.getfixturevalue("pg_store_url")
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    template: str = request.getfixturevalue("pg_migrated")
    # The password as an operator gives it (IVR_STORE_PASSWORD), not through pg_url's file.
    monkeypatch.delenv("PGPASSFILE", raising=False)
    monkeypatch.setenv("IVR_STORE_PASSWORD", cluster.password())
    extra: list[str] = []

    def fresh_db() -> str:
        extra.append(f"t_{secrets.token_hex(6)}")
        cluster.create_database(extra[-1], template=template)
        return cluster.url_for(extra[-1])
    where = Backend("postgresql", tmp_path, url, fresh_db=fresh_db)
    try:
        yield where
    finally:  # before pg_store_url drops the database
        for pg in where.opened:
            pg.close()
        for name in extra:
            cluster.drop_database(name)


# The backend matrix only where the backend matters (`backend`'s twin of sqlite_only).
backend_sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def shipped_config(tmp_path: Path, store: dict[str, str]) -> Path:
    """The shipped config.yaml with this store section, its prompts and key under tmp_path."""
    data = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    data["store"] = store
    data["prompts"]["sources_dir"] = str((REPO / "prompts").resolve())
    data["prompts"]["build_dir"] = str(tmp_path / "build")
    data["campaign"]["caller_id"] = CALLER_ID
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


@pytest.fixture
def cfg_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped config.yaml with its store, prompts and key moved under tmp_path."""
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    return shipped_config(tmp_path, {"path": str(tmp_path / "t.db")})


@pytest.fixture
def backend_cfg_file(backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cfg_file over `backend`'s store: `ivr` commands, the console and backend.open() see
    the same store with the same opposition key."""
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    backend.key = b"k" * 32
    return shipped_config(tmp_path, backend.section())


# -- a real PostgreSQL ------------------------------------------------------------------------
PG_TEST_PORT = 55433  # first port tried; the next free one is taken if another session holds it


def _pg_unavailable() -> str | None:
    """Why no private PostgreSQL can run here, or None."""
    try:
        bindir()
        import psycopg  # noqa: F401
    except (StoreError, ImportError) as exc:
        return str(exc)
    return None


def _start_test_cluster(base: Path) -> PgCluster:
    """Up on PG_TEST_PORT or the next free port: helpers and CI jobs may run side by side."""
    last: StoreError | None = None
    for port in range(PG_TEST_PORT, PG_TEST_PORT + 40):
        if not port_free(port):
            continue
        cluster = PgCluster(base, port, fast=True, max_connections=300)
        try:
            cluster.up()
            return cluster
        except StoreError as exc:  # lost a race for the port: try the next
            if "already in use" not in str(exc):
                raise
            last = exc
    raise StoreError(f"no free port for the test PostgreSQL from {PG_TEST_PORT}: {last}")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One private PostgreSQL for the whole session (fsync off), stopped and removed at the end.
    Its folder is under /tmp, not tmp_path: the postgres user must be able to reach it."""
    why = _pg_unavailable()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {why}")
        pytest.skip(f"no PostgreSQL here: {why}")
    base = Path(tempfile.mkdtemp(prefix="ivr-pg-test-"))
    cluster = _start_test_cluster(base)
    _watch(cluster)
    try:
        yield cluster
    finally:
        cluster.down()
        shutil.rmtree(base, ignore_errors=True)


# A session killed by a signal (a CI timeout, Ctrl-C twice) runs no finalizer: this watcher,
# in its own session, stops the cluster and removes its folder once pytest is gone.
_WATCHER = """
import os, shutil, sys, time
from pathlib import Path
from ivr.store.pg_cluster import PgCluster
owner, base, port = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
while base.exists():
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        PgCluster(base, port).down()
        shutil.rmtree(base, ignore_errors=True)
        break
    time.sleep(2)
"""


def _watch(cluster: PgCluster) -> None:
    subprocess.Popen([sys.executable, "-c", _WATCHER, str(os.getpid()), str(cluster.base),
                      str(cluster.port)], start_new_session=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextmanager
def fresh_database(cluster: PgCluster, monkeypatch: pytest.MonkeyPatch,
                   template: str | None = None) -> Iterator[str]:
    """pg_url's body: a fresh database, empty or a copy of `template`, dropped on exit (with
    any session left open)."""
    name = f"t_{secrets.token_hex(6)}"
    cluster.create_database(name, template=template)
    monkeypatch.setenv("PGPASSFILE", str(cluster.pgpass_file))
    try:
        yield cluster.url_for(name)
    finally:
        cluster.drop_database(name)


@pytest.fixture
def pg_url(pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, empty database for this test, dropped after it (with any session left open).
    The password reaches libpq through PGPASSFILE, never through the URL."""
    with fresh_database(pg_cluster, monkeypatch) as url:
        yield url


@pytest.fixture(scope="session")
def pg_migrated(pg_cluster: PgCluster) -> str:
    """A database holding the PostgreSQL store's schema and no rows, made once per session:
    each store test copies it (CREATE DATABASE … TEMPLATE) instead of migrating again."""
    from ivr.store.pg import PgStore
    name = f"ivr_migrated_{secrets.token_hex(4)}"
    pg_cluster.create_database(name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PGPASSFILE", str(pg_cluster.pgpass_file))
        PgStore.open(pg_cluster.url_for(name), optout_key=b"test-key").close()
        import psycopg
        with psycopg.connect(pg_cluster.url_for(name), autocommit=True) as conn:
            conn.execute("DELETE FROM optout_key")  # no rows: each copy takes its test's key
    return name


@pytest.fixture
def pg_store_url(pg_cluster: PgCluster, pg_migrated: str,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Like pg_url, but already migrated (a copy of pg_migrated): a fresh store, no rows."""
    with fresh_database(pg_cluster, monkeypatch, pg_migrated) as url:
        yield url


@pytest.fixture
def pg_store(pg_store_url: str) -> Iterator[Any]:
    """A PostgreSQL store open on a fresh migrated database (no rows), closed after the test."""
    from ivr.store.pg import PgStore
    store = PgStore.open(pg_store_url, optout_key=b"test-key")
    try:
        yield store
    finally:
        store.close()
