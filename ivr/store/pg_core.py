"""The PostgreSQL backend's core: pooled connections, transactions, schema versions, the
opposition list and the audit. The twin of sqlite_core.py.

Methods are synchronous, like SQLite's; the program calls them off the event loop when the store
is `remote` (a round trip to a server must never stall the loop). A transaction binds one pooled
connection to the current thread for its duration; outside one, each statement runs on a pooled
connection in autocommit. Every statement is written out as a literal and parameterised. The
claim and a group commit's batch run pipelined (pg_pipeline.py); an outcome, answered or not,
and a choice are server functions (pg_functions.py): one command each.
"""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import psycopg
from psycopg_pool import ConnectionPool

from ivr.errors import StoreError
from ivr.numbers import BOX_PREFIXES
from ivr.store.base import KeyedAudit, Row, utc
from ivr.store.box_lines import ERASED_ALIASES_AT, BoxLines
from ivr.store.pg_pipeline import Pipelined, rows_of
from ivr.store.pg_schema import MIGRATION_LOCK, MIGRATIONS, VERSION_TABLE

# What a PostgreSQL store that is away raises. OperationalError covers a stopped or restarting
# server, a lost connection, a pool that cannot hand out a connection in time (PoolTimeout), a
# serialisation failure or deadlock, a statement or lock timeout: all worth retrying. So are
# the server's state, not the data: a read-only server (a failover onto a replica, a DBA's
# default_transaction_read_only), a session or transaction its timeouts ended, a privilege a
# DBA took away (the run pauses saying which until it is granted again: an outcome the person
# heard confirmed is never dropped for it). Anything else (a missing table, a type error) is a
# bug that would fail forever.
SERVER_STATE_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.IdleInTransactionSessionTimeout,
    psycopg.errors.TransactionTimeout, psycopg.errors.InsufficientPrivilege)
STORE_ERRORS: tuple[type[BaseException], ...] = (psycopg.OperationalError, OSError,
                                                 *SERVER_STATE_ERRORS)
# A session that found the server read-only stays so (default_transaction_read_only is read at
# its start): it is closed, and its replacement asks for a writable server (libpq's
# target_session_attrs), so a read-only one is refused at connect until it is a primary again.
READ_WRITE = {"target_session_attrs": "read-write"}

Params = tuple[Any, ...] | list[Any] | dict[str, Any]

# ARCEP's fiction range, as sqlite_optout_key.FICTION_GLOB, in PostgreSQL's regex dialect.
FICTION_RE = r"^\+3319900[0-9]{4}$"
KEYED_SINCE = 15  # the schema that records the key's fingerprint (table optout_key)
# box_lines.BoxLines' statements (sqlite_core.BOX_SQL's twins). The regional forms are found
# by their first 5 characters: a scan, once per open (the index's order is the collation's).
BOX_SQL: dict[str, tuple[str, ...]] = {
    "contacts": ("SELECT id, number FROM contacts WHERE left(number, 5) = ANY(%(p)s)",),
    "optouts": ("SELECT id, number FROM optouts WHERE left(number, 5) = ANY(%(p)s)",),
    "contact": ("SELECT 1 AS x FROM contacts WHERE number = %(n)s",),
    "optout": ("SELECT 1 AS x FROM optouts WHERE number_hash = %(h)s",),
    "erased_optout": ("SELECT 1 AS x FROM optouts WHERE number_hash = %(h)s AND "
                      "number IS NULL",),
    "erased_any": ("SELECT 1 AS x FROM optouts WHERE number IS NULL LIMIT 1",),
    # once, in migration 20's step (erased_box_aliases): every 09 line in either form
    "box_contacts": ("SELECT id, number FROM contacts WHERE left(number, 4) = '+339' OR "
                     "left(number, 5) = ANY(%(p)s)",),
    "rename_contact": ("UPDATE contacts SET number = %(new)s WHERE id = %(id)s",
                       "UPDATE calls SET number = %(new)s WHERE number = %(old)s",
                       "UPDATE consents SET number = %(new)s WHERE number = %(old)s"),
    "rehash_optout": ("UPDATE optouts SET number = %(new)s, number_hash = %(h)s "
                      "WHERE id = %(id)s",),
    "rehash_audit": ("UPDATE audit SET subject_hash = %(new)s WHERE subject_hash = %(old)s",),
    "copy_optout": ("INSERT INTO optouts (number_hash, number, via, campaign, created_at) "
                    "SELECT %(to)s, NULL, via, campaign, created_at FROM optouts WHERE "
                    "number_hash = %(from)s ON CONFLICT (number_hash) DO NOTHING",),
    "alias": ("INSERT INTO optouts (number_hash, number, via, campaign, created_at) VALUES "
              "(%(h)s, NULL, %(via)s, %(c)s, %(at)s) ON CONFLICT (number_hash) DO NOTHING",),
    "contact_opposed": ("UPDATE contacts SET status = 'opted_out', updated_at = %(at)s "
                        "WHERE number = %(n)s AND status <> 'opted_out'",),
}


