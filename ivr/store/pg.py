"""The PostgreSQL store (`store.url`): several controllers, one central database.

`PgStore` implements ivr.store.base.StoreBackend like the SQLite `Store`, assembled from
mixins on PgCore (pg_core.py); each holds its statements, written out and parameterised.
The password comes from IVR_STORE_PASSWORD, else libpq's environment or ~/.pgpass; never from
the URL (refused), the config, or a log line.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from ivr.errors import StoreError
from ivr.secret_files import read_or_create
from ivr.store.pg_calls import PgCallsSQL
from ivr.store.pg_console import PgConsoleSQL
from ivr.store.pg_contacts import PgContactsSQL
from ivr.store.pg_controllers import PgControllersSQL, check_lease
from ivr.store.pg_core import redact
from ivr.store.pg_export import PgExportSQL
from ivr.store.pg_schema import MIGRATIONS
from ivr.store.pg_privacy import PgPrivacySQL
from ivr.store.pg_records import PgRecordsSQL
from ivr.store.sqlite_optout_key import ENV as KEY_ENV
from ivr.store.sqlite_optout_key import KEY_SETTING, strong_enough, usable

PASSWORD_ENV = "IVR_STORE_PASSWORD"


def resolve_key(key_file: str | Path | None, create: bool = True) -> bytes | None:
    """The opposition list's HMAC key: IVR_OPTOUT_KEY, else store.optout_key_file (created
    0600 if absent; `create=False`: None instead). No key file beside a server: with neither,
    refuse."""
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode()
    if not key_file:
        raise StoreError(f"a PostgreSQL store needs the opposition key: set {KEY_ENV} or "
                         f"{KEY_SETTING} (the same key on every controller)")
    path = Path(key_file).expanduser().resolve()
    try:
        if not create and not path.exists():
            return None
        key = read_or_create(path, lambda: os.urandom(32).hex()).encode()
    except OSError as exc:
        raise StoreError(f"{KEY_SETTING} {path}: cannot read or create it "
                         f"({exc.strerror or exc}): fix the path or set {KEY_ENV}") from None
    return usable(key, f"{KEY_SETTING} {path}")  # never an empty key


def _key_source(key_file: str | Path | None) -> str:
    """Where resolve_key found the key, for a message."""
    if os.environ.get(KEY_ENV):
        return KEY_ENV
    return f"{KEY_SETTING} {Path(str(key_file)).expanduser()}"


def _key_for(store: "PgStore", key_file: str | Path | None) -> bytes:
    """The key file is made only for a new store, whose key is not set yet: a controller whose
    copy is missing must not start with a new key and dial every opposed number."""
    if store.has_optout_key():
        raise StoreError(f"{KEY_SETTING} {Path(str(key_file)).expanduser()} does not exist and "
                         "the store already has its opposition key: copy the key file from a "
                         f"controller that has it, or set {KEY_ENV} (a new key would forget "
                         "every opposition)")
    return resolve_key(key_file) or b""


def _admit_key(store: "PgStore", key: bytes | None, given: bytes | None,
               key_file: str | Path | None) -> None:
    """The key's checks before the store is upgraded, writing nothing: a refused open leaves
    it as the release that wrote it left it (that release can still open it)."""
    version = store.stored_version()
    if key is None:  # the key file is missing: made now only for an empty list
        store._key = _key_for(store, key_file)
    elif not given:  # the operator's key: a new store takes no short one
        strong_enough(key, _key_source(key_file), store.has_optout_key())
    if 0 < version < len(MIGRATIONS):
        store.verify_optout_key()


def connect_kwargs(url: str, connect_timeout_s: float) -> dict[str, Any]:
    """The connection's keyword arguments; StoreError if the URL carries a password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise StoreError(f"store.url {redact(url)!r} is not a PostgreSQL URL: use "
                         "postgresql://user@host:port/db") from None
    if "password" in parts:
        raise StoreError(f"store.url {redact(url)!r} holds a password: remove it and set "
                         f"{PASSWORD_ENV} (or libpq's PGPASSWORD / ~/.pgpass)")
    # A writable server only: after a failover the old primary may answer at this address as a
    # replica, where every write would fail (the test connection then refuses it in one line).
    # TCP keepalives and a user timeout: over a network that drops packets without a reset (a
    # failover, a host gone), a statement or a pooled connection fails within ~20 s instead of
    # blocking a store thread for the kernel's retransmissions (~15 min), the run unstoppable
    kwargs: dict[str, Any] = {"connect_timeout": max(1, round(connect_timeout_s)),
                              "application_name": "ivr", "target_session_attrs": "read-write",
                              "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 2,
                              "keepalives_count": 3, "tcp_user_timeout": 20000}
    password = os.environ.get(PASSWORD_ENV)
    if password:
        kwargs["password"] = password
    return kwargs


def _fix(why: str) -> str:
    """What to do about a connection refused for want of a password (libpq's words alone did
    not say where ivr takes it from); the password itself is never printed."""
    if "no password supplied" not in why:
        return ""
    return (f": set {PASSWORD_ENV} (or PGPASSFILE / ~/.pgpass; for the private PostgreSQL, "
            "`ivr db up` prints the PGPASSFILE line)")


class PgStore(PgCallsSQL, PgRecordsSQL, PgPrivacySQL, PgContactsSQL, PgConsoleSQL,
              PgControllersSQL, PgExportSQL):
    @classmethod
    def open(cls, url: str, optout_key: bytes | None = None, *,
             optout_key_file: str | Path | None = None, lease_s: float = 15.0,
             pool_size: int = 8, connect_timeout_s: float = 5.0) -> "PgStore":
        """Connect (one test connection first, for a clear one-line error), open the pool,
        apply the missing migrations. `pool_size`: connections at most; `lease_s`: this
        controller's lease (hold_run), at most 30 s."""
        kwargs = connect_kwargs(url, connect_timeout_s)
        lease = check_lease(lease_s)
        key = optout_key or resolve_key(optout_key_file, create=False)
        try:
            psycopg.connect(url, **kwargs).close()
        except psycopg.Error as exc:
            why = " ".join(line.strip() for line in str(exc).splitlines()) or type(exc).__name__
            raise StoreError(f"cannot open the store {redact(url)}: {why}{_fix(why)}") from None
        pool = ConnectionPool(url, kwargs={**kwargs, "autocommit": True,
                                           "row_factory": dict_row},
                              min_size=1, max_size=pool_size, open=False, name="ivr-store",
                              timeout=connect_timeout_s)
        # No check on checkout (it doubles the round trips): after a server restart a stale
        # connection fails once (OperationalError: retried) and the pool replaces it.
        pool.open(wait=True, timeout=connect_timeout_s)
        try:
            store = cls(pool, key or b"", url, kwargs, migrate=False)
            _admit_key(store, key, optout_key, optout_key_file)
            store.migrate()
            store.check_optout_key()  # records the key's fingerprint (schema 15) if none yet
        except BaseException:
            pool.close()
            raise
        store.lease_s = lease
        return store
