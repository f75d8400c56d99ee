"""The store: one SQLite file through sqlite-utils. WAL, schema versions, one transaction per call.

Tables other tools read (the contract): contacts, calls, optouts; plus consents and audit.
This backend implements ivr.store.base.StoreBackend; its statements are in the sqlite_*
modules, all written out and parameterised (tests/test_security.py checks it).
"""
from __future__ import annotations

import os
import sqlite3
import stat
import sys
from pathlib import Path
from types import ModuleType

from ivr.errors import StoreError
from ivr.store.base import CallResult, Claim, History, parse_utc, utc
from ivr.store.plan_reader import PlanReader
from ivr.store.schema import MIGRATIONS
from ivr.store.sqlite_calls import CallsSQL, campaign_tag
from ivr.store.sqlite_history import HistorySQL
from ivr.store.sqlite_console import ConsoleSQL
from ivr.store.sqlite_contacts import ContactsSQL
from ivr.store.sqlite_controllers import ControllersSQL
from ivr.store.sqlite_export import ExportSQL
from ivr.store.sqlite_optout_key import beside, fix_hint, read_key, resolve_key
from ivr.store.sqlite_privacy import PrivacySQL
from ivr.store.sqlite_records import RecordsSQL


def _sqlite_utils() -> ModuleType:
    """sqlite-utils, loaded without numpy unless something loaded numpy already: it imports
    numpy (when installed) only to map numpy scalars to column types, and the store never
    passes one; numpy was 60-180 ms of every SQLite command's start-up (a dry run's)."""
    if "numpy" in sys.modules or "sqlite_utils" in sys.modules:
        import sqlite_utils
        return sqlite_utils
    sys.modules["numpy"] = None  # type: ignore[assignment]  # `import numpy` fails: its fallback
    try:
        import sqlite_utils
    finally:
        del sys.modules["numpy"]  # numpy stays importable for whoever needs it
    return sqlite_utils


sqlite_utils = _sqlite_utils()

# Re-exported for the modules that import them from here (dialer, AGI, app, tests, bench).
__all__ = ["MIGRATIONS", "CallResult", "Claim", "History", "Store", "campaign_tag",
           "parse_utc", "utc"]


class Store(CallsSQL, HistorySQL, RecordsSQL, PrivacySQL, ContactsSQL, ConsoleSQL, ControllersSQL,
            ExportSQL):
    remote = False  # a local file: its calls are fast enough to run on the event loop
    shares_work = False  # one `ivr run` per campaign (sqlite_controllers.hold_run)
    reclaim_in_background = False  # unused: the WAL checkpoint after an erasure is quick

    @classmethod
    def open(cls, path: str | Path, optout_key: bytes | None = None,
             busy_timeout_s: float = 30.0,
             optout_key_file: str | Path | None = None) -> "Store":
        """busy_timeout_s: how long a write waits for a lock. The controller uses a short one
        so a locked file pauses the run instead of stalling every call in progress.
        Without `optout_key`, the key comes from sqlite_optout_key.resolve_key."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(path)
            conn = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
            db = sqlite_utils.Database(conn)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA secure_delete=ON")  # erased personal data is overwritten
        except sqlite3.Error as exc:
            what = "a folder, not a file: give store.path a file name (e.g. ivr.db) inside it" \
                if path.is_dir() else f"{exc}: check store.path"
            raise StoreError(f"cannot open the store {path}: {what}") from None
        except OSError as exc:  # its folder or file cannot be made (read-only, permissions)
            raise StoreError(f"cannot open the store {path}: {exc.strerror or exc}: check "
                             "store.path") from None
        try:
            store = cls(db, optout_key or b"", migrate=False)
            store.path = path
            # The key is admitted before the store is upgraded: a refused open leaves it as
            # the release that wrote it left it (that release can still open it).
            version = store.check_version()
            if not optout_key:  # a store that has its key never gets a new one
                used = store.key_used()
                store._key, store.fiction_only_key = resolve_key(
                    path, optout_key_file, store.key_fits if used else None,
                    store.would_leave_fiction_key if used else None)
            if 0 < version < len(MIGRATIONS):
                _admit_key(store, path, record=False)
            store.migrate()
            _admit_key(store, path)  # records the key's fingerprint (schema 15) if none yet
        except BaseException:
            conn.close()
            raise
        return store

    def plan_reader(self) -> PlanReader | None:
        """A second connection to this file, for a run's plans in a worker thread
        (plan_reader.py). It reads what is committed (WAL), as a plan on PostgreSQL does, and
        may write nothing (query_only). None in memory."""
        if self.path is None:
            return None
        conn = None
        try:
            conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise StoreError(f"cannot open the store {self.path} for planning: {exc}") from None
        reader = type(self)(sqlite_utils.Database(conn), self._key, migrate=False)
        reader.path, reader.fiction_only_key = self.path, self.fiction_only_key
        return PlanReader(reader)

    def close(self) -> None:
        self.db.conn.close()

    @classmethod
    def memory(cls, optout_key: bytes = b"test-key") -> "Store":
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        return cls(sqlite_utils.Database(conn), optout_key)


def _admit_key(store: Store, path: Path, record: bool = True) -> None:
    """Refuse the key beside a store of real numbers, then a key the list was not written
    with. "Move it out" is said only of a key beside the store that is its key. record=False:
    the same checks, writing nothing (before an upgrade)."""
    if store.fiction_only_key and store.real_number_held() is not None:
        raise StoreError(f"the store {path} holds real numbers and its opposition key sits "
                         f"beside it: {fix_hint(beside(path))}")
    try:
        store.check_optout_key() if record else store.verify_optout_key()
    except StoreError as exc:
        fiction = beside(path)
        key = read_key(fiction)
        leave = store.leave_fiction_key if record else store.would_leave_fiction_key
        if key is not None and not store.fiction_only_key and leave(key):
            return  # a demo store taking its real key before any opposition
        if key is None or not store.key_fits(key):
            raise
        raise StoreError(f"{exc}; or, if it was opened with the key beside it: "
                         f"{fix_hint(fiction)}") from None


def _create_private(path: Path) -> None:
    """A new store file readable by its owner only, whatever the umask: it holds voters'
    numbers (SQLite gives its -wal and -shm files the database file's mode)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        _make_private(path)


def _make_private(path: Path) -> None:
    """A store made by an older release (0644), its -wal and -shm too: owner-only now, said
    once on stderr. Not ours to change (another user's file): left as it is."""
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            mode = file.stat().st_mode
            if mode & 0o077 and stat.S_ISREG(mode):
                os.chmod(file, 0o600)
                print(f"note: {file} was readable by other users: now owner-only (0600)",
                      file=sys.stderr)
        except OSError:  # absent, or not this user's: the open says what is wrong, if anything
            pass
