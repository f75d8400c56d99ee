"""The SQLite backend's reads for planning, preflight and the report.

The report's reads have two written-out statements each, one campaign or all (None): an
`(:campaign IS NULL OR ...)` predicate would keep SQLite from using the index. Its call counts
come from call_counts (schema migration 10: kept by triggers), never from a scan of calls.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from ivr.store.base import Row, status_totals, utc
from ivr.store.sqlite_calls import OTHERS_OPEN_FOR
from ivr.store.sqlite_core import SQLiteCore


class RecordsSQL(SQLiteCore):
    # -- planning and preflight ---------------------------------------------------------------
    def pending_contacts(self, campaign: str) -> list[Row]:
        """The campaign's contacts still to call (its binding pending, the number not opposed),
        oldest first; the rules then judge them. Another campaign's contacts are never here."""
        return self._rows("SELECT k.* FROM contacts k JOIN campaign_contacts b "
                          "ON b.contact_id = k.id AND b.campaign = ? "
                          "WHERE b.status = 'pending' AND k.status != 'opted_out' "
                          "ORDER BY k.id", (campaign,))

    def plan_contacts(self, campaign: str, *, attempts_since: datetime,
                      refusals_since: datetime, now: datetime, chunk: int
                      ) -> Iterator[list[Row]]:
        """pending_contacts' contacts, in id order, `chunk` at a time from one statement
        (never all in memory), with the columns a plan and a dial read (id, number, name,
        timezone, source, slot: not `extra`, the list's other columns) and `plan_quiet`: 1 when
        the number's history as the judge reads it is empty but for the opposition list (no
        attempt after attempts_since nor without outcome, no retry_at after now, no refusal
        since refusals_since). The plan judges those without reading their history; the
        others' it reads (`history`). Each look-up walks an index by number."""
        cur = self.db.conn.execute(
            "SELECT k.id, k.number, k.name, k.timezone, b.source, k.slot, NOT EXISTS (SELECT 1 "
            "FROM calls c WHERE c.number = k.number AND (c.started_at > :a OR (c.outcome IS NULL "
            "AND (+c.campaign = :c OR c.started_at > :f)) OR c.retry_at > :now)) AND NOT EXISTS "
            "(SELECT 1 FROM consents s WHERE s.number = "
            "k.number AND s.kind = 'refusal' AND s.at >= :r) AS plan_quiet FROM contacts k "
            "JOIN campaign_contacts b ON b.contact_id = k.id AND b.campaign = :c WHERE "
            "b.status = 'pending' AND k.status != 'opted_out' ORDER BY k.id",
            {"c": campaign, "a": utc(attempts_since), "r": utc(refusals_since),
             "now": utc(now), "f": utc(now - OTHERS_OPEN_FOR)})
        cols = [d[0] for d in cur.description]
        while rows := cur.fetchmany(chunk):
            yield [dict(zip(cols, r)) for r in rows]

    def contact_status_counts(self, campaign: str | None = None) -> dict[str, int]:
        """Contacts per status: of one campaign (its bindings; an opposed number counts as
        opted_out), or of the whole store (None)."""
        return status_totals(self.contacts_per_source(campaign))

    def pending_sources(self, campaign: str) -> list[Row]:
        """Provenance (for this campaign) of every list it still has contacts to call. The
        opposed contacts are left out by id (a few, by contacts_status), not by a join per
        binding: preflight's 0.18 s at 100,000 was mostly the join (0.12 s without). A
        binding's contact always exists (NOT NULL, foreign key) and its status is NOT NULL."""
        return self._rows(
            "SELECT b.source AS source, b.basis AS basis, b.acquired_on AS acquired_on, "
            "COUNT(*) AS contacts FROM campaign_contacts b WHERE b.campaign = ? AND "
            "b.status = 'pending' AND b.contact_id NOT IN (SELECT id FROM contacts WHERE "
            "status = 'opted_out') GROUP BY 1, 2, 3 ORDER BY 1", (campaign,))

    def unbound_sources(self) -> list[Row]:
        """Lists whose pending contacts belong to no campaign (imported before campaigns)."""
        return self._rows(
            "SELECT source, COUNT(*) AS contacts FROM contacts k WHERE status = 'pending' "
            "AND NOT EXISTS (SELECT 1 FROM campaign_contacts b WHERE b.contact_id = k.id) "
            "GROUP BY source ORDER BY source")

    def contact_campaigns(self, number: str) -> list[Row]:
        """Every campaign this number is bound to, with the list and basis of each. An
        objection is the contact's status, for every campaign: folded in, as contacts_page
        does (a binding's own status stays what the run left, e.g. pending)."""
        return self._rows(
            "SELECT b.campaign, b.source, b.basis, b.acquired_on, CASE WHEN k.status = "
            "'opted_out' THEN 'opted_out' ELSE b.status END AS status, b.bound_at "
            "FROM campaign_contacts b JOIN contacts k ON k.id = b.contact_id "
            "WHERE k.number = ? ORDER BY b.bound_at, b.campaign", (number,))

    # -- the report ---------------------------------------------------------------------------
    def call_totals(self, campaign: str | None = None) -> tuple[int, int]:
        """(attempts, attempts without an outcome yet)."""
        if campaign is None:
            row = self._row(
                "SELECT SUM(n) AS n, SUM(CASE WHEN outcome IS NULL THEN n ELSE 0 END) AS open "
                "FROM call_counts")
        else:
            row = self._row(
                "SELECT SUM(n) AS n, SUM(CASE WHEN outcome IS NULL THEN n ELSE 0 END) AS open "
                "FROM call_counts WHERE campaign = :campaign",
                {"campaign": campaign})
        row = row or {}
        return int(row.get("n") or 0), int(row.get("open") or 0)

    def outcomes_per_attempt(self, campaign: str | None = None) -> dict[int, dict[str, int]]:
        """Ended calls per attempt number, then per outcome. A call_counts key whose calls
        all went elsewhere (a later outcome, an erasure) sums to 0: no count."""
        out: dict[int, dict[str, int]] = {}
        if campaign is None:
            rows = self._rows(
                "SELECT attempt, outcome, SUM(n) AS n FROM call_counts WHERE outcome IS NOT "
                "NULL GROUP BY attempt, outcome HAVING SUM(n) != 0 ORDER BY attempt, outcome")
        else:
            rows = self._rows(
                "SELECT attempt, outcome, SUM(n) AS n FROM call_counts WHERE campaign = "
                ":campaign AND outcome IS NOT NULL GROUP BY attempt, outcome HAVING SUM(n) != 0 "
                "ORDER BY attempt, outcome",
                {"campaign": campaign})
        for r in rows:
            out.setdefault(int(r["attempt"]), {})[r["outcome"]] = int(r["n"])
        return out

    def contacts_per_source(self, campaign: str | None = None) -> list[Row]:
        """source, status, n: the campaign's contacts (its bindings: the list and progress in
        that campaign, an opposed number as opted_out), or every contact of the store (None).
        A campaign's: its bindings per (list, status) from an index, then the bindings of the
        opposed numbers (few, found through contacts_status) moved to opted_out, so no join
        over every binding (CROSS JOIN: SQLite then walks the opposed contacts first)."""
        if campaign is None:
            rows = self._rows(
                "SELECT source, status, COUNT(*) AS n FROM contacts GROUP BY source, status "
                "ORDER BY source, status")
        else:
            rows = self._rows(
                "SELECT source, status, SUM(n) AS n FROM (SELECT source, status, COUNT(*) AS n "
                "FROM campaign_contacts WHERE campaign = :campaign GROUP BY source, status "
                "UNION ALL SELECT b.source, b.status, -COUNT(*) FROM contacts k CROSS JOIN "
                "campaign_contacts b ON b.contact_id = k.id AND b.campaign = :campaign WHERE "
                "k.status = 'opted_out' AND b.status != 'opted_out' GROUP BY b.source, b.status "
                "UNION ALL SELECT b.source, 'opted_out', COUNT(*) FROM contacts k CROSS JOIN "
                "campaign_contacts b ON b.contact_id = k.id AND b.campaign = :campaign WHERE "
                "k.status = 'opted_out' AND b.status != 'opted_out' GROUP BY b.source) GROUP BY "
                "source, status HAVING SUM(n) > 0 ORDER BY source, status",
                {"campaign": campaign})
        return rows

    def outcomes_per_source(self, campaign: str | None = None) -> list[Row]:
        """source (None for calls whose contact is gone), outcome, n, for ended calls; NULL
        source first, then by source and outcome."""
        if campaign is None:
            rows = self._rows(
                "SELECT source, outcome, SUM(n) AS n FROM call_counts WHERE outcome IS NOT NULL "
                "GROUP BY source, outcome HAVING SUM(n) != 0 ORDER BY source, outcome")
        else:
            rows = self._rows(
                "SELECT source, outcome, SUM(n) AS n FROM call_counts WHERE campaign = "
                ":campaign AND outcome IS NOT NULL GROUP BY source, outcome HAVING SUM(n) != 0 "
                "ORDER BY source, outcome",
                {"campaign": campaign})
        return rows

    def optout_count(self) -> int:
        row = self._row("SELECT COUNT(*) AS n FROM optouts") or {}
        return int(row.get("n") or 0)

    def export_calls(self, campaign: str | None = None) -> Iterator[Row]:
        """Every call with its contact's source, streamed in id order (the CSV export)."""
        cur = self.db.conn.execute(
            "SELECT c.id, c.contact_id, c.number, ifnull(b.source, k.source) AS source, c.attempt, "
            "c.campaign, "
            "c.channel_id, c.started_at, c.answered_at, c.ended_at, c.outcome, c.stage, c.keys, "
            "c.hangup_cause, c.prompts_sha256, c.caller_id FROM calls c LEFT JOIN contacts k "
            "ON k.id = c.contact_id LEFT JOIN campaign_contacts b ON b.contact_id = k.id AND "
            "b.campaign = c.campaign WHERE (:campaign IS NULL OR c.campaign = :campaign) "
            "ORDER BY c.id", {"campaign": campaign})
        cols = [c[0] for c in cur.description]
        for row in cur:
            yield dict(zip(cols, row))
