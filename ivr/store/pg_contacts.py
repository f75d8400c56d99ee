"""The PostgreSQL backend's contact-list writes (twin of sqlite_contacts.py): what an import
reads and writes, batch by batch.

An import remembers the numbers it has seen in a temporary table, so memory stays bounded
whatever the file size. A temporary table belongs to one connection, so `import_session` keeps
one pooled connection bound to this thread for the whole import: each batch's transaction()
then runs on it (a real BEGIN/COMMIT per batch, as on SQLite), and the table is dropped at the
end. Number lists travel as one array parameter (`= ANY(...)`).

Round trips: during an import session, add_contact and mark_seen_in_import only queue their
rows (at most one batch) when a transaction is open; the queue is written in one statement
each (arrays unnested in order, so ids are given as SQLite gives them) before any statement of
this module that could read them, and when a transaction (or savepoint) begins or ends well;
it is dropped when one fails. So the rows belong to the transaction that queued them, as if
written at once. Without the queue a 200,000-line import spent most of its time waiting for
two round trips a line.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from ivr.store.base import Row, utc
from ivr.store.pg_core import PgCore
from ivr.store.pg_schema import IMPORT_LOCK
from ivr.store.sqlite_contacts import UPDATABLE

CONTACT_COLUMNS = ("number", "name", "timezone", "source", "basis", "acquired_on", "extra",
                   "status", "ts")


@dataclass
class _Queued:
    """An import session's writes not sent yet (at most one batch)."""
    contacts: list[dict[str, Any]] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)


