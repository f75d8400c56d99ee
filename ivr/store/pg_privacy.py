"""The PostgreSQL backend's data-protection statements (twin of sqlite_privacy.py): proof,
access, erasure, retention. The policy is in ivr/records/privacy.py.

Timestamps are ISO-8601 UTC text (base.utc); retention casts them to timestamptz, so any ISO
form (Z or +00:00, with or without milliseconds) compares as an instant, as julianday() does.

Erasure and dead row versions: an UPDATE or DELETE leaves the old version of the row, number
included, in the table's pages; a plain VACUUM frees it for reuse but its bytes stay in the page
until overwritten (checked with pageinspect), and so do the index entries. Only VACUUM FULL
rewrites the table and its indexes without them. It cannot run inside a transaction, and the
erasure runs in the caller's (records/privacy.gdpr_erase), so it runs in checkpoint_wal, which
gdpr_erase calls right after its commit (SQLite empties its WAL there). Chosen: VACUUM FULL of
the tables the erasure changed, and only those. Its cost: an exclusive lock on each while it is
rewritten (on a large calls table, seconds during which claims wait); an erasure is a rare,
deliberate act, and a lock_timeout bounds the wait for the lock: when a long transaction holds
the table, checkpoint_wal returns False (as SQLite's busy checkpoint) and the next erasure
retries. The cluster's WAL segments and backups keep copies until they are recycled: that is
the operator's retention (README), as for the SQLite file's backups.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg

from ivr.store.base import Row, utc
from ivr.store.pg_core import PgCore

# Every table of the schema, with the statement that reads the rows whose text holds the
# number (the row cast to text: PostgreSQL filters, Python then checks each column).
# A table not listed here has no erasure rule: an erasure refuses to run while it exists.
SCANNED_TABLES: dict[str, str] = {
    "contacts": "SELECT * FROM contacts t WHERE strpos(t::text, %(n)s) > 0",
    "campaign_contacts": "SELECT * FROM campaign_contacts t WHERE strpos(t::text, %(n)s) > 0",
    "calls": "SELECT * FROM calls t WHERE strpos(t::text, %(n)s) > 0",
    "optouts": "SELECT * FROM optouts t WHERE strpos(t::text, %(n)s) > 0",
    "consents": "SELECT * FROM consents t WHERE strpos(t::text, %(n)s) > 0",
    "audit": "SELECT * FROM audit t WHERE strpos(t::text, %(n)s) > 0",
    # These hold no numbers by design; they are scanned so a number that leaked in is found.
    "controllers": "SELECT * FROM controllers t WHERE strpos(t::text, %(n)s) > 0",
    "run_control": "SELECT * FROM run_control t WHERE strpos(t::text, %(n)s) > 0",
    "run_snapshots": "SELECT * FROM run_snapshots t WHERE strpos(t::text, %(n)s) > 0",
    "users": "SELECT * FROM users t WHERE strpos(t::text, %(n)s) > 0",
    "api_tokens": "SELECT * FROM api_tokens t WHERE strpos(t::text, %(n)s) > 0",
    "schema_version": "SELECT * FROM schema_version t WHERE strpos(t::text, %(n)s) > 0",
}

# The tables whose rows can hold a number, each with the statement that rewrites it.
RECLAIM: dict[str, str] = {
    "contacts": "VACUUM FULL contacts",
    "calls": "VACUUM FULL calls",
    "consents": "VACUUM FULL consents",
    "optouts": "VACUUM FULL optouts",
    "audit": "VACUUM FULL audit",
}


class PgPrivacySQL(PgCore):
    _reclaim: frozenset[str] = frozenset()  # tables an erasure changed, not yet rewritten
    reclaim_lock_wait_ms = 5000  # how long checkpoint_wal waits for each table's lock

    def consents_of(self, number: str) -> list[Row]:
        """Consents, refusals and opt-outs recorded in calls to the number, oldest first."""
        return self._rows(
            "SELECT kind, key, at, caller_id, campaign, prompt_key, prompt_sha256, slot, call_id, "
            "heard_sha256, amd_status, answered_at FROM consents WHERE number = %(n)s "
            "ORDER BY at COLLATE \"C\", id", {"n": number})

    def optout_of(self, number: str) -> Row | None:
        """The opposition row, matched by keyed hash (found after the number was erased)."""
        return self._row("SELECT via, campaign, created_at, number FROM optouts "
                         "WHERE number_hash = %(h)s", {"h": self.number_hash(number)})

    def person_data(self, number: str) -> dict[str, Any]:
        """Every row about the number (right of access), JSON columns still as text."""
        p = {"n": number, "h": self.number_hash(number)}
        return {
            "contacts": self._rows("SELECT * FROM contacts WHERE number = %(n)s ORDER BY id", p),
            "campaigns": self._rows(
                "SELECT b.* FROM campaign_contacts b JOIN contacts k ON k.id = b.contact_id "
                "WHERE k.number = %(n)s ORDER BY b.bound_at COLLATE \"C\", "
                "b.campaign COLLATE \"C\"", p),
            "calls": self._rows(
                "SELECT * FROM calls WHERE number = %(n)s OR contact_id IN "
                "(SELECT id FROM contacts WHERE number = %(n)s) "
                "ORDER BY started_at COLLATE \"C\", id", p),
            "consents": self._rows(
                "SELECT * FROM consents WHERE number = %(n)s OR contact_id IN "
                "(SELECT id FROM contacts WHERE number = %(n)s) ORDER BY at COLLATE \"C\", id",
                p),
            "optout": self.optout_of(number),
            "audit": self._rows("SELECT * FROM audit WHERE subject_hash = %(h)s OR "
                                "strpos(detail, %(n)s) > 0 ORDER BY at COLLATE \"C\", id", p),
        }

    def erase_person(self, number: str, *, erased_number: str,
                     erased_text: str) -> dict[str, int]:
        """Carry out the erasure policy for one number; the caller holds the transaction."""
        p = {"n": number, "erased": erased_number, "h": self.number_hash(number),
             "text": erased_text}
        consents = self._exec(
            "DELETE FROM consents WHERE number = %(n)s OR contact_id IN (SELECT id FROM "
            "contacts WHERE number = %(n)s) OR call_id IN (SELECT id FROM calls WHERE "
            "number = %(n)s OR contact_id IN (SELECT id FROM contacts WHERE number = %(n)s))", p)
        calls = self._exec(
            "UPDATE calls SET number = %(erased)s, contact_id = NULL, channel_id = NULL, "
            "keys = '' WHERE number = %(n)s OR contact_id IN "
            "(SELECT id FROM contacts WHERE number = %(n)s)", p)
        # After the calls: a contact still referenced by a call cannot be deleted.
        self._exec("DELETE FROM campaign_contacts WHERE contact_id IN "
                   "(SELECT id FROM contacts WHERE number = %(n)s)", p)
        contacts = self._exec("DELETE FROM contacts WHERE number = %(n)s", p)
        optouts = self._exec("UPDATE optouts SET number = NULL WHERE number_hash = %(h)s "
                             "OR number = %(n)s", p)
        audit = self._exec("UPDATE audit SET detail = REPLACE(detail, %(n)s, %(text)s) "
                           "WHERE strpos(detail, %(n)s) > 0", p)
        # A keyed hash is a pseudonym that brute force reverses: kept only for an objector.
        self._exec("UPDATE audit SET subject_hash = NULL WHERE subject_hash = %(h)s AND NOT "
                   "EXISTS (SELECT 1 FROM optouts WHERE number_hash = %(h)s)", p)
        changed = {"contacts": contacts, "calls": calls, "consents": consents,
                   "optouts": optouts, "audit": audit}
        self._reclaim = self._reclaim | {t for t, n in changed.items() if n}
        return {"contacts": contacts, "calls": calls, "consents": consents,
                "optout_numbers_cleared": optouts, "audit_details_scrubbed": audit}

    def checkpoint_wal(self) -> bool:
        """After an erasure, outside any transaction: rewrite the tables it changed so no old
        row version keeps the number (module docstring). False when it could not (inside a
        transaction, or a table's lock not granted within lock_timeout): retried next time."""
        todo = self._reclaim
        if not todo:
            return True
        if getattr(self._local, "conn", None) is not None:  # VACUUM cannot run in a transaction
            return False
        with self.pool.connection() as conn:  # one connection: the SET applies to the VACUUMs
            self._local.conn = conn
            try:
                self._exec("SELECT set_config('lock_timeout', %(t)s, false)",
                           {"t": f"{self.reclaim_lock_wait_ms}ms"})
                for table, statement in RECLAIM.items():
                    if table in todo:
                        self._exec(statement)
                        self._reclaim = self._reclaim - {table}
            except psycopg.errors.LockNotAvailable:
                return False
            finally:
                self._local.conn = None
                conn.execute("RESET lock_timeout")
        return True

    def unscanned_columns(self) -> list[str]:
        """'table.column' of every column of a table SCANNED_TABLES does not know (this
        schema's tables only: another session's temporary tables are its own business)."""
        return [f"{r['tbl']}.{r['col']}" for r in self._rows(
            "SELECT table_name AS tbl, column_name AS col FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY table_name COLLATE \"C\", "
            "ordinal_position") if r["tbl"] not in SCANNED_TABLES]

    def places_holding(self, number: str) -> list[str]:
        """'table.column' of every place where the number still appears as a whole number
        (not as the start of a longer one), in the tables of SCANNED_TABLES."""
        pattern = re.compile(re.escape(number) + r"(?![0-9])")
        return [f"{table}.{column}" for table, sql in SCANNED_TABLES.items()
                for column in self._columns_matching(sql, number, pattern)]

    def _columns_matching(self, sql: str, number: str,
                          pattern: re.Pattern[str]) -> Iterator[str]:
        rows = self._rows(sql, {"n": number})
        found = {col for row in rows for col, value in row.items()
                 if isinstance(value, str) and pattern.search(value)}
        yield from (c for c in (rows[0] if rows else {}) if c in found)

    def purge_before(self, cutoff: datetime) -> dict[str, int]:
        """Delete what ended before the cutoff (policy in records/privacy.py); the caller
        holds the transaction."""
        p = {"cutoff": utc(cutoff)}
        consents = self._exec(
            "DELETE FROM consents WHERE at::timestamptz < %(cutoff)s::timestamptz", p)
        calls = self._exec(
            "DELETE FROM calls WHERE COALESCE(ended_at, started_at)::timestamptz < "
            "%(cutoff)s::timestamptz AND id NOT IN (SELECT call_id FROM consents WHERE "
            "call_id IS NOT NULL)", p)
        # A remaining call or consent means recent activity (or kept proof): keep the contact.
        self._exec(  # the bindings of the contacts deleted just below, first
            "DELETE FROM campaign_contacts WHERE contact_id IN (SELECT id FROM contacts WHERE "
            "updated_at::timestamptz < %(cutoff)s::timestamptz "
            "AND NOT EXISTS (SELECT 1 FROM calls WHERE calls.contact_id = contacts.id) "
            "AND NOT EXISTS (SELECT 1 FROM consents WHERE consents.contact_id = contacts.id))",
            p)
        contacts = self._exec(
            "DELETE FROM contacts WHERE updated_at::timestamptz < %(cutoff)s::timestamptz "
            "AND NOT EXISTS (SELECT 1 FROM calls WHERE calls.contact_id = contacts.id) "
            "AND NOT EXISTS (SELECT 1 FROM consents WHERE consents.contact_id = contacts.id)",
            p)
        optouts = self._exec(
            "UPDATE optouts SET number = NULL WHERE number IS NOT NULL "
            "AND created_at::timestamptz < %(cutoff)s::timestamptz", p)
        return {"calls": calls, "consents": consents, "contacts": contacts,
                "optout_numbers_cleared": optouts}
