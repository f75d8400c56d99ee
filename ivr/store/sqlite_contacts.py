"""The SQLite backend's contact-list writes: what an import reads and writes, batch by batch.

An import remembers the numbers it has seen in a temporary table, so memory stays bounded
whatever the file size; `import_session` creates and drops it.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from ivr.store.base import Row, utc
from ivr.store.sqlite_core import SQLiteCore

# The contact columns an import may fill in later (all others keep their first value).
UPDATABLE = frozenset({"name", "timezone", "extra", "basis", "status"})


class ContactsSQL(SQLiteCore):
    @contextmanager
    def import_session(self) -> Iterator[None]:
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS ivr_import_seen "
                        "(number TEXT PRIMARY KEY)")
        self.db.execute("DELETE FROM temp.ivr_import_seen")
        try:
            yield
        finally:  # cleanup only; any exception still propagates
            self.db.execute("DROP TABLE IF EXISTS temp.ivr_import_seen")

    def contacts_by_number(self, numbers: list[str]) -> dict[str, Row]:
        """The existing contacts among these numbers, with what a merge compares."""
        rows = self._rows("SELECT id, number, name, timezone, source, basis, extra, status "
                          "FROM contacts WHERE number IN (SELECT value FROM json_each(?))",
                          (json.dumps(numbers),))
        return {r["number"]: r for r in rows}

    def seen_in_import(self, numbers: list[str]) -> set[str]:
        """Which of these numbers an earlier batch of this import_session already had."""
        return {r["number"] for r in self._rows(
            "SELECT number FROM temp.ivr_import_seen WHERE number IN "
            "(SELECT value FROM json_each(?))", (json.dumps(numbers),))}

    def mark_seen_in_import(self, number: str) -> None:
        self.db.execute("INSERT INTO temp.ivr_import_seen (number) VALUES (?)", (number,))

    def opted_out_among(self, numbers: list[str]) -> set[str]:
        """The numbers on the opposition list (by keyed hash). A probe of optouts' index per
        hash (EXISTS): `number_hash IN (json_each)` first sorted the hashes into a temporary
        index, twice the time (0.1 s per 100,000)."""
        by_hash = dict(zip(self.number_hashes(numbers), numbers))
        return {by_hash[h] for (h,) in self.db.conn.execute(
            "SELECT j.value FROM json_each(?) j WHERE EXISTS (SELECT 1 FROM optouts o "
            "WHERE o.number_hash = j.value)", (json.dumps(list(by_hash)),))}

    def add_contact(self, number: str, *, name: str | None, timezone: str | None, source: str,
                    basis: str | None, acquired_on: str | None, extra: str, status: str,
                    now: datetime) -> None:
        self.guard_key(number)
        if self.box_alias(number, now):  # opposed under another form of its box (box_lines)
            status = "opted_out"
        ts = utc(now)
        self.db.execute("INSERT INTO contacts (number, name, timezone, source, basis, "
                        "acquired_on, extra, status, created_at, updated_at) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (number, name, timezone, source, basis, acquired_on, extra, status,
                         ts, ts))

    def update_contact(self, contact_id: int, changes: Mapping[str, Any],
                       now: datetime) -> None:
        """Set the given UPDATABLE columns; the others keep their values (NULL = unchanged)."""
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise ValueError(f"internal: contact columns {sorted(unknown)} are not updatable")
        c = {col: changes.get(col) for col in UPDATABLE}
        self.db.execute(
            "UPDATE contacts SET name = COALESCE(:name, name), "
            "timezone = COALESCE(:timezone, timezone), extra = COALESCE(:extra, extra), "
            "basis = COALESCE(:basis, basis), status = COALESCE(:status, status), "
            "updated_at = :ts WHERE id = :id", {**c, "ts": utc(now), "id": contact_id})

    def bind_contacts(self, numbers: list[str], *, campaign: str, source: str,
                      basis: str | None, acquired_on: str | None, now: datetime,
                      names: Mapping[str, str | None] | None = None) -> None:
        """Bind these contacts to a campaign with this list's provenance and `names` (number
        -> the name this list gives it). A binding that exists keeps its first provenance, its
        name and its progress (done stays done), and gets a name only if it had none; the
        same list and basis imported again with its acquisition date gives a binding without
        one it."""
        named = {n: (names or {}).get(n) for n in numbers}
        self.db.execute(
            "INSERT INTO campaign_contacts (contact_id, campaign, source, basis, "
            "acquired_on, status, bound_at, name) SELECT k.id, :c, :s, :b, :a, CASE WHEN "
            "k.status = 'opted_out' THEN 'opted_out' ELSE 'pending' END, :ts, j.value "
            "FROM json_each(:named) j JOIN contacts k ON k.number = j.key WHERE true "
            "ON CONFLICT (contact_id, campaign) DO UPDATE SET acquired_on = CASE WHEN "
            "campaign_contacts.acquired_on IS NULL AND campaign_contacts.source = "
            "excluded.source AND campaign_contacts.basis IS excluded.basis THEN "
            "excluded.acquired_on ELSE campaign_contacts.acquired_on END, "
            "name = COALESCE(campaign_contacts.name, excluded.name) WHERE "
            "(campaign_contacts.acquired_on IS NULL AND excluded.acquired_on IS NOT NULL AND "
            "campaign_contacts.source = excluded.source AND "
            "campaign_contacts.basis IS excluded.basis) OR "
            "(campaign_contacts.name IS NULL AND excluded.name IS NOT NULL)",
            {"c": campaign, "s": source, "b": basis, "a": acquired_on, "ts": utc(now),
             "named": json.dumps(named)})

    def withdraw_pending(self, numbers: list[str], *, campaign: str) -> int:
        """Take these numbers' pending bindings to `campaign` out of the queue (opted_out):
        a later list says they objected or did not consent. Returns how many left it."""
        return self.db.execute(
            # `+`: by the primary key (contact_id, campaign), never a walk of the campaign's
            # pending rows (the store has no ANALYZE statistics to tell the planner)
            "UPDATE campaign_contacts SET status = 'opted_out' WHERE +campaign = ? AND +status "
            "= 'pending' AND contact_id IN (SELECT id FROM contacts WHERE number IN (SELECT "
            "value FROM json_each(?)))", (campaign, json.dumps(numbers))).rowcount

    def bindings_in(self, numbers: list[str], campaign: str) -> list[Row]:
        """Rows (number, source, basis): those of these numbers `campaign` has bound already,
        with the list and basis each was first bound with (bind_contacts keeps them)."""
        return self._rows(
            # `+`: from the numbers, by the binding's primary key (contact_id, campaign); not a
            # walk of every binding of the campaign (75 ms a batch at 100,000 contacts)
            "SELECT k.number, b.source, b.basis FROM contacts k JOIN campaign_contacts b "
            "ON b.contact_id = k.id AND +b.campaign = :campaign WHERE k.number IN "
            "(SELECT value FROM json_each(:numbers))",
            {"campaign": campaign, "numbers": json.dumps(numbers)})

    def bound_elsewhere(self, numbers: list[str], campaign: str) -> set[str]:
        """Those of these numbers whose contact another campaign than `campaign` has bound."""
        return {r["number"] for r in self._rows(
            "SELECT DISTINCT k.number FROM contacts k JOIN campaign_contacts b ON b.contact_id "
            "= k.id AND b.campaign != :campaign WHERE k.number IN (SELECT value FROM "
            "json_each(:numbers))", {"campaign": campaign, "numbers": json.dumps(numbers)})}

    def share_list(self, source: str, *, campaign: str, basis: str, now: datetime,
                   from_campaign: str) -> int:
        """Bind list `source` of campaign `from_campaign` (its contacts bound under that name,
        and those imported under it before lists had campaigns) to `campaign` with `basis`;
        returns how many were newly bound. Another campaign's list of the same name stays its.
        A contact out of the origin's queue for an objection (withdraw_pending) is out of the
        new one's too."""
        cur = self.db.conn.execute(
            "INSERT OR IGNORE INTO campaign_contacts (contact_id, campaign, source, basis, "
            "acquired_on, status, bound_at, name) SELECT k.id, :campaign, :source, :basis, "
            # b: the list's binding in the origin campaign, one at most (its key). Its date,
            # none staying none, not the contact's first list's; the contact's own only for a
            # list from before campaigns (no binding at all). Opted out there: out here too.
            # The name too: the origin binding's (the list's), the contact's for such a list.
            "CASE WHEN b.contact_id IS NULL THEN k.acquired_on ELSE b.acquired_on END, "
            "CASE WHEN k.status = 'opted_out' OR b.status = 'opted_out' THEN 'opted_out' "
            "ELSE 'pending' END, :ts, CASE WHEN b.contact_id IS NULL THEN k.name ELSE "
            "b.name END FROM contacts k LEFT JOIN campaign_contacts b ON "
            "b.contact_id = k.id AND b.campaign = :origin AND b.source = :source "
            "WHERE b.contact_id IS NOT NULL OR (k.source = :source AND NOT EXISTS (SELECT 1 "
            "FROM campaign_contacts a WHERE a.contact_id = k.id))",
            {"campaign": campaign, "source": source, "basis": basis, "ts": utc(now),
             "origin": from_campaign})
        return int(cur.rowcount)

    def list_exists(self, source: str, campaign: str) -> bool:
        """List `source` of `campaign`, or from before lists had campaigns."""
        return bool(self._rows(
            "SELECT 1 FROM campaign_contacts WHERE source = :s AND campaign = :c UNION ALL "
            "SELECT 1 FROM contacts k WHERE k.source = :s AND NOT EXISTS (SELECT 1 FROM "
            "campaign_contacts b WHERE b.contact_id = k.id) LIMIT 1", {"s": source, "c": campaign}))
