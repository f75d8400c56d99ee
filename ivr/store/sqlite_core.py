"""The SQLite backend's core: schema versions, transactions, the opposition list and the audit.

Every statement is written out as a literal and parameterised; the schema is in schema.py.
"""
from __future__ import annotations

import fnmatch
import hmac
import json
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ivr.errors import StoreError
from ivr.numbers import BOX_PREFIXES
from ivr.store.base import KeyedAudit, Row, utc
from ivr.store.box_lines import ERASED_ALIASES_AT, BoxLines
from ivr.store.schema import MIGRATIONS, statements
from ivr.store.sqlite_optout_key import (ENV, FICTION_GLOB, KEY_SAMPLE, KEY_SETTING, beside,
                                         check_key, fingerprint, fix_hint)

if TYPE_CHECKING:  # loaded by sqlite.py, which opens the file: the PostgreSQL store's
    import sqlite_utils  # mixins built on this module need not load it

log = logging.getLogger(__name__)

# What a store that is away raises; `retryable` tells a lock, a full disk or an I/O error
# (worth retrying) from a bug such as a missing table (which would fail forever).
STORE_ERRORS = (sqlite3.OperationalError, OSError)
KEYED_SINCE = 15  # the schema that records the key's fingerprint (table optout_key)
# How long an upgrade waits for another process's, whatever the caller's busy timeout (ivr run
# takes 0.5 s): one step of a store of realistic size takes 1-2 s.
MIGRATION_WAIT_S = 30.0
ADDED_COLUMN = re.compile(r"ALTER TABLE (\w+) ADD COLUMN (\w+)", re.IGNORECASE)
_TRANSIENT = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN",
              "SQLITE_PROTOCOL")
# box_lines.BoxLines' statements. A box's regional form (+590 9…) is found through the
# number's index: [prefix, prefix with its last 9 as ':') holds exactly the prefix's numbers.
BOX_SQL: dict[str, tuple[str, ...]] = {
    "contacts": ("SELECT id, number FROM contacts WHERE number >= :lo AND number < :hi",),
    # optouts.number has no index: one scan for up to 8 prefixes (numbers.BOX_PREFIXES: 5)
    "optouts": ("SELECT id, number FROM optouts WHERE substr(number, 1, 5) IN "
                "(:p0, :p1, :p2, :p3, :p4, :p5, :p6, :p7)",),
    "contact": ("SELECT 1 FROM contacts WHERE number = :n",),
    "optout": ("SELECT 1 FROM optouts WHERE number_hash = :h",),
    "erased_optout": ("SELECT 1 FROM optouts WHERE number_hash = :h AND number IS NULL",),
    "erased_any": ("SELECT 1 FROM optouts WHERE number IS NULL LIMIT 1",),
    # once, in migration 20's step (erased_box_aliases): every 09 line in either form
    "box_contacts": ("SELECT id, number FROM contacts WHERE substr(number, 1, 4) = '+339' OR "
                     "substr(number, 1, 5) IN (:p0, :p1, :p2, :p3, :p4, :p5, :p6, :p7)",),
    "rename_contact": ("UPDATE contacts SET number = :new WHERE id = :id",
                       "UPDATE calls SET number = :new WHERE number = :old",
                       "UPDATE consents SET number = :new WHERE number = :old"),
    "rehash_optout": ("UPDATE optouts SET number = :new, number_hash = :h WHERE id = :id",),
    "rehash_audit": ("UPDATE audit SET subject_hash = :new WHERE subject_hash = :old",),
    "copy_optout": ("INSERT OR IGNORE INTO optouts (number_hash, number, via, campaign, "
                    "created_at) SELECT :to, NULL, via, campaign, created_at FROM optouts "
                    "WHERE number_hash = :from",),
    "alias": ("INSERT OR IGNORE INTO optouts (number_hash, number, via, campaign, created_at) "
              "VALUES (:h, NULL, :via, :c, :at)",),
    "contact_opposed": ("UPDATE contacts SET status = 'opted_out', updated_at = :at "
                        "WHERE number = :n AND status <> 'opted_out'",),
}


