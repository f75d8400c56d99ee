"""One `ivr run` per campaign and SQLite store: an advisory lock on a file beside the store.

The lock is an `fcntl.flock` on `<store>.<campaign tag>.run-lock`, which holds the owner (pid,
host, start time) as JSON. Runs of different campaigns share the store side by side (each sees
only its own contacts and calls); two runs of one campaign would dial its list twice. The kernel releases it when the process dies, however it dies, so a SIGKILLed
run never blocks the next one (which then reconciles what it left open). A store that several
controllers may share (PostgreSQL) implements `hold_run` by sharing the work instead.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ivr.errors import StoreError
from ivr.store.base import RunOwner, parse_utc, utc


def lock_path(store_path: Path, campaign: str) -> Path:
    """The campaign's lock file: a readable part of its name and a hash of all of it (two
    names that read alike never share a lock; any name is safe in a path)."""
    readable = re.sub(r"[^A-Za-z0-9_-]+", "-", campaign)[:40].strip("-")
    digest = hashlib.sha256(campaign.encode()).hexdigest()[:12]
    real = store_path.resolve()  # beside the file itself: a symlink to it shares its lock
    return real.with_name(f"{real.name}.{readable}-{digest}.run-lock")


def _read_owner(fd: int) -> RunOwner | None:
    try:
        raw = json.loads(os.pread(fd, 4096, 0).decode() or "null")
        return RunOwner(int(raw["pid"]), str(raw["host"]), parse_utc(raw["started"]))
    except (ValueError, TypeError, KeyError, OSError):  # mid-write or foreign content
        return None


def _write_owner(fd: int, owner: RunOwner) -> None:
    data = json.dumps({"pid": owner.pid, "host": owner.host, "started": utc(owner.started)})
    os.ftruncate(fd, 0)
    os.pwrite(fd, data.encode(), 0)


@contextmanager
def hold_run(store_path: Path, owner: RunOwner, campaign: str) -> Iterator[None]:
    """Hold the store for this campaign's run; StoreError (one line, naming the other run) if
    a run of the same campaign holds it."""
    path = lock_path(store_path, campaign)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot create the run lock {path} ({exc.strerror}): make its "
                         "folder writable") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _read_owner(fd)
            who = other.describe() if other else "another ivr run"
            raise StoreError(f"the store {store_path} is in use by {who} for campaign "
                             f"{campaign!r}: wait for it to end or stop it (Ctrl-C)") from None
        _write_owner(fd, owner)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # released: no owner to name any more
    finally:
        os.close(fd)  # closing the descriptor releases the flock



NO_LOCK_FILE = "no lock file"  # running_owner: no run ever held this campaign on this store


def running_owner(store_path: Path, campaign: str) -> RunOwner | str | None:
    """The owner of the run holding `campaign` on this store now; None when no run holds it
    (a controllers row left open is then a crashed run's); NO_LOCK_FILE when no run ever
    held it here (rows written by another tool: nothing to judge them by). Tried shared and
    non-blocking and released at once; a run of this process holds it through another
    descriptor, so it reads as held too (its owner unknown: pid -1)."""
    try:
        fd = os.open(lock_path(store_path, campaign), os.O_RDONLY)
    except FileNotFoundError:
        return NO_LOCK_FILE
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_owner(fd) or RunOwner(-1, "", parse_utc("1970-01-01T00:00:00Z"))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
