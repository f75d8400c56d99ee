"""The store: one SQLite file through sqlite-utils. WAL, schema versions, one transaction per call.

Tables other tools read (the contract): contacts, calls, optouts; plus consents and audit.
This backend implements ivr.store.base.StoreBackend; its statements are in the sqlite_*
modules, all written out and parameterised (tests/test_security.py checks it).
"""
from __future__ import annotations

import os
import sqlite3
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import sqlite_utils

from ivr.errors import StoreError
from ivr.store import sqlite_runlock
from ivr.store.base import CallResult, Claim, History, RunOwner, parse_utc, utc
from ivr.store.schema import MIGRATIONS
from ivr.store.sqlite_calls import CallsSQL, campaign_tag
from ivr.store.sqlite_contacts import ContactsSQL
from ivr.store.sqlite_privacy import PrivacySQL
from ivr.store.sqlite_records import RecordsSQL

# Re-exported for the modules that import them from here (dialer, AGI, app, tests, bench).
__all__ = ["MIGRATIONS", "CallResult", "Claim", "History", "Store", "campaign_tag",
           "optout_key_for", "parse_utc", "utc"]


class Store(CallsSQL, RecordsSQL, PrivacySQL, ContactsSQL):
    path: Path | None = None  # the file (None in memory): the run lock lives beside it

    def hold_run(self, owner: RunOwner) -> AbstractContextManager[None]:
        """One `ivr run` at a time on this file (sqlite_runlock); nothing to hold in memory."""
        return sqlite_runlock.hold_run(self.path, owner) if self.path else nullcontext()

    @classmethod
    def open(cls, path: str | Path, optout_key: bytes | None = None,
             busy_timeout_s: float = 30.0) -> "Store":
        """busy_timeout_s: how long a write waits for a lock. The controller uses a short one
        so a locked file pauses the run instead of stalling every call in progress."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
            db = sqlite_utils.Database(conn)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA secure_delete=ON")  # erased personal data is overwritten
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store {path}: {exc}") from None
        store = cls(db, optout_key or optout_key_for(path))
        store.path = path
        return store

    @classmethod
    def memory(cls, optout_key: bytes = b"test-key") -> "Store":
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        return cls(sqlite_utils.Database(conn), optout_key)


def optout_key_for(db_path: Path) -> bytes:
    """The HMAC key for the opposition list: IVR_OPTOUT_KEY, else a key file kept beside the
    store (mode 0600, never in the repository). Changing it would forget every opposition."""
    env = os.environ.get("IVR_OPTOUT_KEY")
    if env:
        return env.encode()
    key_file = db_path.with_name(db_path.name + ".optout-key")
    if key_file.exists():
        return key_file.read_bytes().strip()
    value = os.urandom(32).hex().encode()
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(value)
    return value