def retryable(exc: BaseException) -> bool:
    return isinstance(exc, STORE_ERRORS)


def grant_fix(why: str, role: str, database: str) -> str:
    """What to grant for PostgreSQL's "permission denied" message `why`: a message for the
    DBA (the statements in lower case), never run here."""
    if m := re.search(r"permission denied for schema (\S+)", why):
        return (f"grant create on schema {m[1]} to {role} (or make {role} its owner): the "
                "store creates and upgrades its tables there")
    if "create temporary tables" in why:
        return (f"grant temporary on database {database} to {role}: an import keeps the "
                "numbers it has seen in a temporary table")
    if m := re.search(r"must be owner of \w+ (\S+)", why):
        return (f"make {role} the owner of {m[1]} and of the store's other tables (alter "
                f"table ... owner to {role}): upgrades and the erasure's VACUUM FULL need it")
    if m := re.search(r"permission denied for \w+ (\S+)", why):
        return (f"make {role} the owner of {m[1]} and of the store's other tables (or grant "
                f"it select, insert, update, delete on them and usage, select, update on all "
                f"sequences in their schema; their owner runs upgrades)")
    return (f"give {role} the store's privileges: connect and temporary on the database, "
            "create on its schema (or its ownership), the ownership of its tables")


def _first_line(exc: BaseException) -> str:
    """PostgreSQL's message without libpq's hint lines; its type when it has none."""
    return " ".join((str(exc).splitlines() or [""])[0].split()) or type(exc).__name__


def redact(url: str) -> str:
    """The URL with any password replaced, for error messages (never log a secret). Its query
    is read percent-decoded, as libpq reads it: `?pass%77ord=…` is a password too."""
    url = re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)  # before decoding: `%40` is no `@`
    if "://" in url:  # a URL's value runs to the next `&`, a decoded space included
        return re.sub(r"(password\s*=\s*)[^&]*", r"\1***", unquote(url))
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", url)


