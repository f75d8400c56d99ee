"""The PostgreSQL backend's data-protection statements (twin of sqlite_privacy.py): proof,
access, erasure, retention. The policy is in ivr/records/privacy.py.

Timestamps are ISO-8601 UTC text (base.utc); retention casts them to timestamptz, so any ISO
form (Z or +00:00, with or without milliseconds) compares as an instant, as julianday() does.

The rewrite of the tables after an erasure (dead row versions) is pg_reclaim.py's.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from ivr.store import erasure_holds as holds, sqlite_privacy
from ivr.store.base import Row, utc
from ivr.store.erasure_holds import PURGE_PG
from ivr.store.pg_reclaim import PgReclaim
from ivr.store.sqlite_privacy import SCANS as SQLITE_SCANS
from ivr.store.other_cells import (extra_probes, extra_without, name_without, named_in,
                                   naming_columns, naming_rows)


def _pg(sql: str) -> str:
    """A statement of sqlite_privacy.PURGE_STEPS in PostgreSQL's words: the same rows, named
    parameters %(x)s, timestamps compared as timestamptz instead of by julianday()."""
    sql = re.sub(r":(\w+)", r"%(\1)s", sql)
    return re.sub(r"julianday\(([^()]*(?:\([^()]*\))?[^()]*)\)", r"\1::timestamptz", sql)


PURGE_STEPS = tuple((key, _pg(pick), tuple(map(_pg, change)))
                    for key, pick, change in sqlite_privacy.PURGE_STEPS)

# The leftover scan (twin of sqlite_privacy.SCANS): for every table of the schema, one
# written-out statement returning the rows where the number's text may be (Python then keeps
# only whole numbers). The columns the program fills with typed values are left out, as
# SQLite's SCANS classifies them (BIG_SCANS names the same columns: a test checks it). The big
# tables are not read row by row (300,000 calls' text columns took ~75 ms): an E.164 number
# holds a '+', so every row where a free-text column could hold it is in the table's partial
# index "*_plus" (schema 12: the rows with a '+' in such a column, or a number column that is
# not a bare E.164 number; normally none). Its WHERE is repeated word for word, so the planner
# proves the index covers the query. A bare E.164 number column is read by equality on its
# index (not a range: [number, last digit + 1) is empty for a number ending in 9 under any
# collation but C, where ':' sorts before the digits); caller_id, which holds a '+' by design
# (a few values), through its index, one seek per distinct value (the recursive `d`). The
# small tables are read whole (the row as text). A table listed nowhere, or a new column of a
# big table, stops an erasure.
BIG_SCANS: dict[str, str] = {
    "contacts":
        "SELECT * FROM contacts WHERE number = %(n)s UNION ALL "
        "SELECT * FROM contacts WHERE (number !~ '^[+][0-9]+$' OR strpos(name, '+') > 0 OR "
        "strpos(timezone, '+') > 0 OR strpos(source, '+') > 0 OR strpos(basis, '+') > 0 OR "
        "strpos(acquired_on, '+') > 0 OR strpos(extra, '+') > 0 OR strpos(slot, '+') > 0) "
        "AND (strpos(number, %(n)s) > 0 OR strpos(name, %(n)s) > 0 OR "
        "strpos(timezone, %(n)s) > 0 OR strpos(source, %(n)s) > 0 OR "
        "strpos(basis, %(n)s) > 0 OR strpos(acquired_on, %(n)s) > 0 OR "
        "strpos(extra, %(n)s) > 0 OR strpos(slot, %(n)s) > 0)",
    "campaign_contacts":
        "SELECT * FROM campaign_contacts WHERE (strpos(campaign, '+') > 0 OR "
        "strpos(source, '+') > 0 OR strpos(basis, '+') > 0 OR strpos(acquired_on, '+') > 0 "
        "OR strpos(name, '+') > 0) "
        "AND (strpos(campaign, %(n)s) > 0 OR strpos(source, %(n)s) > 0 OR "
        "strpos(basis, %(n)s) > 0 OR strpos(acquired_on, %(n)s) > 0 OR "
        "strpos(name, %(n)s) > 0)",
    "calls":
        "WITH RECURSIVE d(v) AS (SELECT min(caller_id) FROM calls UNION ALL "
        "SELECT (SELECT min(caller_id) FROM calls WHERE caller_id > d.v) FROM d "
        "WHERE d.v IS NOT NULL) "
        "SELECT * FROM calls WHERE number = %(n)s UNION ALL "
        "SELECT * FROM calls WHERE id = ANY(ARRAY(SELECT (SELECT c.id FROM calls c "
        "WHERE c.caller_id = d.v LIMIT 1) FROM d WHERE strpos(d.v, %(n)s) > 0)) UNION ALL "
        "SELECT * FROM calls WHERE ((number !~ '^[+][0-9]+$' AND number <> 'erased') OR "
        "strpos(channel_id, '+') > 0 OR strpos(campaign, '+') > 0 OR strpos(node, '+') > 0 OR "
        "strpos(controller, '+') > 0 OR strpos(hangup_cause, '+') > 0 OR "
        "strpos(amd_status, '+') > 0) AND (strpos(number, %(n)s) > 0 OR "
        "strpos(campaign, %(n)s) > 0 OR strpos(caller_id, %(n)s) > 0 OR "
        "strpos(channel_id, %(n)s) > 0 OR strpos(hangup_cause, %(n)s) > 0 OR "
        "strpos(amd_status, %(n)s) > 0 OR strpos(node, %(n)s) > 0 OR "
        "strpos(controller, %(n)s) > 0)",
    "consents":
        "WITH RECURSIVE d(v) AS (SELECT min(caller_id) FROM consents UNION ALL "
        "SELECT (SELECT min(caller_id) FROM consents WHERE caller_id > d.v) FROM d "
        "WHERE d.v IS NOT NULL) "
        "SELECT * FROM consents WHERE number = %(n)s UNION ALL "
        "SELECT * FROM consents WHERE id = ANY(ARRAY(SELECT (SELECT c.id FROM consents c "
        "WHERE c.caller_id = d.v LIMIT 1) FROM d WHERE strpos(d.v, %(n)s) > 0)) UNION ALL "
        "SELECT * FROM consents WHERE (number !~ '^[+][0-9]+$' OR "
        "strpos(campaign, '+') > 0 OR strpos(prompt_key, '+') > 0 OR strpos(slot, '+') > 0 OR "
        "strpos(amd_status, '+') > 0) AND (strpos(number, %(n)s) > 0 OR "
        "strpos(caller_id, %(n)s) > 0 OR strpos(campaign, %(n)s) > 0 OR "
        "strpos(prompt_key, %(n)s) > 0 OR strpos(slot, %(n)s) > 0 OR "
        "strpos(amd_status, %(n)s) > 0)",
}
SCANNED_TABLES: dict[str, str] = {
    **BIG_SCANS,
    "optouts": "SELECT * FROM optouts t WHERE strpos(t::text, %(n)s) > 0",
    "audit": "SELECT * FROM audit t WHERE strpos(t::text, %(n)s) > 0",
    # The report's counts (schema 10): a campaign and a list name are free text.
    "call_counts": "SELECT * FROM call_counts t WHERE strpos(t::text, %(n)s) > 0",
    # The report.csv blocks (schema 11): a campaign name is free text.
    "call_chunks": "SELECT * FROM call_chunks t WHERE strpos(t::text, %(n)s) > 0",
    # These hold no numbers by design; they are scanned so a number that leaked in is found.
    "controllers": "SELECT * FROM controllers t WHERE strpos(t::text, %(n)s) > 0",
    "run_control": "SELECT * FROM run_control t WHERE strpos(t::text, %(n)s) > 0",
    "run_snapshots": "SELECT * FROM run_snapshots t WHERE strpos(t::text, %(n)s) > 0",
    "users": "SELECT * FROM users t WHERE strpos(t::text, %(n)s) > 0",
    "api_tokens": "SELECT * FROM api_tokens t WHERE strpos(t::text, %(n)s) > 0",
    "user_campaigns": "SELECT * FROM user_campaigns t WHERE strpos(t::text, %(n)s) > 0",
    "optout_key": "SELECT * FROM optout_key t WHERE strpos(t::text, %(n)s) > 0",
    "schema_version": "SELECT * FROM schema_version t WHERE strpos(t::text, %(n)s) > 0",
    "erasure_holds": holds.SCAN_PG,  # schema 18: hashes and times
}
# A big table's columns the scan knows, searched or typed: SQLite's classification (twins).
KNOWN_COLUMNS = {t: {*SQLITE_SCANS[t][1], *SQLITE_SCANS[t][2]} for t in BIG_SCANS}

# Other contacts' extra cells naming a person, narrowed by its last three digits or its last
# four as two pairs (twin of sqlite_privacy.EXTRA_NARROWING, which says why).
EXTRA_NARROWING = ("SELECT id, number, extra, name FROM contacts WHERE extra LIKE %(like)s OR "
                   "strpos(extra, %(d3)s) > 0 OR name LIKE %(like)s OR strpos(name, %(d3)s) > 0 "
                   "ORDER BY id")
# The names bindings keep (schema 25), as sqlite_privacy.BINDING_NARROWING.
BINDING_NARROWING = ("SELECT b.contact_id AS id, b.campaign, k.number, NULL AS extra, b.name "
                     "FROM campaign_contacts b JOIN contacts k ON k.id = b.contact_id WHERE "
                     "b.name LIKE %(like)s OR strpos(b.name, %(d3)s) > 0 ORDER BY "
                     "b.contact_id, b.campaign COLLATE \"C\"")

class PgPrivacySQL(PgReclaim):
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

    def optouts_since(self, since: datetime | None, after_id: int = 0,
                      gaps: Sequence[int] = ()) -> list[Row]:
        """(id, number_hash) of the oppositions with an id above `after_id` or in `gaps` (ids
        skipped by an earlier read: given at the insert, committed later), in id order; with
        `since`, only those created at or after it plus the newest row (sqlite_privacy's)."""
        if since is None:
            return self._rows("SELECT id, number_hash FROM optouts WHERE id > %(a)s "
                              "OR id = ANY(%(g)s::bigint[]) ORDER BY id",
                              {"a": after_id, "g": list(gaps)})
        return self._rows(  # a hand-written created_at that is no time is not recent
            "SELECT id, number_hash FROM optouts WHERE id > %(a)s AND ((CASE WHEN created_at "
            "~ '^[0-9][0-9][0-9][0-9]-' THEN created_at::timestamptz END) >= %(s)s::timestamptz "
            "OR id = (SELECT max(id) FROM optouts)) ORDER BY id",
            {"a": after_id, "s": utc(since)})

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
                "SELECT * FROM calls WHERE number = %(n)s OR contact_id = ANY(ARRAY("
                "SELECT id FROM contacts WHERE number = %(n)s)) "
                "ORDER BY started_at COLLATE \"C\", id", p),
            "consents": self._rows(
                "SELECT * FROM consents WHERE number = %(n)s OR contact_id = ANY(ARRAY("
                "SELECT id FROM contacts WHERE number = %(n)s)) ORDER BY at COLLATE \"C\", id",
                p),
            "optout": self.optout_of(number),
            "audit": self._rows("SELECT * FROM audit WHERE subject_hash = %(h)s OR "
                                "strpos(detail, %(n)s) > 0 ORDER BY at COLLATE \"C\", id", p),
            "named_in_other_contacts": named_in(
                self.extra_naming(number) + self.bindings_naming(number), number),
            "erasure_hold": holds.hold_of(self._rows, holds.PG, p["h"]),
        }

    def extra_naming(self, number: str) -> list[Row]:
        """Contacts (id, number, extra, cells) whose extra cells write `number` in any common
        form (EXTRA_NARROWING), the person's own row included."""
        return naming_rows(self._rows(EXTRA_NARROWING, extra_probes(number)), number)

    def bindings_naming(self, number: str) -> list[Row]:
        """Bindings (id, campaign, number, name, in_name) whose name writes `number`."""
        return naming_rows(self._rows(BINDING_NARROWING, extra_probes(number)), number)

    def call_in_progress(self, number: str, started_after: datetime) -> int | None:
        """The number's newest attempt without an outcome started after `started_after`. The
        number's contacts are locked first, in the caller's transaction: a claim holding one
        (FOR UPDATE SKIP LOCKED) is waited for, so its attempt is seen here; a claim after
        this skips it (as in flight) until the erasure has committed."""
        self._exec("SELECT id FROM contacts WHERE number = %s FOR UPDATE", (number,))
        # CASE: only a timestamp is cast (a hand-written row's text would fail the cast).
        row = self._row("SELECT id FROM calls WHERE number = %s AND outcome IS NULL AND CASE "
                        "WHEN started_at ~ '^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]' THEN "
                        "started_at::timestamptz > %s::timestamptz END ORDER BY id DESC LIMIT 1",
                        (number, utc(started_after)))
        return int(row["id"]) if row else None

    def erase_person(self, number: str, *, erased_number: str, erased_text: str,
                     now: datetime | None = None, cooldown: timedelta | None = None
                     ) -> dict[str, int]:
        """Carry out the erasure policy for one number; the caller holds the transaction."""
        p = {"n": number, "erased": erased_number, "h": self.number_hash(number),
             "text": erased_text}
        kept = holds.keep_hold(self._rows, self._exec, holds.PG, self.number_hash, number,
                               now, cooldown)  # first: it reads the rows erased below
        # `x = ANY(ARRAY(SELECT ...))`, not `x IN (SELECT ...)`: an OR of the former is a
        # BitmapOr of indexes, of the latter a scan of the whole table (0.15 s over 300,000).
        consents = self._exec(
            "DELETE FROM consents WHERE number = %(n)s OR contact_id = ANY(ARRAY(SELECT id "
            "FROM contacts WHERE number = %(n)s)) OR call_id = ANY(ARRAY(SELECT id FROM calls "
            "WHERE number = %(n)s OR contact_id = ANY(ARRAY(SELECT id FROM contacts "
            "WHERE number = %(n)s))))", p)
        calls = self._exec(
            "UPDATE calls SET number = %(erased)s, contact_id = NULL, channel_id = NULL, "
            "keys = '' WHERE number = %(n)s OR contact_id = ANY(ARRAY("
            "SELECT id FROM contacts WHERE number = %(n)s))", p)
        # Other people's rows keep all but the cells naming this one (a "parrain" column); a
        # row changed meanwhile is left as it is, and the scan after this finds it.
        cells = 0
        for r in self.extra_naming(number):
            if r["number"] != number and r["cells"]:
                cells += len(r["cells"]) * self._exec(
                    "UPDATE contacts SET extra = %(x)s WHERE id = %(id)s AND extra = %(old)s",
                    {"x": extra_without(r["extra"], r["cells"], number), "id": r["id"],
                     "old": r["extra"]})
            if r["number"] != number and r["in_name"]:  # another contact's name cell
                cells += self._exec(
                    "UPDATE contacts SET name = %(x)s WHERE id = %(id)s AND name = %(old)s",
                    {"x": name_without(r["name"], number), "id": r["id"], "old": r["name"]})
        renamed = 0
        for r in self.bindings_naming(number):  # the same in another campaign's binding
            if r["number"] != number:
                renamed += self._exec(
                    "UPDATE campaign_contacts SET name = %(x)s WHERE contact_id = %(id)s AND "
                    "campaign = %(c)s AND name = %(old)s",
                    {"x": name_without(r["name"], number), "id": r["id"],
                     "c": r["campaign"], "old": r["name"]})
        # After the calls: a contact still referenced by a call cannot be deleted.
        # Its bindings' names (schema 25) are the person's data too: counted, to be rewritten.
        unbound = self._rows("WITH d AS (DELETE FROM campaign_contacts WHERE contact_id = ANY("
                             "ARRAY(SELECT id FROM contacts WHERE number = %(n)s)) RETURNING "
                             "name) SELECT count(name) AS n FROM d", p)[0]["n"]
        contacts = self._exec("DELETE FROM contacts WHERE number = %(n)s", p)
        optouts = self._exec("UPDATE optouts SET number = NULL WHERE number_hash = %(h)s "
                             "OR number = %(n)s", p)
        audit = self._exec("UPDATE audit SET detail = REPLACE(detail, %(n)s, %(text)s) "
                           "WHERE strpos(detail, %(n)s) > 0", p)
        # A keyed hash is a pseudonym that brute force reverses: kept only for an objector.
        # Counted in `changed` too: the old row versions holding it are rewritten as well.
        hashes = self._exec("UPDATE audit SET subject_hash = NULL WHERE subject_hash = %(h)s "
                            "AND NOT EXISTS (SELECT 1 FROM optouts WHERE number_hash = %(h)s)",
                            p)
        changed = {"contacts": contacts + cells, "calls": calls, "consents": consents,
                   "optouts": optouts, "audit": audit + hashes,
                   "campaign_contacts": renamed + unbound}
        self._erased(changed)  # rewritten after the commit (pg_reclaim.py)
        return {"contacts": contacts, "calls": calls, "consents": consents,
                "optout_numbers_cleared": optouts, "audit_details_scrubbed": audit,
                "extra_cells_cleared": cells + renamed, "holds_kept": kept}

    def unscanned_columns(self) -> list[str]:
        """'table.column' of every column of a table SCANNED_TABLES does not know, and of a
        big table's column KNOWN_COLUMNS does not list (this schema's tables only: another
        session's temporary tables are its own business). From the catalog: the
        information_schema view took 30 ms of each erasure, this 3 ms. The schema by name, not
        `current_schema()::regnamespace`, which folds case and refuses "ivr-prod"."""
        return [f"{r['tbl']}.{r['col']}" for r in self._rows(
            "SELECT c.relname AS tbl, a.attname AS col FROM pg_attribute a JOIN pg_class c "
            "ON c.oid = a.attrelid WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE "
            "nspname = current_schema()) AND c.relkind IN ('r', 'p', 'v', 'f') AND "
            "a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname COLLATE \"C\", a.attnum")
            if r["tbl"] not in SCANNED_TABLES
            or r["col"] not in KNOWN_COLUMNS.get(r["tbl"], {r["col"]})]

    def places_holding(self, number: str) -> list[str]:
        """'table.column' of every place where the number still appears as a whole number
        (not as the start of a longer one), in the tables of SCANNED_TABLES."""
        pattern = re.compile(re.escape(number) + r"(?![0-9])")
        p = {"n": number}
        present = {r["t"] for r in self._rows(  # a table of a later migration may not be
            "SELECT tablename AS t FROM pg_tables WHERE schemaname = current_schema()")}
        # An extra cell in national form too: the statements above see E.164 text only.
        extra = {"contacts": naming_columns(self.extra_naming(number)),
                 "campaign_contacts": naming_columns(self.bindings_naming(number))}
        return [f"{table}.{column}" for table, sql in SCANNED_TABLES.items() if table in present
                for column in self._columns_matching(sql, p, pattern, extra.get(table, set()))]

    def _columns_matching(self, sql: str, p: dict[str, str], pattern: re.Pattern[str],
                          also: set[str]) -> Iterator[str]:
        rows = self._rows(sql, p)
        found = also | {col for row in rows for col, value in row.items()
                        if isinstance(value, str) and pattern.search(value)}
        yield from (c for c in (rows[0] if rows else sorted(also)) if c in found)

    def purge_before(self, cutoff: datetime, now: datetime | None = None) -> dict[str, int]:
        """Delete what ended before the cutoff (policy in records/privacy.py), by chunks of
        sqlite_privacy.PURGE_CHUNK rows, one transaction each (the SQLite twin says why; here
        one transaction kept every changed row locked to its end: a write to one of them, a
        claim of an old contact, waited for the whole purge)."""
        p = {"cutoff": utc(cutoff)}
        counts = {key: self._purge_chunks(pick, change, p) for key, pick, change in PURGE_STEPS}
        with self.transaction():  # past runs' rows: one per `ivr run`, few
            self._exec(  # a live controller's snapshot stays however old
                "DELETE FROM run_snapshots WHERE at::timestamptz < %(cutoff)s::timestamptz AND "
                "NOT EXISTS (SELECT 1 FROM controllers k WHERE k.id = run_snapshots.controller "
                "AND k.stopped_at IS NULL)", p)
            self._exec("DELETE FROM controllers WHERE stopped_at IS NOT NULL AND "
                       "stopped_at::timestamptz < %(cutoff)s::timestamptz", p)
            self._exec(PURGE_PG, holds.purge_params(now))
            self._exec(  # an old row keeps its keyed subject for an objector only (SQLite's)
                "UPDATE audit SET subject_hash = NULL WHERE subject_hash IS NOT NULL AND "
                "at::timestamptz < %(cutoff)s::timestamptz AND NOT EXISTS (SELECT 1 FROM "
                "optouts o WHERE o.number_hash = audit.subject_hash)", p)
        return {key: counts[key] for key in ("calls", "consents", "contacts",
                                             "optout_numbers_cleared")}

    def _purge_chunks(self, pick: str, change: tuple[str, ...], p: dict[str, Any]) -> int:
        """Run one step of PURGE_STEPS chunk by chunk, in id order; the rows it changed."""
        done, after, size = 0, sqlite_privacy.PURGE_FROM, sqlite_privacy.PURGE_CHUNK
        while True:
            with self.transaction():
                got = self._rows(pick, {**p, "after": after, "limit": size})[0]
                if got["upto"] is None:
                    return done
                for sql in change:  # the last statement's rows are the step's count
                    changed = self._exec(sql, {**p, "after": after, "upto": got["upto"]})
                done += changed
            if got["n"] < size:
                return done
            after = got["upto"]