class PgContactsSQL(PgCore):
    @contextmanager
    def import_session(self) -> Iterator[None]:
        if getattr(self._local, "conn", None) is not None:  # already on one connection
            yield from self._seen_table()
            return
        with self.pool.connection() as conn:
            self._local.conn = conn
            try:
                yield from self._seen_table()
            finally:
                self._local.conn = None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """PgCore's, keeping an import session's queue with the transaction that queued it."""
        self._write_queued()  # what an enclosing scope queued is written in that scope
        with super().transaction():
            try:
                yield
            except BaseException:
                queued: _Queued | None = getattr(self._local, "queued", None)
                if queued is not None:
                    queued.contacts, queued.seen = [], []
                raise
            self._write_queued()

    def _queue(self) -> "_Queued | None":
        """The session's queue, when this thread is inside a transaction of the session."""
        queued: _Queued | None = getattr(self._local, "queued", None)
        conn = getattr(self._local, "conn", None)
        if queued is None or conn is None or \
                conn.info.transaction_status != TransactionStatus.INTRANS:
            return None
        return queued

    def _seen_table(self) -> Iterator[None]:
        try:  # before any row: a refusal here leaves the store as it was
            self._exec("CREATE TEMP TABLE IF NOT EXISTS ivr_import_seen "
                       "(number TEXT PRIMARY KEY)")
        except psycopg.errors.InsufficientPrivilege as exc:
            raise self.privilege_error(exc, "cannot import the contact list") from None
        self._exec("DELETE FROM pg_temp.ivr_import_seen")
        self._local.queued = _Queued()
        try:
            yield
            self._write_queued()
        finally:  # cleanup only; any exception still propagates (a failed batch's queue too)
            self._local.queued = None
            self._exec("DROP TABLE IF EXISTS pg_temp.ivr_import_seen")

    def _write_queued(self) -> None:
        """Write what add_contact and mark_seen_in_import queued (module docstring)."""
        queued: _Queued | None = getattr(self._local, "queued", None)
        if queued is None or not (queued.contacts or queued.seen):
            return
        contacts, seen = queued.contacts, queued.seen
        queued.contacts, queued.seen = [], []  # taken even if the write fails: never twice
        if contacts:
            cols = {c: [r[c] for r in contacts] for c in CONTACT_COLUMNS}
            self._exec(
                "INSERT INTO contacts (number, name, timezone, source, basis, acquired_on, "
                "extra, status, created_at, updated_at) SELECT number, name, timezone, source, "
                "basis, acquired_on, extra, status, ts, ts FROM unnest(%(number)s::text[], "
                "%(name)s::text[], %(timezone)s::text[], %(source)s::text[], "
                "%(basis)s::text[], %(acquired_on)s::text[], %(extra)s::text[], "
                "%(status)s::text[], %(ts)s::text[]) WITH ORDINALITY AS u(number, name, "
                "timezone, source, basis, acquired_on, extra, status, ts, ord) ORDER BY ord",
                cols)
        if seen:
            self._exec("INSERT INTO pg_temp.ivr_import_seen (number) "
                       "SELECT unnest(%(numbers)s::text[])", {"numbers": seen})

    def contacts_by_number(self, numbers: list[str]) -> dict[str, Row]:
        """The existing contacts among these numbers, with what a merge compares. In an
        import's batch transaction, whose inserts follow: taken under IMPORT_LOCK, held to the
        transaction's end, so another import's batch is read after it commits (SQLite's
        BEGIN IMMEDIATE does as much)."""
        self._write_queued()
        self._exec("SELECT pg_advisory_xact_lock(%s)", (IMPORT_LOCK,))
        rows = self._rows("SELECT id, number, name, timezone, source, basis, extra, status "
                          "FROM contacts WHERE number = ANY(%(numbers)s::text[])",
                          {"numbers": numbers})
        return {r["number"]: r for r in rows}

    def seen_in_import(self, numbers: list[str]) -> set[str]:
        """Which of these numbers an earlier batch of this import_session already had."""
        self._write_queued()
        return {r["number"] for r in self._rows(
            "SELECT number FROM pg_temp.ivr_import_seen WHERE number = "
            "ANY(%(numbers)s::text[])", {"numbers": numbers})}

    def mark_seen_in_import(self, number: str) -> None:
        queued = self._queue()
        if queued is not None:
            queued.seen.append(number)
            return
        self._exec("INSERT INTO pg_temp.ivr_import_seen (number) VALUES (%(n)s)",
                   {"n": number})

    def opted_out_among(self, numbers: list[str]) -> set[str]:
        """The numbers on the opposition list (by keyed hash)."""
        by_hash = dict(zip(self.number_hashes(numbers), numbers))
        # one text of hex hashes split by the server: psycopg quotes each element of a list
        # parameter through a regular expression (0.2-0.5 s for a plan's 100,000 numbers).
        # Joined (EXISTS), not `number_hash = ANY(array)`: the array, folded into the plan as
        # a constant, cost 4-5 ms of planning and filtering per 5,000 hashes, this ~1 ms.
        return {by_hash[r["number_hash"]] for r in self._rows(
            "SELECT h AS number_hash FROM unnest(string_to_array(%(hashes)s, ',')) h "
            "WHERE EXISTS (SELECT 1 FROM optouts o WHERE o.number_hash = h)",
            {"hashes": ",".join(by_hash)})}

    def add_contact(self, number: str, *, name: str | None, timezone: str | None, source: str,
                    basis: str | None, acquired_on: str | None, extra: str, status: str,
                    now: datetime) -> None:
        self.guard_key(number)
        if self.box_alias(number, now):  # opposed under another form of its box (box_lines)
            status = "opted_out"
        row = {"number": number, "name": name, "timezone": timezone, "source": source,
               "basis": basis, "acquired_on": acquired_on, "extra": extra, "status": status,
               "ts": utc(now)}
        queued = self._queue()
        if queued is not None:
            queued.contacts.append(row)
            return
        self._exec("INSERT INTO contacts (number, name, timezone, source, basis, acquired_on, "
                   "extra, status, created_at, updated_at) VALUES (%(number)s, %(name)s, "
                   "%(timezone)s, %(source)s, %(basis)s, %(acquired_on)s, %(extra)s, "
                   "%(status)s, %(ts)s, %(ts)s)", row)

    def update_contact(self, contact_id: int, changes: Mapping[str, Any],
                       now: datetime) -> None:
        """Set the given UPDATABLE columns; the others keep their values (NULL = unchanged)."""
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise ValueError(f"internal: contact columns {sorted(unknown)} are not updatable")
        self._write_queued()
        c = {col: changes.get(col) for col in UPDATABLE}
        self._exec(
            "UPDATE contacts SET name = COALESCE(%(name)s, name), "
            "timezone = COALESCE(%(timezone)s, timezone), extra = COALESCE(%(extra)s, extra), "
            "basis = COALESCE(%(basis)s, basis), status = COALESCE(%(status)s, status), "
            "updated_at = %(ts)s WHERE id = %(id)s", {**c, "ts": utc(now), "id": contact_id})

    def bind_contacts(self, numbers: list[str], *, campaign: str, source: str,
                      basis: str | None, acquired_on: str | None, now: datetime,
                      names: Mapping[str, str | None] | None = None) -> None:
        """As sqlite_contacts.bind_contacts: a binding made keeps its first provenance, name
        and progress; it gets a name it lacked, and the same list's date it lacked."""
        self._write_queued()
        p = {"campaign": campaign, "source": source, "basis": basis,
             "acquired_on": acquired_on, "ts": utc(now), "numbers": numbers,
             "names": [(names or {}).get(n) for n in numbers]}
        self._exec(
            "INSERT INTO campaign_contacts (contact_id, campaign, source, basis, acquired_on, "
            "status, bound_at, name) SELECT k.id, %(campaign)s, %(source)s, %(basis)s, "
            "%(acquired_on)s, CASE WHEN k.status = 'opted_out' THEN 'opted_out' "
            "ELSE 'pending' END, %(ts)s, v.name FROM unnest(%(numbers)s::text[], "
            "%(names)s::text[]) AS v(number, name) JOIN contacts k ON k.number = v.number "
            "ORDER BY k.id ON CONFLICT (contact_id, campaign) DO NOTHING", p)
        # Not ON CONFLICT DO UPDATE … WHERE: it locks every binding it meets, dated or not,
        # which a run settling calls meanwhile locks in the other order (a deadlock). These
        # lock only the bindings they change: one without a name this list gives, or a date.
        if any(p["names"]):
            self._exec(
                "UPDATE campaign_contacts b SET name = v.name FROM unnest(%(numbers)s::text[], "
                "%(names)s::text[]) AS v(number, name) JOIN contacts k ON k.number = v.number "
                "WHERE b.contact_id = k.id AND b.campaign = %(campaign)s AND b.name IS NULL "
                "AND v.name IS NOT NULL", p)
        if acquired_on is None:
            return
        self._exec(
            "UPDATE campaign_contacts SET acquired_on = %(acquired_on)s WHERE campaign = "
            "%(campaign)s AND acquired_on IS NULL AND source = %(source)s AND basis IS NOT "
            "DISTINCT FROM %(basis)s::text AND contact_id IN (SELECT id FROM contacts WHERE "
            "number = ANY(%(numbers)s::text[]))", p)

    def withdraw_pending(self, numbers: list[str], *, campaign: str) -> int:
        """Take these numbers' pending bindings to `campaign` out of the queue (opted_out):
        a later list says they objected or did not consent. Returns how many left it."""
        self._write_queued()
        return self._exec(
            "UPDATE campaign_contacts SET status = 'opted_out' WHERE campaign = %(campaign)s "
            "AND status = 'pending' AND contact_id IN (SELECT id FROM contacts WHERE number "
            "= ANY(%(numbers)s::text[]))", {"campaign": campaign, "numbers": numbers})

    def bindings_in(self, numbers: list[str], campaign: str) -> list[Row]:
        """Rows (number, source, basis): those of these numbers `campaign` has bound already,
        with the list and basis each was first bound with (bind_contacts keeps them)."""
        self._write_queued()
        return self._rows(
            "SELECT k.number, b.source, b.basis FROM contacts k JOIN campaign_contacts b "
            "ON b.contact_id = k.id AND b.campaign = %(campaign)s WHERE k.number = "
            "ANY(%(numbers)s::text[])", {"campaign": campaign, "numbers": numbers})

    def bound_elsewhere(self, numbers: list[str], campaign: str) -> set[str]:
        """Those of these numbers whose contact another campaign than `campaign` has bound."""
        self._write_queued()
        return {r["number"] for r in self._rows(
            "SELECT DISTINCT k.number FROM contacts k JOIN campaign_contacts b ON b.contact_id "
            "= k.id AND b.campaign <> %(campaign)s WHERE k.number = ANY(%(numbers)s::text[])",
            {"campaign": campaign, "numbers": numbers})}

    def share_list(self, source: str, *, campaign: str, basis: str, now: datetime,
                   from_campaign: str) -> int:
        """Bind list `source` of campaign `from_campaign` (its contacts bound under that name,
        and those imported under it before lists had campaigns) to `campaign` with `basis`;
        returns how many were newly bound. Another campaign's list of the same name stays its.
        A contact out of the origin's queue for an objection (withdraw_pending) is out of the
        new one's too."""
        self._write_queued()
        return self._exec(
            "INSERT INTO campaign_contacts (contact_id, campaign, source, basis, acquired_on, "
            "status, bound_at, name) SELECT k.id, %(campaign)s, %(source)s, %(basis)s, "
            # b: the list's binding in the origin campaign, as sqlite_contacts.share_list
            "CASE WHEN b.contact_id IS NULL THEN k.acquired_on ELSE b.acquired_on END, "
            "CASE WHEN k.status = 'opted_out' OR b.status = 'opted_out' THEN 'opted_out' "
            "ELSE 'pending' END, %(ts)s, CASE WHEN b.contact_id IS NULL THEN k.name ELSE "
            "b.name END FROM contacts k LEFT JOIN campaign_contacts b ON "
            "b.contact_id = k.id AND b.campaign = %(origin)s AND b.source = %(source)s "
            "WHERE b.contact_id IS NOT NULL OR (k.source = %(source)s AND NOT EXISTS (SELECT 1 "
            "FROM campaign_contacts a WHERE a.contact_id = k.id)) ORDER BY k.id "
            "ON CONFLICT (contact_id, campaign) DO NOTHING",
            {"campaign": campaign, "source": source, "basis": basis, "ts": utc(now),
             "origin": from_campaign})

    def list_exists(self, source: str, campaign: str) -> bool:
        """List `source` of `campaign`, or from before lists had campaigns."""
        self._write_queued()
        return bool(self._rows(
            "SELECT 1 AS x FROM campaign_contacts WHERE source = %(s)s AND campaign = %(c)s "
            "UNION ALL SELECT 1 FROM contacts k WHERE k.source = %(s)s AND NOT EXISTS (SELECT 1 "
            "FROM campaign_contacts b WHERE b.contact_id = k.id) LIMIT 1",
            {"s": source, "c": campaign}))
