"""The store: one SQLite file through sqlite-utils. WAL, schema versions, one transaction per call.

Tables other tools read (the contract): contacts, calls, optouts; plus consents and audit.
All SQL here is parameterised; table and column names are constants of this module.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlite_utils

from ivr.errors import StoreError

ANSWERED_OUTCOMES = frozenset({"message_played", "message_partial", "declined",
                               "declined_partial", "no_input", "hangup_intro", "opted_out",
                               "machine"})
UNANSWERED_OUTCOMES = frozenset({"busy", "no_answer", "congestion", "failed"})
OUTCOMES = ANSWERED_OUTCOMES | UNANSWERED_OUTCOMES | {"error"}
CONTACT_STATUSES = ("pending", "done", "exhausted", "opted_out")

MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE contacts (
        id INTEGER PRIMARY KEY,
        number TEXT NOT NULL UNIQUE,           -- E.164
        name TEXT, timezone TEXT,
        source TEXT NOT NULL,                  -- list name (provenance)
        basis TEXT, acquired_on TEXT,          -- acquisition basis and date
        extra TEXT NOT NULL DEFAULT '{}',      -- other CSV columns, JSON
        status TEXT NOT NULL DEFAULT 'pending',
        slot TEXT,                             -- preferred calling slot from a consent
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL
    );
    CREATE TABLE calls (
        id INTEGER PRIMARY KEY,
        contact_id INTEGER REFERENCES contacts(id),
        number TEXT NOT NULL, attempt INTEGER NOT NULL, campaign TEXT NOT NULL,
        caller_id TEXT, channel_id TEXT UNIQUE,
        state TEXT NOT NULL DEFAULT 'created', -- created, dialing, answered, ended
        started_at TEXT NOT NULL, answered_at TEXT, ended_at TEXT,
        outcome TEXT, stage TEXT, keys TEXT NOT NULL DEFAULT '',
        hangup_cause TEXT, amd_status TEXT,
        prompts_sha256 TEXT NOT NULL DEFAULT '{}',  -- prompt key -> sha256, played to the end
        retry_at TEXT
    );
    CREATE INDEX calls_number ON calls(number);
    CREATE INDEX calls_contact ON calls(contact_id);
    CREATE TABLE optouts (
        id INTEGER PRIMARY KEY,
        number_hash TEXT NOT NULL UNIQUE,      -- HMAC-SHA256: survives erasure of the number
        number TEXT,                           -- cleared by `ivr gdpr erase`
        via TEXT NOT NULL, campaign TEXT, created_at TEXT NOT NULL
    );
    CREATE TABLE consents (
        id INTEGER PRIMARY KEY,
        call_id INTEGER REFERENCES calls(id), contact_id INTEGER, number TEXT,
        kind TEXT NOT NULL,                    -- consent, refusal, optout
        key TEXT, at TEXT NOT NULL, caller_id TEXT, campaign TEXT,
        prompt_key TEXT, prompt_sha256 TEXT, slot TEXT
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY, at TEXT NOT NULL, action TEXT NOT NULL,
        subject_hash TEXT, detail TEXT
    );
    """,
]


def utc(now: datetime) -> str:
    return now.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class CallResult:
    """What an answered call produced; written in one transaction by Store.finish_answered."""
    outcome: str
    stage: str
    keys: str
    heard: dict[str, str]  # prompt key -> sha256
    choice: str | None = None  # consent | refusal | optout
    choice_key: str | None = None
    answered_prompt: str | None = None
    answered_sha256: str | None = None
    slot: str | None = None
    amd_status: str | None = None
    hangup_cause: str | None = None  # Q.850, when the IVR saw the hangup


@dataclass
class History:
    """One number's past as the calling rules see it."""
    opted_out: bool = False
    attempts: list[datetime] = field(default_factory=list)
    last_refusal: datetime | None = None


