"""The PostgreSQL backend's reads for planning, preflight and the report (twin of
sqlite_records.py: same questions, same rows).

A campaign filter of None means every campaign: `(%(campaign)s::text IS NULL OR ...)` keeps one
written-out statement per question (the cast: PostgreSQL must know a NULL parameter's type);
the report's reads have two each instead (one campaign, all), and count calls from call_counts
(schema migration 10: kept by triggers), never from a scan of calls.
Text is ordered with COLLATE "C" and NULLs first, as SQLite orders them, so both backends give
the same rows in the same order whatever the database's locale.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

from ivr.store.base import History, Row, parse_utc, status_totals, utc
from ivr.store.pg_core import PgCore
from ivr.store.sqlite_calls import OTHERS_OPEN_FOR

log = logging.getLogger(__name__)


class PgRecordsSQL(PgCore):
    # -- planning and preflight ---------------------------------------------------------------
    def pending_contacts(self, campaign: str) -> list[Row]:
        """The campaign's contacts still to call (its binding pending, the number not opposed),
        oldest first; the rules then judge them. Another campaign's contacts are never here."""
        return self._rows("SELECT k.* FROM contacts k JOIN campaign_contacts b "
                          "ON b.contact_id = k.id AND b.campaign = %(campaign)s "
                          "WHERE b.status = 'pending' AND k.status != 'opted_out' "
                          "ORDER BY k.id", {"campaign": campaign})

    def plan_contacts(self, campaign: str, *, attempts_since: datetime,
                      refusals_since: datetime, now: datetime, chunk: int
                      ) -> Iterator[list[Row]]:
        """pending_contacts' contacts, in id order, `chunk` at a time, with the columns a plan
        and a dial read, and `plan_quiet` (sqlite_records.plan_contacts says what it means).
        One statement through a server-side cursor in one transaction (the plan's other
        reads join it): the server hashes the numbers with a recent past once, where a
        statement per chunk scanned calls again each time (and walked the bindings from the
        first), 9 s over 300,000 contacts. A row that is not quiet also carries
        `plan_history`: its History as `history` reads it but for the opposition list (the
        keyed hash is the client's), from the same statement: five statements per chunk
        were 0.4 s of waiting on the server at 100,000. Every row carries `plan_opposed`:
        whether its number is on the opposition list (opted_out_among, in the same
        transaction). The next chunk is fetched while the caller judges this one (one
        thread ahead, on this transaction's connection, used by one thread at a time): the
        server's FETCH no longer waits for the client, nor the client for it."""
        with self.transaction(), ThreadPoolExecutor(1, "plan-fetch") as ahead:
            # Planned for the whole result (a cursor is planned for its first 10 % by
            # default: a probe per contact instead of one hash), and not JIT-compiled (the
            # estimate of those probes made it compile for 0.7 s).
            self._exec("SET LOCAL cursor_tuple_fraction = 1.0")
            self._exec("SET LOCAL jit = off")
            with self._conn().cursor(name="plan_contacts") as cur:
                cur.execute(_PLAN, {"c": campaign, "a": utc(attempts_since),
                                    "r": utc(refusals_since), "now": utc(now),
                                    "f": utc(now - OTHERS_OPEN_FOR)})
                rows = cur.fetchmany(chunk)
                while rows:
                    opposed = self.opted_out_among([r["number"] for r in rows])
                    following = ahead.submit(cur.fetchmany, chunk)  # after the probe, not during
                    try:
                        yield [_with_history(r, opposed) for r in rows]
                    except BaseException:  # the caller stopped early (close, or an error
                        _settle(following)  # thrown in): the fetch ends before the cursor
                        raise  # and the transaction do, its failure not raised over the stop
                    rows = following.result()  # not stopping: a failed fetch is raised

    def contact_status_counts(self, campaign: str | None = None) -> dict[str, int]:
        """Contacts per status: of one campaign (its bindings; an opposed number counts as
        opted_out), or of the whole store (None)."""
        return status_totals(self.contacts_per_source(campaign))

    def pending_sources(self, campaign: str) -> list[Row]:
        """Provenance (for this campaign) of every list it still has contacts to call; the
        opposed left out by an anti-join on their ids (hashed: 40 ms instead of a join's
        85-120 at 100,000). NOT EXISTS, not NOT IN: PostgreSQL hashes a NOT IN subquery only
        while it fits in work_mem (~260,000 opposed), then rescans it for every binding."""
        return self._rows(
            "SELECT b.source AS source, b.basis AS basis, b.acquired_on AS acquired_on, "
            "COUNT(*) AS contacts FROM campaign_contacts b WHERE b.campaign = %(campaign)s "
            "AND b.status = 'pending' AND NOT EXISTS (SELECT 1 FROM contacts k "
            "WHERE k.id = b.contact_id AND k.status = 'opted_out') "
            "GROUP BY 1, 2, 3 ORDER BY b.source COLLATE \"C\"",
            {"campaign": campaign})

    def unbound_sources(self) -> list[Row]:
        """Lists whose pending contacts belong to no campaign (imported before campaigns)."""
        return self._rows(
            "SELECT source, COUNT(*) AS contacts FROM contacts k WHERE status = 'pending' "
            "AND NOT EXISTS (SELECT 1 FROM campaign_contacts b WHERE b.contact_id = k.id) "
            "GROUP BY source ORDER BY source COLLATE \"C\"")

    def contact_campaigns(self, number: str) -> list[Row]:
        """Every campaign this number is bound to, with the list and basis of each. An
        objection is the contact's status, for every campaign: folded in, as contacts_page
        does (a binding's own status stays what the run left, e.g. pending)."""
        return self._rows(
            "SELECT b.campaign, b.source, b.basis, b.acquired_on, CASE WHEN k.status = "
            "'opted_out' THEN 'opted_out' ELSE b.status END AS status, b.bound_at "
            "FROM campaign_contacts b JOIN contacts k ON k.id = b.contact_id "
            "WHERE k.number = %(number)s ORDER BY b.bound_at COLLATE \"C\", "
            "b.campaign COLLATE \"C\"", {"number": number})

    # -- the report ---------------------------------------------------------------------------
    def call_totals(self, campaign: str | None = None) -> tuple[int, int]:
        """(attempts, attempts without an outcome yet)."""
        if campaign is None:
            row = self._row(
                "SELECT SUM(n)::bigint AS n, (SUM(n) FILTER (WHERE outcome IS NULL))::bigint AS "
                "open FROM call_counts")
        else:
            row = self._row(
                "SELECT SUM(n)::bigint AS n, (SUM(n) FILTER (WHERE outcome IS NULL))::bigint AS "
                "open FROM call_counts WHERE campaign = %(campaign)s",
                {"campaign": campaign})
        row = row or {}
        return int(row.get("n") or 0), int(row.get("open") or 0)

    def outcomes_per_attempt(self, campaign: str | None = None) -> dict[int, dict[str, int]]:
        """Ended calls per attempt number, then per outcome. A call_counts key whose calls
        all went elsewhere (a later outcome, an erasure) sums to 0: no count."""
        out: dict[int, dict[str, int]] = {}
        if campaign is None:
            rows = self._rows(
                "SELECT attempt, outcome, SUM(n)::bigint AS n FROM call_counts WHERE outcome IS "
                "NOT NULL GROUP BY attempt, outcome HAVING SUM(n) != 0 ORDER BY attempt, "
                "outcome COLLATE \"C\"")
        else:
            rows = self._rows(
                "SELECT attempt, outcome, SUM(n)::bigint AS n FROM call_counts WHERE campaign = "
                "%(campaign)s AND outcome IS NOT NULL GROUP BY attempt, outcome HAVING SUM(n) "
                "!= 0 ORDER BY attempt, outcome COLLATE \"C\"",
                {"campaign": campaign})
        for r in rows:
            out.setdefault(int(r["attempt"]), {})[r["outcome"]] = int(r["n"])
        return out

    def contacts_per_source(self, campaign: str | None = None) -> list[Row]:
        """source, status, n: the campaign's contacts (its bindings: the list and progress in
        that campaign, an opposed number as opted_out), or every contact of the store (None).
        A campaign's: its bindings per (list, status) from an index, then the bindings of the
        opposed numbers (few, found through contacts_status) moved to opted_out, so no join
        over every binding."""
        if campaign is None:
            rows = self._rows(
                "SELECT source, status, COUNT(*) AS n FROM contacts GROUP BY source, status "
                "ORDER BY source COLLATE \"C\", status COLLATE \"C\"")
        else:
            rows = self._rows(
                "SELECT source, status, SUM(n)::bigint AS n FROM (SELECT source, status, "
                "COUNT(*) AS n FROM campaign_contacts WHERE campaign = %(campaign)s GROUP BY "
                "source, status UNION ALL SELECT b.source, b.status, -COUNT(*) FROM contacts k "
                "JOIN campaign_contacts b ON b.contact_id = k.id AND b.campaign = %(campaign)s "
                "WHERE k.status = 'opted_out' AND b.status != 'opted_out' GROUP BY b.source, "
                "b.status UNION ALL SELECT b.source, 'opted_out', COUNT(*) FROM contacts k JOIN "
                "campaign_contacts b ON b.contact_id = k.id AND b.campaign = %(campaign)s WHERE "
                "k.status = 'opted_out' AND b.status != 'opted_out' GROUP BY b.source) u GROUP "
                "BY source, status HAVING SUM(n) > 0 ORDER BY source COLLATE \"C\", status "
                "COLLATE \"C\"",
                {"campaign": campaign})
        return rows

    def outcomes_per_source(self, campaign: str | None = None) -> list[Row]:
        """source (None for calls whose contact is gone), outcome, n, for ended calls; in
        SQLite's order (NULL source first)."""
        if campaign is None:
            rows = self._rows(
                "SELECT source, outcome, SUM(n)::bigint AS n FROM call_counts WHERE outcome IS "
                "NOT NULL GROUP BY source, outcome HAVING SUM(n) != 0 ORDER BY source COLLATE "
                "\"C\" NULLS FIRST, outcome COLLATE \"C\"")
        else:
            rows = self._rows(
                "SELECT source, outcome, SUM(n)::bigint AS n FROM call_counts WHERE campaign = "
                "%(campaign)s AND outcome IS NOT NULL GROUP BY source, outcome HAVING SUM(n) != "
                "0 ORDER BY source COLLATE \"C\" NULLS FIRST, outcome COLLATE \"C\"",
                {"campaign": campaign})
        return rows

    def optout_count(self) -> int:
        row = self._row("SELECT COUNT(*) AS n FROM optouts") or {}
        return int(row.get("n") or 0)

    def export_calls(self, campaign: str | None = None) -> Iterator[Row]:
        """Every call with its contact's source, in id order (the CSV export), fetched in
        pages by id so a million calls never sit in memory at once."""
        after = 0
        while True:
            page = self._rows(
                "SELECT c.id, c.contact_id, c.number, COALESCE(b.source, k.source) AS source, "
                "c.attempt, c.campaign, "
                "c.channel_id, c.started_at, c.answered_at, c.ended_at, c.outcome, c.stage, "
                "c.keys, c.hangup_cause, c.prompts_sha256, c.caller_id FROM calls c "
                "LEFT JOIN contacts k ON k.id = c.contact_id LEFT JOIN campaign_contacts b ON "
                "b.contact_id = k.id AND b.campaign = c.campaign WHERE c.id > %(after)s AND "
                "(%(campaign)s::text IS NULL OR c.campaign = %(campaign)s) "
                "ORDER BY c.id LIMIT 5000", {"after": after, "campaign": campaign})
            yield from page
            if len(page) < 5000:
                return
            after = int(page[-1]["id"])


