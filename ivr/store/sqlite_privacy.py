"""The SQLite backend's data-protection statements: proof, access, erasure, retention.

The policy (what is deleted, kept or scrubbed) is documented in ivr/records/privacy.py; the
statements that carry it out are written out here. Timestamps are compared with julianday(),
so any ISO-8601 UTC text (Z or +00:00, with or without milliseconds) compares correctly.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from ivr.store.base import Row, utc
from ivr.store.sqlite_core import SQLiteCore

# Every table of the schema, with the statement that reads all its rows for the leftover scan.
# A table not listed here has no erasure rule: an erasure refuses to run while it exists.
SCANNED_TABLES: dict[str, str] = {
    "contacts": "SELECT * FROM contacts",
    "campaign_contacts": "SELECT * FROM campaign_contacts",
    "calls": "SELECT * FROM calls",
    "optouts": "SELECT * FROM optouts",
    "consents": "SELECT * FROM consents",
    "audit": "SELECT * FROM audit",
    # These hold no numbers by design; they are scanned so a number that leaked in is found.
    "controllers": "SELECT * FROM controllers",
    "run_control": "SELECT * FROM run_control",
    "run_snapshots": "SELECT * FROM run_snapshots",
    "users": "SELECT * FROM users",
    "api_tokens": "SELECT * FROM api_tokens",
}


class PrivacySQL(SQLiteCore):
    def consents_of(self, number: str) -> list[Row]:
        """Consents, refusals and opt-outs recorded in calls to the number, oldest first."""
        return self._rows(
            "SELECT kind, key, at, caller_id, campaign, prompt_key, prompt_sha256, slot, call_id, "
            "heard_sha256, amd_status, answered_at FROM consents WHERE number = ? "
            "ORDER BY at, id", (number,))

    def optout_of(self, number: str) -> Row | None:
        """The opposition row, matched by keyed hash (found after the number was erased)."""
        return self._row("SELECT via, campaign, created_at, number FROM optouts "
                         "WHERE number_hash = ?", (self.number_hash(number),))

    def person_data(self, number: str) -> dict[str, Any]:
        """Every row about the number (right of access), JSON columns still as text."""
        p = {"n": number, "h": self.number_hash(number)}
        return {
            "contacts": self._rows("SELECT * FROM contacts WHERE number = :n ORDER BY id", p),
            "campaigns": self._rows(
                "SELECT b.* FROM campaign_contacts b JOIN contacts k ON k.id = b.contact_id "
                "WHERE k.number = :n ORDER BY b.bound_at, b.campaign", p),
            "calls": self._rows(
                "SELECT * FROM calls WHERE number = :n OR contact_id IN "
                "(SELECT id FROM contacts WHERE number = :n) ORDER BY started_at, id", p),
            "consents": self._rows(
                "SELECT * FROM consents WHERE number = :n OR contact_id IN "
                "(SELECT id FROM contacts WHERE number = :n) ORDER BY at, id", p),
            "optout": self.optout_of(number),
            "audit": self._rows("SELECT * FROM audit WHERE subject_hash = :h OR "
                                "instr(detail, :n) > 0 ORDER BY at, id", p),
        }

    def erase_person(self, number: str, *, erased_number: str,
                     erased_text: str) -> dict[str, int]:
        """Carry out the erasure policy for one number; the caller holds the transaction."""
        conn, p = self.db.conn, {"n": number, "erased": erased_number}
        consents = conn.execute(
            "DELETE FROM consents WHERE number = :n OR contact_id IN (SELECT id FROM contacts "
            "WHERE number = :n) OR call_id IN (SELECT id FROM calls WHERE number = :n OR "
            "contact_id IN (SELECT id FROM contacts WHERE number = :n))", p).rowcount
        calls = conn.execute(
            "UPDATE calls SET number = :erased, contact_id = NULL, channel_id = NULL, keys = '' "
            "WHERE number = :n OR contact_id IN (SELECT id FROM contacts WHERE number = :n)",
            p).rowcount
        # After the calls: with foreign_keys=ON a contact still referenced cannot be deleted.
        conn.execute("DELETE FROM campaign_contacts WHERE contact_id IN "
                     "(SELECT id FROM contacts WHERE number = :n)", p)
        contacts = conn.execute("DELETE FROM contacts WHERE number = :n", p).rowcount
        optouts = conn.execute(
            "UPDATE optouts SET number = NULL WHERE number_hash = ? OR number = ?",
            (self.number_hash(number), number)).rowcount
        audit = conn.execute(
            "UPDATE audit SET detail = REPLACE(detail, ?, ?) WHERE instr(detail, ?) > 0",
            (number, erased_text, number)).rowcount
        # A keyed hash is a pseudonym that brute force reverses: kept only for an objector.
        conn.execute("UPDATE audit SET subject_hash = NULL WHERE subject_hash = :h AND NOT "
                     "EXISTS (SELECT 1 FROM optouts WHERE number_hash = :h)",
                     {"h": self.number_hash(number)})
        return {"contacts": contacts, "calls": calls, "consents": consents,
                "optout_numbers_cleared": optouts, "audit_details_scrubbed": audit}

    def unscanned_columns(self) -> list[str]:
        """'table.column' of every column of a table SCANNED_TABLES does not know."""
        return [f"{r['tbl']}.{r['col']}" for r in self._rows(
            "SELECT m.name AS tbl, p.name AS col FROM sqlite_master m, "
            "pragma_table_info(m.name) p WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' "
            "ORDER BY m.name, p.cid") if r["tbl"] not in SCANNED_TABLES]

    def places_holding(self, number: str) -> list[str]:
        """'table.column' of every place where the number still appears as a whole number
        (not as the start of a longer one), in the tables of SCANNED_TABLES."""
        pattern = re.compile(re.escape(number) + r"(?![0-9])")
        return [f"{table}.{column}" for table, sql in SCANNED_TABLES.items()
                for column in self._columns_matching(sql, pattern)]

    def _columns_matching(self, sql: str, pattern: re.Pattern[str]) -> Iterator[str]:
        cur = self.db.conn.execute(sql)
        cols = [c[0] for c in cur.description]
        found: set[str] = set()
        for row in cur:
            for col, value in zip(cols, row):
                if col not in found and isinstance(value, str) and pattern.search(value):
                    found.add(col)
        yield from (c for c in cols if c in found)

    def purge_before(self, cutoff: datetime) -> dict[str, int]:
        """Delete what ended before the cutoff (policy in records/privacy.py); the caller
        holds the transaction."""
        conn, p = self.db.conn, {"cutoff": utc(cutoff)}
        consents = conn.execute(
            "DELETE FROM consents WHERE julianday(at) < julianday(:cutoff)", p).rowcount
        calls = conn.execute(
            "DELETE FROM calls WHERE julianday(COALESCE(ended_at, started_at)) < "
            "julianday(:cutoff) AND id NOT IN (SELECT call_id FROM consents WHERE call_id IS "
            "NOT NULL)", p).rowcount
        # A remaining call or consent means recent activity (or kept proof): keep the contact.
        conn.execute(  # the bindings of the contacts deleted just below, first
            "DELETE FROM campaign_contacts WHERE contact_id IN (SELECT id FROM contacts WHERE "
            "julianday(updated_at) < julianday(:cutoff) "
            "AND NOT EXISTS (SELECT 1 FROM calls WHERE calls.contact_id = contacts.id) "
            "AND NOT EXISTS (SELECT 1 FROM consents WHERE consents.contact_id = contacts.id))",
            p)
        contacts = conn.execute(
            "DELETE FROM contacts WHERE julianday(updated_at) < julianday(:cutoff) "
            "AND NOT EXISTS (SELECT 1 FROM calls WHERE calls.contact_id = contacts.id) "
            "AND NOT EXISTS (SELECT 1 FROM consents WHERE consents.contact_id = contacts.id)",
            p).rowcount
        optouts = conn.execute(
            "UPDATE optouts SET number = NULL WHERE number IS NOT NULL "
            "AND julianday(created_at) < julianday(:cutoff)", p).rowcount
        return {"calls": calls, "consents": consents, "contacts": contacts,
                "optout_numbers_cleared": optouts}
