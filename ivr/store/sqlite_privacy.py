"""The SQLite backend's data-protection statements: proof, access, erasure, retention.

The policy (what is deleted, kept or scrubbed) is documented in ivr/records/privacy.py; the
statements that carry it out are written out here. Timestamps are compared with julianday(),
so any ISO-8601 UTC text (Z or +00:00, with or without milliseconds) compares correctly.
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from ivr.store import erasure_holds as holds
from ivr.store.base import Row, utc
from ivr.store.erasure_holds import PURGE_SQLITE
from ivr.store.other_cells import (extra_probes, extra_without, name_without, named_in,
                                   naming_columns, naming_rows)
from ivr.store.sqlite_core import SQLiteCore

# The retention purge, by chunks of ids (after, upto], in this order: old consents first (a
# call a kept consent points to is then known), calls, contacts left with no call nor consent
# (bindings first), old oppositions' clear numbers. Per step: the statement giving the chunk's
# last id and its size, then those run on the chunk.
PURGE_CHUNK = 10_000  # 0.2-0.4 s of write lock each (300,000 calls, 100,000 contacts)
PURGE_FROM = -(2 ** 63)  # below any id
PURGE_PAUSE_S = 0.11  # the lock left free after each chunk (see _purge_chunks)
PURGE_STEPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("consents",
     "SELECT max(id) AS upto, count(*) AS n FROM (SELECT id FROM consents WHERE id > :after AND "
     "julianday(at) < julianday(:cutoff) ORDER BY id LIMIT :limit) AS chunk",
     ("DELETE FROM consents WHERE id > :after AND id <= :upto AND "
      "julianday(at) < julianday(:cutoff)",)),
    ("calls",
     "SELECT max(id) AS upto, count(*) AS n FROM (SELECT id FROM calls WHERE id > :after AND "
     "julianday(COALESCE(ended_at, started_at)) < julianday(:cutoff) AND NOT EXISTS "
     "(SELECT 1 FROM consents WHERE consents.call_id = calls.id) ORDER BY id LIMIT :limit) "
     "AS chunk",
     ("DELETE FROM calls WHERE id > :after AND id <= :upto AND "
      "julianday(COALESCE(ended_at, started_at)) < julianday(:cutoff) AND NOT EXISTS "
      "(SELECT 1 FROM consents WHERE consents.call_id = calls.id)",)),
    ("contacts",
     # A contact past the retention: its row unchanged, no call, no consent, and no
     # campaign's binding of it since (a number another campaign imported or shared yesterday
     # keeps only its campaign_contacts row fresh: it was purged from that campaign's list)
     "SELECT max(id) AS upto, count(*) AS n FROM (SELECT id FROM contacts WHERE id > :after "
     "AND julianday(updated_at) < julianday(:cutoff) AND NOT EXISTS (SELECT 1 FROM calls WHERE "
     "calls.contact_id = contacts.id) AND NOT EXISTS (SELECT 1 FROM consents WHERE "
     "consents.contact_id = contacts.id) AND NOT EXISTS (SELECT 1 FROM campaign_contacts b "
     "WHERE b.contact_id = contacts.id AND julianday(b.bound_at) >= julianday(:cutoff)) "
     "ORDER BY id LIMIT :limit) AS chunk",
     ("DELETE FROM campaign_contacts WHERE contact_id IN (SELECT id FROM contacts WHERE "
      "id > :after AND id <= :upto AND julianday(updated_at) < julianday(:cutoff) AND NOT "
      "EXISTS (SELECT 1 FROM calls WHERE calls.contact_id = contacts.id) AND NOT EXISTS "
      "(SELECT 1 FROM consents WHERE consents.contact_id = contacts.id) AND NOT EXISTS "
      "(SELECT 1 FROM campaign_contacts b WHERE b.contact_id = contacts.id AND "
      "julianday(b.bound_at) >= julianday(:cutoff)))",
      "DELETE FROM contacts WHERE id > :after AND id <= :upto AND julianday(updated_at) < "
      "julianday(:cutoff) AND NOT EXISTS (SELECT 1 FROM calls WHERE calls.contact_id = "
      "contacts.id) AND NOT EXISTS (SELECT 1 FROM consents WHERE consents.contact_id = "
      "contacts.id) AND NOT EXISTS (SELECT 1 FROM campaign_contacts b WHERE b.contact_id = "
      "contacts.id AND julianday(b.bound_at) >= julianday(:cutoff))")),
    ("optout_numbers_cleared",
     "SELECT max(id) AS upto, count(*) AS n FROM (SELECT id FROM optouts WHERE id > :after AND "
     "number IS NOT NULL AND julianday(created_at) < julianday(:cutoff) ORDER BY id "
     "LIMIT :limit) AS chunk",
     ("UPDATE optouts SET number = NULL WHERE id > :after AND id <= :upto AND "
      "number IS NOT NULL AND julianday(created_at) < julianday(:cutoff)",)),
)


# The leftover scan: for every table of the schema, one written-out statement that returns the
# rows where a searched column may hold the number's text (Python then keeps only whole
# numbers). Left out, in the four big tables only: the columns the program fills with its own
# typed values (ids, counts, utc() timestamps, enumerations, DTMF keys, hex digests and their
# JSON maps), which cannot hold '+' and digits. A column listed nowhere (a new table, or a new
# column of a known one) stops an erasure until it is classified here.
# The big tables are not read row by row (300,000 calls took 60-100 ms): an E.164 number holds
# a '+', so every row where a free-text column could hold it is in that table's partial index
# "*_plus" (schema 12: the rows with a '+' in any such column; normally none), read in full.
# Its WHERE is repeated word for word below, which is how SQLite knows it may use the index
# (tests/test_web_erase_scan.py checks the plans). Two columns hold a '+' by design and are
# read otherwise: a number column through its index (a prefix range: every copy there starts
# with it), and caller_id (the campaign's caller ID, a few values) through its index, one seek
# per distinct value (the recursive `d`), one row per value holding the number's text.
Scan = tuple[str, tuple[str, ...], tuple[str, ...]]  # statement, searched columns, typed ones
SCANS: dict[str, Scan] = {
    "contacts": (
        "SELECT * FROM contacts WHERE number >= :n AND number < :above UNION ALL "
        "SELECT * FROM contacts WHERE (instr(name, '+') > 0 OR instr(timezone, '+') > 0 OR "
        "instr(source, '+') > 0 OR instr(basis, '+') > 0 OR instr(acquired_on, '+') > 0 OR "
        "instr(extra, '+') > 0 OR instr(slot, '+') > 0) AND (instr(name, :n) > 0 OR "
        "instr(timezone, :n) > 0 OR instr(source, :n) > 0 OR instr(basis, :n) > 0 OR "
        "instr(acquired_on, :n) > 0 OR instr(extra, :n) > 0 OR instr(slot, :n) > 0)",
        ("number", "name", "timezone", "source", "basis", "acquired_on", "extra", "slot"),
        ("id", "status", "created_at", "updated_at")),
    "campaign_contacts": (
        "SELECT * FROM campaign_contacts WHERE (instr(campaign, '+') > 0 OR "
        "instr(source, '+') > 0 OR instr(basis, '+') > 0 OR instr(acquired_on, '+') > 0 OR "
        "instr(name, '+') > 0) AND "
        "(instr(campaign, :n) > 0 OR instr(source, :n) > 0 OR instr(basis, :n) > 0 OR "
        "instr(acquired_on, :n) > 0 OR instr(name, :n) > 0)",
        ("campaign", "source", "basis", "acquired_on", "name"),
        ("contact_id", "status", "bound_at")),
    "calls": (
        "WITH RECURSIVE d(v) AS (SELECT min(caller_id) FROM calls UNION ALL "
        "SELECT (SELECT min(caller_id) FROM calls WHERE caller_id > d.v) FROM d "
        "WHERE d.v IS NOT NULL) "
        "SELECT * FROM calls WHERE number >= :n AND number < :above UNION ALL "
        "SELECT * FROM calls WHERE id IN (SELECT (SELECT c.id FROM calls c "
        "WHERE c.caller_id = d.v LIMIT 1) FROM d WHERE instr(d.v, :n) > 0) UNION ALL "
        "SELECT * FROM calls WHERE (instr(channel_id, '+') > 0 OR instr(campaign, '+') > 0 OR "
        "instr(node, '+') > 0 OR instr(controller, '+') > 0 OR "
        "instr(hangup_cause, '+') > 0 OR instr(amd_status, '+') > 0) AND "
        "(instr(caller_id, :n) > 0 OR instr(channel_id, :n) > 0 OR instr(campaign, :n) > 0 OR "
        "instr(node, :n) > 0 OR instr(controller, :n) > 0 OR instr(hangup_cause, :n) > 0 OR "
        "instr(amd_status, :n) > 0)",
        ("number", "campaign", "caller_id", "channel_id", "hangup_cause", "amd_status", "node",
         "controller"),
        ("id", "contact_id", "attempt", "state", "started_at", "answered_at", "ended_at",
         "outcome", "stage", "keys", "prompts_sha256", "retry_at", "token_hash")),
    "optouts": (
        "SELECT * FROM optouts WHERE instr(id, :n) > 0 OR instr(number_hash, :n) > 0 OR "
        "instr(number, :n) > 0 OR instr(via, :n) > 0 OR instr(campaign, :n) > 0 OR "
        "instr(created_at, :n) > 0",
        ("id", "number_hash", "number", "via", "campaign", "created_at"), ()),
    "consents": (
        "WITH RECURSIVE d(v) AS (SELECT min(caller_id) FROM consents UNION ALL "
        "SELECT (SELECT min(caller_id) FROM consents WHERE caller_id > d.v) FROM d "
        "WHERE d.v IS NOT NULL) "
        "SELECT * FROM consents WHERE number >= :n AND number < :above UNION ALL "
        "SELECT * FROM consents WHERE id IN (SELECT (SELECT c.id FROM consents c "
        "WHERE c.caller_id = d.v LIMIT 1) FROM d WHERE instr(d.v, :n) > 0) UNION ALL "
        "SELECT * FROM consents WHERE (instr(campaign, '+') > 0 OR "
        "instr(prompt_key, '+') > 0 OR instr(slot, '+') > 0 OR instr(amd_status, '+') > 0) "
        "AND (instr(caller_id, :n) > 0 OR instr(campaign, :n) > 0 OR "
        "instr(prompt_key, :n) > 0 OR instr(slot, :n) > 0 OR instr(amd_status, :n) > 0)",
        ("number", "caller_id", "campaign", "prompt_key", "slot", "amd_status"),
        ("id", "call_id", "contact_id", "kind", "key", "at", "prompt_sha256", "heard_sha256",
         "answered_at")),
    "audit": (
        "SELECT * FROM audit WHERE instr(id, :n) > 0 OR instr(at, :n) > 0 OR "
        "instr(action, :n) > 0 OR instr(subject_hash, :n) > 0 OR instr(detail, :n) > 0 OR "
        "instr(actor, :n) > 0",
        ("id", "at", "action", "subject_hash", "detail", "actor"), ()),
    # The report's counts (schema 10): a campaign and a list name are free text.
    "call_counts": (
        "SELECT * FROM call_counts WHERE instr(campaign, :n) > 0 OR instr(source, :n) > 0",
        ("campaign", "source"), ("attempt", "outcome", "slot", "n")),
    # The report.csv blocks (schema 11): a campaign name is free text.
    "call_chunks": (
        "SELECT * FROM call_chunks WHERE instr(campaign, :n) > 0",
        ("campaign",), ("block", "slot", "version")),
    # These hold no numbers by design; every column is read so a number that leaked in is found.
    "controllers": (
        "SELECT * FROM controllers WHERE instr(id, :n) > 0 OR instr(campaign, :n) > 0 OR "
        "instr(host, :n) > 0 OR instr(pid, :n) > 0 OR instr(started_at, :n) > 0 OR "
        "instr(heartbeat_at, :n) > 0 OR instr(lease_s, :n) > 0 OR instr(stopped_at, :n) > 0",
        ("id", "campaign", "host", "pid", "started_at", "heartbeat_at", "lease_s",
         "stopped_at"), ()),
    "run_control": (
        "SELECT * FROM run_control WHERE instr(campaign, :n) > 0 OR instr(desired, :n) > 0 OR "
        "instr(max_concurrent, :n) > 0 OR instr(calls_per_second, :n) > 0 OR "
        "instr(updated_at, :n) > 0 OR instr(updated_by, :n) > 0",
        ("campaign", "desired", "max_concurrent", "calls_per_second", "updated_at",
         "updated_by"), ()),
    "run_snapshots": (
        "SELECT * FROM run_snapshots WHERE instr(campaign, :n) > 0 OR "
        "instr(controller, :n) > 0 OR instr(at, :n) > 0 OR instr(snapshot, :n) > 0",
        ("campaign", "controller", "at", "snapshot"), ()),
    "users": (
        "SELECT * FROM users WHERE instr(id, :n) > 0 OR instr(name, :n) > 0 OR "
        "instr(role, :n) > 0 OR instr(password_hash, :n) > 0 OR instr(created_at, :n) > 0 OR "
        "instr(disabled, :n) > 0 OR instr(session_epoch, :n) > 0",
        ("id", "name", "role", "password_hash", "created_at", "disabled", "session_epoch"), ()),
    "api_tokens": (
        "SELECT * FROM api_tokens WHERE instr(id, :n) > 0 OR instr(user_id, :n) > 0 OR "
        "instr(token_hash, :n) > 0 OR instr(created_at, :n) > 0 OR "
        "instr(last_used_at, :n) > 0 OR instr(revoked_at, :n) > 0",
        ("id", "user_id", "token_hash", "created_at", "last_used_at", "revoked_at"), ()),
    # Schema 21: the campaigns a console user is bound to (a campaign name is free text).
    "user_campaigns": (
        "SELECT * FROM user_campaigns WHERE instr(user_id, :n) > 0 OR instr(campaign, :n) > 0",
        ("user_id", "campaign"), ()),
    "optout_key": (
        "SELECT * FROM optout_key WHERE instr(id, :n) > 0 OR instr(fingerprint, :n) > 0",
        ("id", "fingerprint"), ()),
    "erasure_holds": holds.SCAN_SQLITE,  # schema 18: hashes and times
}


# Other contacts' cells naming a person (store/other_cells.py: a "parrain" column, a name).
# The rows are first narrowed in SQL by the number's last three digits in a row, or its last
# four as two pairs around one separator (the French grouping "56 78"): every common grouping
# ("+33 612 345 678", "0612 345 678", "06 12 34 56 78") keeps one of them whole. A pass over
# contacts (no index holds a national form), which a rare, deliberate erasure or access
# request affords (~50 ms per 300,000). Python then keeps the cells that write the number.
EXTRA_NARROWING = ("SELECT id, number, extra, name FROM contacts WHERE extra GLOB :glob OR "
                   "instr(extra, :d3) > 0 OR name GLOB :glob OR instr(name, :d3) > 0 ORDER BY id")
# The same for the names bindings keep (schema 25: each campaign's list's), shaped as those
# rows: id is the contact's, and a binding has no extra cells.
BINDING_NARROWING = ("SELECT b.contact_id AS id, b.campaign, k.number, NULL AS extra, b.name "
                     "FROM campaign_contacts b JOIN contacts k ON k.id = b.contact_id WHERE "
                     "b.name GLOB :glob OR instr(b.name, :d3) > 0 ORDER BY b.contact_id, "
                     "b.campaign")


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

    def optouts_since(self, since: datetime | None, after_id: int = 0,
                      gaps: Sequence[int] = ()) -> list[Row]:
        """(id, number_hash) of the oppositions with an id above `after_id` or in `gaps`, in
        id order (the run's poll, callflow/opposed.py). With `since`: only those created at or
        after it, plus the newest row whatever its age (the poll's starting point); that read
        scans the table once, at the run's start."""
        if since is None:
            # Two reads by the primary key, not one with OR: SQLite scanned the whole table for
            # that, on the run's event loop at each tick (6 ms at 100,000 oppositions).
            return self._rows("SELECT id, number_hash FROM optouts WHERE id > :a UNION ALL "
                              "SELECT id, number_hash FROM optouts WHERE id IN (SELECT value "
                              "FROM json_each(:g)) AND id <= :a ORDER BY id",
                              {"a": after_id, "g": json.dumps(list(gaps))})
        return self._rows(
            "SELECT id, number_hash FROM optouts WHERE id > ? AND (julianday(created_at) >= "
            "julianday(?) OR id = (SELECT max(id) FROM optouts)) ORDER BY id",
            (after_id, utc(since)))

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
            "named_in_other_contacts": named_in(
                self.extra_naming(number) + self.bindings_naming(number), number),
            "erasure_hold": holds.hold_of(self._rows, holds.SQLITE, p["h"]),
        }

    def extra_naming(self, number: str) -> list[Row]:
        """Contacts (id, number, extra, cells) whose extra cells write `number` in any common
        form (EXTRA_NARROWING), the person's own row included."""
        return naming_rows(self._rows(EXTRA_NARROWING, extra_probes(number)), number)

    def bindings_naming(self, number: str) -> list[Row]:
        """Bindings (id, campaign, number, name, in_name) whose name writes `number`."""
        return naming_rows(self._rows(BINDING_NARROWING, extra_probes(number)), number)

    def call_in_progress(self, number: str, started_after: datetime) -> int | None:
        """The number's newest attempt without an outcome started after `started_after`
        (calls_number). Inside the erasure's BEGIN IMMEDIATE no claim can land after it."""
        row = self._row("SELECT id FROM calls WHERE number = ? AND outcome IS NULL AND "
                        "julianday(started_at) > julianday(?) ORDER BY id DESC LIMIT 1",
                        (number, utc(started_after)))
        return int(row["id"]) if row else None

    def erase_person(self, number: str, *, erased_number: str, erased_text: str,
                     now: datetime | None = None, cooldown: timedelta | None = None
                     ) -> dict[str, int]:
        """Carry out the erasure policy for one number; the caller holds the transaction."""
        conn, p = self.db.conn, {"n": number, "erased": erased_number}
        kept = holds.keep_hold(self._rows, conn.execute, holds.SQLITE, self.number_hash,
                               number, now, cooldown)  # first: it reads the rows erased below
        consents = conn.execute(
            "DELETE FROM consents WHERE number = :n OR contact_id IN (SELECT id FROM contacts "
            "WHERE number = :n) OR call_id IN (SELECT id FROM calls WHERE number = :n OR "
            "contact_id IN (SELECT id FROM contacts WHERE number = :n))", p).rowcount
        calls = conn.execute(
            "UPDATE calls SET number = :erased, contact_id = NULL, channel_id = NULL, keys = '' "
            "WHERE number = :n OR contact_id IN (SELECT id FROM contacts WHERE number = :n)",
            p).rowcount
        # Other people's rows keep all but the cells naming this one (a "parrain" column); a
        # row changed meanwhile is left as it is, and the scan after this finds it.
        cells = 0
        for r in self.extra_naming(number):
            if r["number"] != number and r["cells"]:
                cells += len(r["cells"]) * conn.execute(
                    "UPDATE contacts SET extra = ? WHERE id = ? AND extra = ?",
                    (extra_without(r["extra"], r["cells"], number), r["id"], r["extra"])).rowcount
            if r["number"] != number and r["in_name"]:  # another contact's name cell
                cells += conn.execute(
                    "UPDATE contacts SET name = ? WHERE id = ? AND name = ?",
                    (name_without(r["name"], number), r["id"], r["name"])).rowcount
        for r in self.bindings_naming(number):  # the same in another campaign's binding
            if r["number"] != number:
                cells += conn.execute(
                    "UPDATE campaign_contacts SET name = ? WHERE contact_id = ? AND "
                    "campaign = ? AND name = ?", (name_without(r["name"], number), r["id"],
                                                  r["campaign"], r["name"])).rowcount
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
                "optout_numbers_cleared": optouts, "audit_details_scrubbed": audit,
                "extra_cells_cleared": cells, "holds_kept": kept}

    def unscanned_columns(self) -> list[str]:
        """'table.column' of every column SCANS neither searches nor lists as typed."""
        known = {f"{t}.{c}" for t, (_, searched, typed) in SCANS.items()
                 for c in searched + typed}
        return [f"{r['tbl']}.{r['col']}" for r in self._rows(
            "SELECT m.name AS tbl, p.name AS col FROM sqlite_master m, "
            "pragma_table_info(m.name) p WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' "
            "ORDER BY m.name, p.cid") if f"{r['tbl']}.{r['col']}" not in known]

    def places_holding(self, number: str) -> list[str]:
        """'table.column' of every place where the number still appears as a whole number
        (not as the start of a longer one), in the columns SCANS searches."""
        pattern = re.compile(re.escape(number) + r"(?![0-9])")
        # Every text starting with the number sorts in [number, above): its last digit + 1.
        p = {"n": number, "above": number[:-1] + chr(ord(number[-1]) + 1)}
        present = {r["name"] for r in self._rows(  # a table of a later migration may not be
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        # An extra cell in national form too: the statements above see E.164 text only.
        extra = {"contacts": naming_columns(self.extra_naming(number)),
                 "campaign_contacts": naming_columns(self.bindings_naming(number))}
        return [f"{table}.{column}" for table, (sql, searched, _) in SCANS.items()
                if table in present for column in self._columns_matching(
                    sql, p, searched, pattern, extra.get(table, set()))]

    def _columns_matching(self, sql: str, p: dict[str, str], searched: tuple[str, ...],
                          pattern: re.Pattern[str], also: set[str]) -> Iterator[str]:
        found: set[str] = set(also)
        for row in self._rows(sql, p):
            found |= {c for c in searched if c not in found and isinstance(row[c], str)
                      and pattern.search(row[c])}
        yield from (c for c in searched if c in found)

    def purge_before(self, cutoff: datetime, now: datetime | None = None) -> dict[str, int]:
        """Delete what ended before the cutoff (policy in records/privacy.py), PURGE_CHUNK rows
        a transaction (one over millions of rows held the write lock ~50 s: other writers timed
        out). Each leaves the store consistent; a purge stopped midway, the next finishes."""
        p = {"cutoff": utc(cutoff)}
        counts = {key: self._purge_chunks(pick, change, p) for key, pick, change in PURGE_STEPS}
        with self.transaction():  # past runs' rows: one per `ivr run`, few
            self.db.conn.execute(
                "DELETE FROM run_snapshots WHERE julianday(at) < julianday(:cutoff) AND NOT "
                "EXISTS (SELECT 1 FROM controllers k WHERE k.id = run_snapshots.controller AND "
                "k.stopped_at IS NULL)", p)  # a live controller's snapshot stays however old
            self.db.conn.execute("DELETE FROM controllers WHERE stopped_at IS NOT NULL AND "
                                 "julianday(stopped_at) < julianday(:cutoff)", p)
            self.db.conn.execute(PURGE_SQLITE, holds.purge_params(now))
            # an old audit row keeps its keyed subject only for an objector (the optouts row
            # keeps that hash): anyone else's is a pseudonym a brute force reverses
            self.db.conn.execute(
                "UPDATE audit SET subject_hash = NULL WHERE subject_hash IS NOT NULL AND "
                "julianday(at) < julianday(:cutoff) AND NOT EXISTS (SELECT 1 FROM optouts o "
                "WHERE o.number_hash = audit.subject_hash)", p)
        time.sleep(PURGE_PAUSE_S)  # before the caller's audit row
        return {key: counts[key] for key in ("calls", "consents", "contacts",
                                             "optout_numbers_cleared")}

    def _purge_chunks(self, pick: str, change: tuple[str, ...], p: dict[str, Any]) -> int:
        """Run one step of PURGE_STEPS chunk by chunk, in id order; the rows it changed."""
        done, after = 0, PURGE_FROM
        while after is not None:
            with self.transaction():
                upto, n = self.db.conn.execute(
                    pick, {**p, "after": after, "limit": PURGE_CHUNK}).fetchone()
                if upto is not None:
                    for sql in change:  # the last statement's rows are the step's count
                        changed = self.db.conn.execute(sql, {**p, "after": after, "upto": upto})
                    done += changed.rowcount
            # A writer waiting on busy_timeout retries every 1-100 ms: this gap lets it in (the
            # next BEGIN, microseconds after the COMMIT, would starve it).
            time.sleep(PURGE_PAUSE_S)
            after = upto if n == PURGE_CHUNK else None
        return done