# The plan's statement: the quiet test, then for the other rows (only: CASE) what `history`
# reads, each a probe by number (calls_number, consents_number): the calls in flight (another
# campaign's only within OTHERS_OPEN_FOR of their start, sqlite_calls says why), the
# attempts since `a` in id order, the last refusal since `r`, the retry_at of the number's
# last call in this campaign.
_PLAN = (
    "SELECT q.*, CASE WHEN NOT q.plan_quiet THEN ARRAY[EXISTS (SELECT 1 FROM calls c WHERE "
    "c.number = q.number AND c.outcome IS NULL AND (c.campaign = %(c)s OR c.started_at > "
    "%(f)s))::text, (SELECT MAX(s.at) FROM consents s "
    "WHERE s.number = q.number AND s.kind = 'refusal' AND s.at >= %(r)s), (SELECT c.retry_at "
    "FROM calls c WHERE c.campaign = %(c)s AND c.number = q.number ORDER BY c.id DESC "
    "LIMIT 1)] || ARRAY(SELECT c.started_at FROM calls c WHERE c.number = q.number AND "
    "c.started_at > %(a)s ORDER BY c.id) END AS plan_history FROM (SELECT k.id, k.number, "
    "k.name, k.timezone, b.source, k.slot, NOT EXISTS (SELECT 1 FROM calls c WHERE "
    "c.number = k.number AND (c.started_at > %(a)s OR (c.outcome IS NULL AND (c.campaign = "
    "%(c)s OR c.started_at > %(f)s)) OR c.retry_at > %(now)s)) AND NOT EXISTS (SELECT 1 "
    "FROM consents s WHERE s.number = k.number AND "
    "s.kind = 'refusal' AND s.at >= %(r)s) AS plan_quiet FROM contacts k JOIN "
    "campaign_contacts b ON b.contact_id = k.id AND b.campaign = %(c)s WHERE b.status = "
    "'pending' AND k.status != 'opted_out') q ORDER BY q.id")