class Store:
    def __init__(self, db: sqlite_utils.Database, optout_key: bytes) -> None:
        self.db = db
        self._key = optout_key
        self.migrate()

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
        return cls(db, optout_key or optout_key_for(path))

    @classmethod
    def memory(cls, optout_key: bytes = b"test-key") -> "Store":
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        return cls(sqlite_utils.Database(conn), optout_key)

    # -- schema -------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        current = self.version
        if current > len(MIGRATIONS):
            raise StoreError(f"the store has schema version {current}, newer than this "
                             f"program ({len(MIGRATIONS)}): upgrade ivr")
        for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
            with self.transaction():
                for statement in script.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number:d}")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing. Nested in another transaction (a batch of writes), it is a savepoint:
        it can fail alone without undoing the rest of the batch."""
        conn = self.db.conn
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

    def q(self, sql: str, params: tuple | dict = ()) -> list[dict[str, Any]]:
        cur = self.db.conn.execute(sql, params)
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def one(self, sql: str, params: tuple | dict = ()) -> dict[str, Any] | None:
        rows = self.q(sql, params)
        return rows[0] if rows else None

    # -- opposition list ----------------------------------------------------------------------
    def number_hash(self, number: str) -> str:
        return hmac.new(self._key, number.encode(), hashlib.sha256).hexdigest()

    def is_opted_out(self, number: str) -> bool:
        return self.one("SELECT 1 AS x FROM optouts WHERE number_hash = ?",
                        (self.number_hash(number),)) is not None

    def _add_optout(self, number: str, via: str, campaign: str | None, now: datetime) -> bool:
        h = self.number_hash(number)
        cur = self.db.execute(
            "INSERT OR IGNORE INTO optouts (number_hash, number, via, campaign, created_at) "
            "VALUES (?, ?, ?, ?, ?)", (h, number, via, campaign, utc(now)))
        self.db.execute("UPDATE contacts SET status = 'opted_out', updated_at = ? "
                        "WHERE number = ?", (utc(now), number))
        return cur.rowcount > 0

    def add_optout(self, number: str, via: str, now: datetime,
                   campaign: str | None = None) -> bool:
        """Opposition takes effect at once and for every campaign. True if it is new."""
        with self.transaction():
            added = self._add_optout(number, via, campaign, now)
            self._audit("optout", number, {"via": via, "campaign": campaign}, now)
        return added

    def _audit(self, action: str, number: str | None, detail: dict[str, Any],
               now: datetime) -> None:
        self.db.execute("INSERT INTO audit (at, action, subject_hash, detail) VALUES (?,?,?,?)",
                        (utc(now), action, self.number_hash(number) if number else None,
                         json.dumps(detail, ensure_ascii=False)))

    def audit(self, action: str, number: str | None, detail: dict[str, Any],
              now: datetime) -> None:
        with self.transaction():
            self._audit(action, number, detail, now)

    # -- calls --------------------------------------------------------------------------------
    def create_attempt(self, contact: dict[str, Any], campaign: str, caller_id: str,
                       now: datetime) -> dict[str, Any]:
        """Write the attempt before its Originate is sent, so a crash cannot lose it."""
        with self.transaction():
            cur = self.db.conn.execute(
                "INSERT INTO calls (contact_id, number, attempt, campaign, caller_id, state, "
                "started_at) VALUES (?, ?, 1 + (SELECT COUNT(*) FROM calls WHERE contact_id = ? "
                "AND campaign = ?), ?, ?, 'created', ?)",
                (contact["id"], contact["number"], contact["id"], campaign, campaign, caller_id,
                 utc(now)))
            call_id = int(cur.lastrowid)  # type: ignore[arg-type]
            # Unique across stores and runs sharing one PBX (Asterisk refuses a reused id).
            channel_id = f"ivr-{campaign_tag(campaign)}-{call_id}-{secrets.token_hex(4)}"
            cur = self.db.conn.execute(
                "UPDATE calls SET channel_id = ?, state = 'dialing' WHERE id = ? RETURNING *",
                (channel_id, call_id))
            cols = [c[0] for c in cur.description]
            row = dict(zip(cols, cur.fetchall()[0]))  # fetchall: the statement is finished
        return row

    def call(self, call_id: int) -> dict[str, Any] | None:
        return self.one("SELECT * FROM calls WHERE id = ?", (call_id,))

    def mark_answered(self, call_id: int, now: datetime) -> None:
        self.db.execute("UPDATE calls SET state = 'answered', answered_at = COALESCE("
                        "answered_at, ?) WHERE id = ? AND outcome IS NULL", (utc(now), call_id))

    def finish_answered(self, call_id: int, result: CallResult, now: datetime,
                        retry_at: datetime | None = None) -> bool:
        """Record an answered call and its proof of consent in one transaction.

        Returns False (and writes nothing) if the attempt already has its outcome: every attempt
        ends with exactly one outcome.
        """
        if result.outcome not in OUTCOMES:
            raise StoreError(f"unknown outcome {result.outcome!r}")
        with self.transaction():
            ts = utc(now)
            # The outcome check and the write are one statement: no row, no second outcome.
            cur = self.db.conn.execute(
                "UPDATE calls SET state = 'ended', outcome = ?, stage = ?, keys = ?, "
                "prompts_sha256 = ?, amd_status = ?, answered_at = COALESCE(answered_at, ?), "
                "ended_at = ?, hangup_cause = COALESCE(hangup_cause, ?), retry_at = ? "
                "WHERE id = ? AND outcome IS NULL "
                "RETURNING contact_id, number, caller_id, campaign",
                (result.outcome, result.stage, result.keys, json.dumps(result.heard),
                 result.amd_status, ts, ts, result.hangup_cause or "16",
                 utc(retry_at) if retry_at else None,
                 call_id))
            rows = cur.fetchall()
            if not rows:
                return False
            contact_id, number, caller_id, campaign = rows[0]
            if result.choice:
                self.db.conn.execute(
                    "INSERT INTO consents (call_id, contact_id, number, kind, key, at, caller_id,"
                    " campaign, prompt_key, prompt_sha256, slot) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (call_id, contact_id, number, result.choice,
                     result.choice_key, ts, caller_id, campaign,
                     result.answered_prompt, result.answered_sha256, result.slot))
            if result.choice == "optout":
                self._add_optout(number, "phone-key", campaign, now)
            elif result.choice == "consent" and result.slot:
                self.db.conn.execute("UPDATE contacts SET slot = ? WHERE id = ?",
                                     (result.slot, contact_id))
            self._settle_contact(contact_id, result.outcome, retry_at, now)
        return True

    def finish_unanswered(self, call_id: int, outcome: str, cause: str | None, now: datetime,
                          retry_at: datetime | None, stage: str | None = None) -> bool:
        if outcome not in OUTCOMES:
            raise StoreError(f"unknown outcome {outcome!r}")
        with self.transaction():
            row = self.db.conn.execute(
                "UPDATE calls SET state = 'ended', outcome = ?, hangup_cause = ?, ended_at = ?, "
                "retry_at = ?, stage = ? WHERE id = ? AND outcome IS NULL RETURNING contact_id",
                (outcome, cause, utc(now), utc(retry_at) if retry_at else None, stage,
                 call_id)).fetchall()
            if not row:
                return False
            self._settle_contact(row[0][0], outcome, retry_at, now)
        return True

    def set_hangup_cause(self, call_id: int, cause: str) -> None:
        self.db.execute("UPDATE calls SET hangup_cause = ? WHERE id = ?", (cause, call_id))

    def set_hangup_cause_by_channel(self, channel_id: str, cause: str) -> None:
        """One statement, no lookup: Hangup events arrive for every call."""
        self.db.execute("UPDATE calls SET hangup_cause = ? WHERE channel_id = ? AND "
                        "hangup_cause IS NOT ?", (cause, channel_id, cause))

    def _settle_contact(self, contact_id: int | None, outcome: str,
                        retry_at: datetime | None, now: datetime) -> None:
        if contact_id is None:
            return
        if outcome == "opted_out":
            status = "opted_out"
        elif outcome in ANSWERED_OUTCOMES:
            status = "done"
        else:
            status = "pending" if retry_at is not None else "exhausted"
        # An opted-out contact stays opted out, whatever a later outcome says.
        self.db.conn.execute("UPDATE contacts SET status = ?, updated_at = ? WHERE id = ? AND "
                             "status != 'opted_out'", (status, utc(now), contact_id))

    def open_calls(self) -> list[dict[str, Any]]:
        """Attempts without an outcome: in flight, or left behind by a crash."""
        return self.q("SELECT * FROM calls WHERE outcome IS NULL ORDER BY id")

    def history(self, numbers: list[str], attempts_since: datetime,
                refusals_since: datetime) -> dict[str, "History"]:
        """What the calling rules need for many numbers at once: a few queries per 500
        numbers instead of four per contact at every re-plan."""
        out = {n: History() for n in numbers}
        for i in range(0, len(numbers), 500):
            chunk = numbers[i:i + 500]
            marks = ",".join("?" * len(chunk))
            by_hash = {self.number_hash(n): n for n in chunk}
            for (h,) in self.db.conn.execute(
                    f"SELECT number_hash FROM optouts WHERE number_hash IN ({marks})",
                    list(by_hash)):
                out[by_hash[h]].opted_out = True
            for number, started in self.db.conn.execute(
                    f"SELECT number, started_at FROM calls WHERE number IN ({marks}) AND "
                    "started_at > ?", (*chunk, utc(attempts_since))):
                out[number].attempts.append(parse_utc(started))
            for number, at in self.db.conn.execute(
                    f"SELECT number, MAX(at) FROM consents WHERE number IN ({marks}) AND "
                    "kind = 'refusal' AND at >= ? GROUP BY number",
                    (*chunk, utc(refusals_since))):
                out[number].last_refusal = parse_utc(at)
        return out


@functools.lru_cache(maxsize=64)
def campaign_tag(campaign: str) -> str:
    """A dial-string-safe short tag for channel ids."""
    return hashlib.sha1(campaign.encode()).hexdigest()[:8]


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