class PgCore(Pipelined, KeyedAudit, BoxLines):
    CLOSES_SESSION = SERVER_STATE_ERRORS
    remote = True  # a server: callers on the event loop run store calls in a worker thread
    shares_work = True  # several controllers on one campaign share its work (hold_run)
    fiction_only_key = False  # there is no key file "beside" a server (pg.py refuses one)
    controller_id: str | None = None  # set by hold_run; written to calls.controller

    def _back_s(self) -> float | None:
        """Seconds since this controller's heartbeat was written again after failing, 0 while
        it fails, None if it never failed: a beat of every other controller then (the
        LEASE_END rule in pg_controllers)."""
        return None

    def __init__(self, pool: ConnectionPool, optout_key: bytes, url: str,
                 connect_kwargs: dict[str, Any], migrate: bool = True) -> None:
        """migrate=False: PgStore.open admits the key first, then migrates."""
        self.pool = pool  # private-for-now: tests and bench/ may reach in
        self._key = optout_key
        self._url = url  # no password inside: pg.py refuses one
        self._connect_kwargs = connect_kwargs  # may hold the password: never logged
        connect_kwargs.update(READ_WRITE)  # the heartbeat's connection, the pool's next ones
        if isinstance(pool.kwargs, dict):
            pool.kwargs.update(READ_WRITE)
        self._local = threading.local()
        if migrate:
            self.migrate()

    def close(self) -> None:
        self.pool.close()

    # -- schema -------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        row = self._row("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version")
        return int(row["v"]) if row else 0

    def stored_version(self) -> int:
        """The version before any migration: 0 for a new database (no schema_version yet).
        Refused if newer than this program."""
        found = self._row("SELECT to_regclass('schema_version') IS NOT NULL AS x")
        try:
            current = self.version if found and found["x"] else 0
        except psycopg.errors.InsufficientPrivilege as exc:  # a role given no table
            raise self.privilege_error(exc, f"cannot read the store {redact(self._url)}") \
                from None
        _check_version(current)
        return current

    def migrate(self) -> None:
        """Apply the missing migrations, each in its own transaction, under an advisory lock
        so that two controllers starting together do not both run one. A server that gives up
        (a lock_timeout, a lost connection) is one line, the step rolled back."""
        current = 0
        try:
            if (current := self.stored_version()) < len(MIGRATIONS):  # else nothing to wait for
                with self.transaction():
                    self._exec("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                    self._exec(VERSION_TABLE)
                while (current := self._migrate_step()) < len(MIGRATIONS):
                    pass
            self.canonical_boxes()  # box_lines: once the key is admitted, as a migration
        except psycopg.errors.InsufficientPrivilege as exc:  # the step was rolled back
            raise self.privilege_error(exc, f"cannot upgrade the store {redact(self._url)} "
                                       f"from schema {current} to {len(MIGRATIONS)}") from None
        except psycopg.OperationalError as exc:
            why = " ".join(str(exc).split()) or type(exc).__name__
            if isinstance(exc, psycopg.errors.LockNotAvailable):  # lock_timeout
                why += " (another ivr is upgrading it: retry)"
            raise StoreError(f"cannot upgrade the store {redact(self._url)} from schema "
                             f"{current} to {len(MIGRATIONS)}: {why}") from None
        except psycopg.Error as exc:  # the step met this store's own objects or data: one line
            why = _first_line(exc)
            raise StoreError(f"cannot upgrade the store {redact(self._url)} from schema "
                             f"{current} to {len(MIGRATIONS)}: {why} (that step was rolled "
                             "back: nothing of it was changed)") from None

    def privilege_error(self, exc: psycopg.Error, doing: str) -> StoreError:
        """One line for a missing privilege: what failed, PostgreSQL's words, what to grant."""
        why = _first_line(exc)
        try:
            row = self._row("SELECT current_user AS r, current_database() AS d")
        except psycopg.Error:
            row = None
        role, database = (str(row["r"]), str(row["d"])) if row else ("the store's role", "it")
        return StoreError(f"{doing}: {why}: {grant_fix(why, role, database)}")

    def _migrate_step(self) -> int:
        """One missing migration, if any; the store's version after it."""
        with self.transaction():
            self._exec("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            current = self.version
            _check_version(current)
            if current == len(MIGRATIONS):
                return current
            script = MIGRATIONS[current]
            self._conn().execute(script)  # several statements, no parameters
            if current + 1 == ERASED_ALIASES_AT:  # box_lines: hashes, computed here
                self.erased_box_aliases()
            if self.version != current + 1:  # each script records its own number
                raise StoreError(f"internal: migration {current + 1} did not record itself")
        return current + 1

    # -- connections and transactions ---------------------------------------------------------
    def _conn(self) -> psycopg.Connection[Row]:
        """The connection of the transaction this thread is in (only inside one)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            raise StoreError("internal: no transaction on this thread")
        return conn

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing. Nested in another transaction of this thread, it is a savepoint:
        it can fail alone without undoing the rest of the batch; inside batch(), it is part
        of the batch's transaction instead."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "flat", False):
            yield
            return
        if conn is not None:
            if (pipe := getattr(self._local, "pipe", None)) is not None:
                pipe.sync()  # the BEGIN processed, so psycopg opens a SAVEPOINT, not a BEGIN
            with conn.transaction():  # psycopg: a SAVEPOINT when one is already open
                yield
            return
        with self._session() as conn, conn.transaction():
            yield

    @contextmanager
    def batch(self) -> Iterator[None]:
        """A transaction whose nested ones are part of it, not savepoints: a group commit's
        first try (safe_writes.py), as SQLite's batch() (sqlite_core.py says why it is sound).
        Each savepoint was two round trips more a write (SAVEPOINT, RELEASE): 1,350 of them
        on the sandbox's 1,000 calls. A write failing there aborts the whole transaction,
        which the writer then sends again with a savepoint a write."""
        with self.pipelined():
            self._local.flat = True
            try:
                yield
            finally:
                self._local.flat = False

    def _cursor_rows(self, conn: psycopg.Connection[Row], sql: str,
                     params: Params | None) -> tuple[list[Row], int]:
        return rows_of(conn.execute(sql, params or None))  # type: ignore[arg-type]

    def _run(self, sql: str, params: Params | None) -> tuple[list[Row], int]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:  # its result now (in pipeline mode, with what was queued before)
            return self._result_of(self._later(sql, params))
        with self.pool.connection() as conn:  # autocommit: one statement, one transaction
            try:
                return self._cursor_rows(conn, sql, params)
            except SERVER_STATE_ERRORS:
                conn.close()  # as in transaction(): the pool replaces it
                raise

    def _rows(self, sql: str, params: Params = ()) -> list[Row]:
        return self._run(sql, params)[0]

    def _row(self, sql: str, params: Params = ()) -> Row | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _exec(self, sql: str, params: Params = ()) -> int:
        """Run one statement; the number of rows it touched."""
        return self._run(sql, params)[1]

    # Private-for-now: raw SQL from outside the store, not part of StoreBackend (tests, bench/).
    def q(self, sql: str, params: Params = ()) -> list[Row]:
        return self._rows(sql, params)

    def one(self, sql: str, params: Params = ()) -> Row | None:
        return self._row(sql, params)

    # -- opposition list ----------------------------------------------------------------------
    def real_number_held(self) -> str | None:
        """A contact or clear opposition number outside the fiction range, if any."""
        row = self._row("SELECT number FROM contacts WHERE number !~ %s UNION ALL "
                        "SELECT number FROM optouts WHERE number !~ %s LIMIT 1",
                        (FICTION_RE, FICTION_RE))
        return None if row is None else str(row["number"])

    def guard_key(self, number: str) -> None:
        """Nothing to guard: a PostgreSQL store's key never sits beside it (pg.py)."""

    def is_opted_out(self, number: str) -> bool:
        return self._row("SELECT 1 AS x FROM optouts WHERE number_hash = %s",
                         (self.number_hash(number),)) is not None

    # -- the opposition key's check (base.KeyedAudit.check_optout_key) -------------------------
    def _kept_optouts(self, n: int) -> list[tuple[str, str]]:
        rows = self._rows("SELECT number, number_hash FROM optouts WHERE number IS NOT NULL "
                          "ORDER BY id DESC LIMIT %s", (n,))
        return [(r["number"], r["number_hash"]) for r in rows]

    def _key_fingerprint(self) -> str | None:
        found = self._row("SELECT to_regclass('optout_key') IS NOT NULL AS x")
        if not (found and found["x"]):  # not migrated yet (PgStore.open admits the key first)
            return None
        row = self._row("SELECT fingerprint FROM optout_key WHERE id = 1")
        return str(row["fingerprint"]) if row else None

    def _record_key_fingerprint(self, value: str) -> None:
        self._exec("INSERT INTO optout_key (id, fingerprint) VALUES (1, %s) "
                   "ON CONFLICT (id) DO NOTHING", (value,))

    def has_optout_key(self) -> bool:
        """Whether a key was already used here: an opposition, or a fingerprint (schema 15).
        A store from before schema 15 holding any row a key hashed or may have hashed (an
        opposition, audit.subject_hash; a contact, a call or a consent: an export or an erasure
        audits it) is keyed too: older releases took a short key."""
        version = self.stored_version()
        if 0 < version < KEYED_SINCE:
            return self._row(
                "SELECT EXISTS (SELECT 1 FROM contacts) OR EXISTS (SELECT 1 FROM calls) OR "
                "EXISTS (SELECT 1 FROM consents) OR EXISTS (SELECT 1 FROM optouts) OR "
                "EXISTS (SELECT 1 FROM audit) AS x")["x"]  # type: ignore[index]
        return version > 0 and self._row(
            "SELECT EXISTS (SELECT 1 FROM optouts) OR EXISTS (SELECT 1 FROM "
            "optout_key) AS x")["x"]  # type: ignore[index]

    def _add_optout(self, number: str, via: str, campaign: str | None, now: datetime) -> bool:
        self.guard_key(number)
        added = self._exec(
            "INSERT INTO optouts (number_hash, number, via, campaign, created_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (number_hash) DO NOTHING",
            (self.number_hash(number), number, via, campaign, utc(now)))
        self._exec("UPDATE contacts SET status = 'opted_out', updated_at = %s "
                   "WHERE number = %s", (utc(now), number))
        for alias in self.line_aliases(number):  # the box's other forms (box_lines)
            self._box_exec("alias", {"h": self.number_hash(alias), "via": via, "c": campaign,
                                     "at": utc(now)})
            self._box_exec("contact_opposed", {"n": alias, "at": utc(now)})
        return added > 0

    # -- box_lines.BoxLines' primitives -------------------------------------------------------
    def _box_rows(self, table: str) -> list[tuple[int, str]]:
        (sql,) = BOX_SQL[table]  # a literal of BOX_SQL
        return [(int(r["id"]), str(r["number"]))
                for r in self._rows(sql, {"p": list(BOX_PREFIXES)})]

    def _box_one(self, name: str, params: dict[str, Any]) -> bool:
        (sql,) = BOX_SQL[name]
        return self._row(sql, params) is not None

    def _box_exec(self, name: str, params: dict[str, Any]) -> int:
        return sum(max(self._exec(sql, params), 0) for sql in BOX_SQL[name])

    def _box_lock(self) -> None:
        self._exec("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))

    def _holds(self, number: str) -> bool:
        """A contact, call, consent or opposition of the number (base.KeyedAudit.audit)."""
        return self._row(
            "SELECT 1 AS x WHERE EXISTS (SELECT 1 FROM contacts WHERE number = %(n)s) OR "
            "EXISTS (SELECT 1 FROM calls WHERE number = %(n)s) OR EXISTS (SELECT 1 FROM "
            "consents WHERE number = %(n)s) OR EXISTS (SELECT 1 FROM optouts WHERE "
            "number_hash = %(h)s)", {"n": number, "h": self.number_hash(number)}) is not None

    def _audit(self, action: str, number: str | None, detail: dict[str, Any],
               now: datetime, actor: str | None = None) -> None:
        self._exec("INSERT INTO audit (at, action, subject_hash, detail, actor) "
                   "VALUES (%s, %s, %s, %s, %s)",
                   (utc(now), action, self.number_hash(number) if number else None,
                    json.dumps(detail, ensure_ascii=False), actor))

    def checkpoint_wal(self) -> bool:
        """Nothing to do: PostgreSQL recycles its WAL itself (erasure relies on VACUUM)."""
        return True


def _check_version(current: int) -> None:
    if current > len(MIGRATIONS):
        raise StoreError(f"the store has schema version {current}, newer than this program "
                         f"({len(MIGRATIONS)}): upgrade ivr")