def _settle(fetch: Future[Any]) -> None:
    """Waits for a plan's fetch ahead once its caller stopped: the rows are not wanted, and a
    failure (the server gone) must not replace the caller's own exit (close()'s
    GeneratorExit, raised from close() or printed as "Exception ignored"): one line logged
    instead, its class and SQLSTATE only (a server's message may quote a row's values)."""
    try:
        fetch.result()
    except Exception as exc:  # noqa: BLE001 - whatever it was, the caller has left
        state = getattr(exc, "sqlstate", None)
        log.warning("plan: the next chunk's fetch failed after the caller stopped (%s%s): "
                    "ignored", type(exc).__name__, f", SQLSTATE {state}" if state else "")


def _with_history(row: Row, opposed: set[str]) -> Row:
    """plan_history's text array [in flight, last refusal, retry_at, attempts...] as the
    History `history` gives (in flight: that alone); plan_opposed from `opposed`."""
    row["plan_opposed"] = row["number"] in opposed
    h = row["plan_history"]
    if h is None:
        del row["plan_history"]
        return row
    if h[0] == "true":
        row["plan_history"] = History(in_flight=True)
    else:
        row["plan_history"] = History(
            attempts=[parse_utc(t) for t in h[3:]],
            last_refusal=parse_utc(h[1]) if h[1] is not None else None,
            retry_at=parse_utc(h[2]) if h[2] is not None else None)
    return row