def retryable(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return (getattr(exc, "sqlite_errorname", "") or "").startswith(_TRANSIENT)
    return isinstance(exc, OSError)


class SQLiteCore(KeyedAudit, BoxLines):
    # True when the key is the file beside the store: then only fiction numbers may come in
    # (sqlite_optout_key.py says why); Store.open sets it.
    fiction_only_key = False
    path: Path | None = None  # the file (None in memory); Store.open sets it
    controller_id: str | None = None  # set by hold_run (sqlite_controllers); calls.controller
    _flat = False  # inside batch(): a nested transaction is part of it, not a savepoint

    def __init__(self, db: sqlite_utils.Database, optout_key: bytes,
                 migrate: bool = True) -> None:
        """migrate=False: Store.open admits the key first, then migrates."""
        self.db = db  # private-for-now: tests and bench/ still reach in; the program does not
        self._key = optout_key
        if migrate:
            self.migrate()

    # -- schema -------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def check_version(self) -> int:
        """The store's schema version; refused if newer than this program's."""
        if (current := self.version) > len(MIGRATIONS):
            raise StoreError(f"the store has schema version {current}, newer than this "
                             f"program ({len(MIGRATIONS)}): upgrade ivr")
        return current

    def migrate(self) -> None:
        """Apply the missing steps, each all or nothing. A lock held by another process (one
        upgrading it) is waited for up to MIGRATION_WAIT_S; a lock still held, a full disk or
        an I/O error is one line (StoreError), the step rolled back."""
        current = self.check_version()
        deadline = time.monotonic() + MIGRATION_WAIT_S
        while True:
            try:
                if (current := self.version) >= len(MIGRATIONS):
                    break
                self._migrate_step(current)
            except sqlite3.OperationalError as exc:
                if _locked(exc) and time.monotonic() < deadline:
                    time.sleep(0.05)  # the caller's busy timeout ran out: wait on
                    continue
                raise StoreError(self._upgrade_failed(current, exc)) from None
        self.check_version()
        try:
            self.canonical_boxes()
        except sqlite3.OperationalError as exc:  # locked: the next open does it
            log.warning("overseas 09 boxes not given their +33 form yet: %s", exc)

    def _migrate_step(self, current: int) -> None:
        with self.transaction():  # the write lock, then the version again: another
            if self.version != current:  # process creating the same store ran this step
                return
            for statement in statements(MIGRATIONS[current]):
                if (added := ADDED_COLUMN.match(statement)) and added[2] in {r[0] for r in (
                        self.db.execute("SELECT name FROM pragma_table_info(?)", (added[1],)))}:
                    continue  # a store rolled back by hand: this step's first run added it
                self.db.execute(statement)
            if current + 1 == ERASED_ALIASES_AT:  # box_lines: hashes, computed here
                self.erased_box_aliases()
            if self.version != current + 1:  # each script sets its version: a typo loops
                raise StoreError(f"internal: migration {current + 1} did not set "
                                 "user_version")

    def _upgrade_failed(self, current: int, exc: sqlite3.OperationalError) -> str:
        where = self.path or "in memory"
        said = f"cannot upgrade the store {where} from schema {current} to {len(MIGRATIONS)}"
        if _locked(exc):
            return f"{said}: database is locked (another ivr is upgrading it: retry)"
        if (getattr(exc, "sqlite_errorname", "") or "").startswith(("SQLITE_FULL",
                                                                    "SQLITE_IOERR")):
            return (f"{said}: disk full or I/O error (free space and restart; nothing of "
                    "this step was changed)")
        return f"{said}: {exc}"

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing. Nested in another transaction (a batch of writes), it is a savepoint:
        it can fail alone without undoing the rest of the batch; inside batch(), it is part
        of the batch's transaction instead."""
        conn = self.db.conn
        if conn.in_transaction and self._flat:
            yield
            return
        if conn.in_transaction:
            conn.execute("SAVEPOINT nested")
            try:
                yield
            except BaseException:
                conn.execute("ROLLBACK TO nested")
                conn.execute("RELEASE nested")
                raise
            conn.execute("RELEASE nested")
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")  # may fail too (disk full): then roll back, all or nothing
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def batch(self) -> Iterator[None]:
        """A transaction whose nested ones are part of it, not savepoints: all or nothing as a
        whole. For a group commit's first try (safe_writes.py): a write failing there undoes
        the batch, which is then written again with a savepoint per write. Two statements
        fewer per write, ~6 a call. The rule that keeps it sound: no write in a batch may
        catch an error raised inside a store method and carry on (its half would be
        committed); none does (each is one store method's call, or a few in a row)."""
        with self.transaction():
            self._flat = True
            try:
                yield
            finally:
                self._flat = False

    def _rows(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[Row]:
        cur = self.db.conn.execute(sql, params)
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def _row(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> Row | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    # Private-for-now: raw SQL from outside the store, not part of StoreBackend. Only tests and
    # bench/ still call these; the program uses the named methods (tests/test_security.py).
    def q(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[Row]:
        return self._rows(sql, params)

    def one(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> Row | None:
        return self._row(sql, params)

    # -- opposition list ----------------------------------------------------------------------
    def real_number_held(self) -> str | None:
        """A contact or clear opposition number outside the fiction range, if any."""
        row = self._row("SELECT number FROM contacts WHERE number NOT GLOB ? UNION ALL "
                        "SELECT number FROM optouts WHERE number NOT GLOB ? LIMIT 1",
                        (FICTION_GLOB, FICTION_GLOB))
        return None if row is None else str(row["number"])

    def guard_key(self, number: str) -> None:
        """A real number may not be keyed with the key kept beside the store."""
        if self.fiction_only_key and not fnmatch.fnmatchcase(number, FICTION_GLOB):
            # The key beside it is this store's key (Store.open took it only then): say so,
            # or a new key set as told would forget every opposition.
            side = f", to this store's key: {fix_hint(beside(self.path))}" if self.path else ""
            raise StoreError(f"{number} is a real number and the opposition key sits beside the "
                             f"store: set {ENV} or {KEY_SETTING} first{side}")

    # -- the opposition key's check (base.KeyedAudit.check_optout_key) -------------------------
    def _kept_optouts(self, n: int) -> list[tuple[str, str]]:
        return self.db.conn.execute("SELECT number, number_hash FROM optouts WHERE number IS "
                                    "NOT NULL ORDER BY id DESC LIMIT ?", (n,)).fetchall()

    def _key_fingerprint(self) -> str | None:
        if self.version < KEYED_SINCE:  # not migrated yet (Store.open admits the key first)
            return None
        row = self.db.conn.execute("SELECT fingerprint FROM optout_key WHERE id = 1").fetchone()
        return row[0] if row else None

    def key_used(self) -> bool:
        """Whether a key was already used here: a fingerprint, or an opposition (older). A
        store from before the fingerprint (schema 15) holding any row a key hashed or may have
        hashed (audit.subject_hash, an opposition; a contact, a call or a consent: an export or
        an erasure audits it) is keyed too: older releases took a short key."""
        version = self.version
        if 0 < version < KEYED_SINCE:
            return self.db.conn.execute(
                "SELECT 1 WHERE EXISTS (SELECT 1 FROM contacts) OR EXISTS (SELECT 1 FROM calls) "
                "OR EXISTS (SELECT 1 FROM consents) OR EXISTS (SELECT 1 FROM optouts) OR "
                "EXISTS (SELECT 1 FROM audit)").fetchone() is not None
        return version > 0 and (self._key_fingerprint() is not None or self._any_optout())

    def _any_optout(self) -> bool:
        return self.db.conn.execute("SELECT 1 FROM optouts LIMIT 1").fetchone() is not None

    def key_fits(self, key: bytes) -> bool:
        """Whether `key` is the one this store's list was written with; writes nothing."""
        try:
            check_key(self._kept_optouts(KEY_SAMPLE), _keyed(key), self._key_fingerprint())
        except StoreError:
            return False
        return True

    def _record_key_fingerprint(self, value: str) -> None:
        with self.transaction():
            self.db.conn.execute("INSERT OR IGNORE INTO optout_key (id, fingerprint) "
                                 "VALUES (1, ?)", (value,))

    def would_leave_fiction_key(self, fiction_key: bytes) -> bool:
        """Whether leave_fiction_key(fiction_key) would move this store to another key: the
        store.optout_key_file it names may then be made for it. Writes nothing."""
        return self._key_fingerprint() == fingerprint(_keyed(fiction_key)) \
            and not self._any_optout()

    def leave_fiction_key(self, fiction_key: bytes) -> bool:
        """A store first opened with the key beside it (fiction numbers only) takes this
        process's key instead, as the refusal of a real number tells the operator to do: only
        while it holds no opposition (nothing is forgotten) and the fingerprint is that key's."""
        old = fingerprint(_keyed(fiction_key))
        with self.transaction():
            moved = self.db.conn.execute(
                "UPDATE optout_key SET fingerprint = ? WHERE id = 1 AND fingerprint = ? AND "
                "NOT EXISTS (SELECT 1 FROM optouts)", (fingerprint(self.number_hash), old))
        return moved.rowcount == 1

    def is_opted_out(self, number: str) -> bool:
        return self._row("SELECT 1 AS x FROM optouts WHERE number_hash = ?",
                         (self.number_hash(number),)) is not None

    def _add_optout(self, number: str, via: str, campaign: str | None, now: datetime) -> bool:
        self.guard_key(number)
        h = self.number_hash(number)
        cur = self.db.execute(
            "INSERT OR IGNORE INTO optouts (number_hash, number, via, campaign, created_at) "
            "VALUES (?, ?, ?, ?, ?)", (h, number, via, campaign, utc(now)))
        self.db.execute("UPDATE contacts SET status = 'opted_out', updated_at = ? "
                        "WHERE number = ?", (utc(now), number))
        for alias in self.line_aliases(number):  # the box's other forms (box_lines)
            self._box_exec("alias", {"h": self.number_hash(alias), "via": via, "c": campaign,
                                     "at": utc(now)})
            self._box_exec("contact_opposed", {"n": alias, "at": utc(now)})
        return cur.rowcount > 0

    # -- box_lines.BoxLines' primitives -------------------------------------------------------
    def _box_rows(self, table: str) -> list[tuple[int, str]]:
        (sql,) = BOX_SQL[table]  # a literal of BOX_SQL
        if table in ("optouts", "box_contacts"):
            slots = (BOX_PREFIXES * 8)[:8]  # each slot filled, repeats harmless
            return [(int(i), str(n)) for i, n in self.db.conn.execute(
                sql, {f"p{k}": prefix for k, prefix in enumerate(slots)})]
        return [(int(i), str(n)) for prefix in BOX_PREFIXES for i, n in self.db.conn.execute(
            sql, {"lo": prefix, "hi": prefix[:-1] + ":"})]

    def _box_one(self, name: str, params: dict[str, Any]) -> bool:
        (sql,) = BOX_SQL[name]
        return self.db.conn.execute(sql, params).fetchone() is not None

    def _box_exec(self, name: str, params: dict[str, Any]) -> int:
        return sum(max(self.db.conn.execute(sql, params).rowcount, 0) for sql in BOX_SQL[name])

    def _box_lock(self) -> None:
        """Nothing: the transaction (BEGIN IMMEDIATE) holds the write lock already."""

    def _holds(self, number: str) -> bool:
        """A contact, call, consent or opposition of the number (base.KeyedAudit.audit)."""
        return self._row(
            "SELECT 1 AS x WHERE EXISTS (SELECT 1 FROM contacts WHERE number = :n) OR EXISTS "
            "(SELECT 1 FROM calls WHERE number = :n) OR EXISTS (SELECT 1 FROM consents WHERE "
            "number = :n) OR EXISTS (SELECT 1 FROM optouts WHERE number_hash = :h)",
            {"n": number, "h": self.number_hash(number)}) is not None

    def _audit(self, action: str, number: str | None, detail: dict[str, Any],
               now: datetime, actor: str | None = None) -> None:
        self.db.execute("INSERT INTO audit (at, action, subject_hash, detail, actor) "
                        "VALUES (?,?,?,?,?)",
                        (utc(now), action, self.number_hash(number) if number else None,
                         json.dumps(detail, ensure_ascii=False), actor))

    def checkpoint_wal(self) -> bool:
        """Copy the WAL into the database and truncate it to zero bytes, so erased data is not
        left in it. False (busy) when another connection's read kept its frames."""
        row = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return row is None or int(row[0]) == 0


def _locked(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorname", "") or "").startswith(("SQLITE_BUSY",
                                                                     "SQLITE_LOCKED"))


def _keyed(key: bytes) -> Callable[[str], str]:
    """number_hash under another key (base.KeyedAudit.number_hash), to test a key's fit."""
    return lambda s: hmac.digest(key, s.encode(), "sha256").hex()
