"""The SQLite backend's calls: claiming an attempt (its one number's history read under the
claim's lock) and its outcome. The history of many numbers at once: sqlite_history.py."""
from __future__ import annotations

import functools
import hashlib
import json
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from ivr.callflow import outcomes
from ivr.errors import StoreError
from ivr.store import erasure_holds
from ivr.store.base import (ERASED_NUMBER, CallResult, Claim, History, Judge, Row,
                             parse_utc, utc)
from ivr.store.sqlite_core import SQLiteCore

# Another campaign's open attempt holds its number "in flight" this long after its start: far
# above the longest call, so a live one is never doubled, while one a dead run left open (only
# its own campaign settles it) no longer blocks the number for good. Own ones: until settled.
OTHERS_OPEN_FOR = timedelta(days=1)


def _heard(result: CallResult) -> dict[str, str]:
    """The prompts heard to the end, and the one the key cut (the person heard part of it)."""
    heard = dict(result.heard)
    if result.answered_prompt and result.answered_sha256:
        heard.setdefault(result.answered_prompt, result.answered_sha256)
    return heard


def _settled(outcome: str, retry_at: datetime | None) -> tuple[str, bool]:
    """The contact's status after an attempt with this outcome, and whether it is final."""
    status = outcomes.contact_status(outcome, retry_planned=retry_at is not None)
    return status, status in outcomes.FINAL_STATUSES


def _known(outcome: str) -> None:
    if outcome not in outcomes.OUTCOMES:
        raise StoreError(f"unknown outcome {outcome!r}: known are {', '.join(outcomes.ORDER)}")


@functools.lru_cache(maxsize=64)
def campaign_tag(campaign: str) -> str:
    """A dial-string-safe short tag for channel ids."""
    return hashlib.sha1(campaign.encode()).hexdigest()[:8]


class CallsSQL(SQLiteCore):
    # -- claiming an attempt ------------------------------------------------------------------
    def claim_attempt(self, contact: Mapping[str, Any], *, campaign: str, caller_id: str,
                      node: str, now: datetime, attempts_since: datetime,
                      refusals_since: datetime, judge: Judge,
                      token_hash: str | None = None) -> Claim:
        """Read the number's history, judge it and write the attempt, all in one transaction
        (BEGIN IMMEDIATE): two controllers cannot both dial the same number. `token_hash`:
        the SHA-256 of the attempt's FastAGI token (the token itself never reaches the store)."""
        number = contact["number"]
        with self.transaction():
            past, bound = self._history_of(contact["id"], number, attempts_since,
                                           refusals_since, campaign, now)
            # Out of the queue since the run planned it (a later list's objection, say: the
            # plan may be hours old), or erased since (no row: never dialled, and its attempt
            # would break the calls' foreign key): skipped, as pg_calls does.
            if past.current is None or bound not in (None, "pending"):
                return Claim(call=None, decision=judge(History(in_flight=True)))
            decision = judge(past)
            if not decision.allowed:
                if past.opted_out:  # keep the contact's status true to the opposition list
                    self.db.conn.execute(
                        "UPDATE contacts SET status = 'opted_out', updated_at = ? "
                        "WHERE id = ? AND status != 'opted_out'", (utc(now), contact["id"]))
                return Claim(call=None, decision=decision)
            row = self._insert_attempt(contact, campaign, caller_id, node, now, token_hash)
        return Claim(call=row, decision=decision)

    def _history_of(self, contact_id: int, number: str, attempts_since: datetime,
                    refusals_since: datetime, campaign: str, now: datetime
                    ) -> tuple[History, str | None]:
        """One number's history in one statement (the claim's hot path; `history` reads many
        numbers in six). The same six answers, each through its index (the last: what an
        erasure of the number kept, erasure_holds), and the contact's slot and timezone as
        they are now (`History.current`: the plan's row may be hours old); with the status of
        its binding to the campaign (None: not bound)."""
        row = self.db.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM optouts WHERE number_hash = :h), "
            "EXISTS (SELECT 1 FROM calls WHERE number = :n AND outcome IS NULL AND "
            "(+campaign = :c OR started_at > :f)), "
            "(SELECT json_group_array(started_at) FROM calls WHERE number = :n "
            "AND started_at > :a), "
            "(SELECT MAX(at) FROM consents WHERE number = :n AND kind = 'refusal' "
            "AND at >= :r), "
            # `+campaign`: by number (calls_number), as in _fill_history
            "(SELECT retry_at FROM calls WHERE number = :n AND +campaign = :c "
            "ORDER BY id DESC LIMIT 1), "
            # NULL when the row is gone (erased meanwhile): the claim skips it
            "(SELECT json_array(k.slot, k.timezone, (SELECT b.status FROM campaign_contacts b "
            "WHERE b.contact_id = k.id AND b.campaign = :c)) FROM contacts k WHERE k.id = :k), "
            "(SELECT json_array(last_refusal, attempts, kept_until) FROM erasure_holds "
            "WHERE number_hash = :h)",
            {"h": self.number_hash(number), "n": number, "a": utc(attempts_since),
             "r": utc(refusals_since), "c": campaign, "k": contact_id,
             "f": utc(now - OTHERS_OPEN_FOR)}).fetchall()[0]
        opted_out, in_flight, attempts, last_refusal, retry_at, now_row, hold = row
        slot, zone, bound = json.loads(now_row) if now_row else (None, None, None)
        current = {"slot": slot, "timezone": zone} if now_row else None
        past = History(opted_out=bool(opted_out), in_flight=bool(in_flight),
                       attempts=[parse_utc(t) for t in json.loads(attempts)],
                       last_refusal=parse_utc(last_refusal) if last_refusal else None,
                       retry_at=parse_utc(retry_at) if retry_at else None, current=current)
        erasure_holds.add_hold(past, json.loads(hold) if hold else None, now, attempts_since,
                               refusals_since)
        return past, bound

    def create_attempt(self, contact: Mapping[str, Any], campaign: str, caller_id: str,
                       now: datetime, token_hash: str | None = None) -> Row:
        """Private-for-now, not part of StoreBackend: an attempt without the rules nor a node.
        Only bench/ still uses it; the program dials through claim_attempt."""
        with self.transaction():
            return self._insert_attempt(contact, campaign, caller_id, None, now, token_hash)

    def _insert_attempt(self, contact: Mapping[str, Any], campaign: str, caller_id: str,
                        node: str | None, now: datetime, token_hash: str | None) -> Row:
        """Write the attempt before its Originate is sent, so a crash cannot lose it. One
        statement: the id is the one SQLite would pick (the largest plus one: `id` is the
        rowid, without AUTOINCREMENT), so the channel id that names it is written with it
        instead of by an UPDATE (which fired the report's triggers a second time)."""
        # Unique across stores and runs sharing one PBX (Asterisk refuses a reused id).
        cur = self.db.conn.execute(
            "INSERT INTO calls (id, contact_id, number, attempt, campaign, caller_id, state, "
            "started_at, node, token_hash, controller, channel_id) SELECT n, ?, ?, 1 + (SELECT "
            "COUNT(*) FROM calls WHERE contact_id = ? AND campaign = ?), ?, ?, 'dialing', ?, ?, "
            "?, ?, 'ivr-' || ? || '-' || n || '-' || ? FROM (SELECT COALESCE(MAX(id), 0) + 1 "
            "AS n FROM calls) RETURNING *",
            (contact["id"], contact["number"], contact["id"], campaign, campaign, caller_id,
             utc(now), node, token_hash, self.controller_id, campaign_tag(campaign),
             secrets.token_hex(4)))
        cols = [c[0] for c in cur.description]
        return dict(zip(cols, cur.fetchall()[0]))  # fetchall: the statement is finished

    # -- one call -----------------------------------------------------------------------------
    def call(self, call_id: int) -> Row | None:
        return self._row("SELECT * FROM calls WHERE id = ?", (call_id,))

    def call_by_channel(self, channel_id: str) -> Row | None:
        return self._row("SELECT id, number, campaign FROM calls WHERE channel_id = ?",
                         (channel_id,))

    def mark_answered(self, call_id: int, now: datetime) -> None:
        """The IVR session was accepted: its token is spent, so its hash goes (single use,
        across restarts too)."""
        self.db.execute("UPDATE calls SET state = 'answered', answered_at = COALESCE("
                        "answered_at, ?), token_hash = NULL WHERE id = ? AND outcome IS NULL",
                        (utc(now), call_id))

    def record_answer(self, call_id: int, at: datetime) -> None:
        """The answer as the PBX reported it (OriginateResponse): the true answer time of the
        call and of its proof of consent. MIN: the earliest report wins, whichever write came
        first (the AGI's start is a later fallback: AMD or a slow AGI delay it)."""
        ts = utc(at)
        with self.transaction():
            self.db.conn.execute("UPDATE calls SET answered_at = MIN(COALESCE(answered_at, ?), ?)"
                                 " WHERE id = ?", (ts, ts, call_id))
            self.db.conn.execute("UPDATE consents SET answered_at = MIN(COALESCE(answered_at, ?),"
                                 " ?) WHERE call_id = ?", (ts, ts, call_id))

    def finish_answered(self, call_id: int, result: CallResult, now: datetime,
                        retry_at: datetime | None = None) -> str | None:
        """Record an answered call and its proof of consent in one transaction.

        Returns the hangup cause stored (an earlier one is kept), or None (and writes nothing)
        if the attempt already has its outcome: every attempt ends with exactly one outcome.
        One exception: `error` at stage `orphaned` is another controller's guess, written when
        this one's lease looked expired (its heartbeat late, the store slow to it). The
        controller that placed the call knows better: its own result other than `error`
        replaces the guess, so a refusal, a consent or a busy line is never lost to it.
        """
        _known(result.outcome)
        with self.transaction():
            ts = utc(now)
            # The outcome check and the write are one statement: no row, no second outcome.
            rows = self.db.conn.execute(
                "UPDATE calls SET state = 'ended', outcome = ?, stage = ?, keys = CASE WHEN "
                "number = ? THEN '' ELSE ? END, "
                "prompts_sha256 = ?, amd_status = ?, answered_at = COALESCE(answered_at, ?), "
                "ended_at = ?, hangup_cause = COALESCE(hangup_cause, ?), retry_at = ? "
                "WHERE id = ? AND (outcome IS NULL OR (? AND outcome = 'error' AND "
                "stage = 'orphaned')) "
                "RETURNING contact_id, number, caller_id, campaign, answered_at, hangup_cause",
                (result.outcome, result.stage, ERASED_NUMBER, result.keys,
                 json.dumps(result.heard), result.amd_status, ts, ts, result.hangup_cause or "16",
                 utc(retry_at) if retry_at else None, call_id,
                 result.outcome != "error")).fetchall()
            if not rows:
                return None
            contact_id, number, caller_id, campaign, answered_at, cause = rows[0]
            # Erased while it rang or ran: the outcome stays for the statistics, but no proof
            # row nor opposition of the placeholder (the person's own key 9 is the handler's).
            chose = result.choice if number != ERASED_NUMBER else None
            if chose:
                self._proof(call_id, rows[0][:5], result, ts)
            if chose == "optout":
                self._add_optout(number, "phone-key", campaign, now)
            elif result.choice == "consent" and result.slot:
                self.db.conn.execute("UPDATE contacts SET slot = ? WHERE id = ?",
                                     (result.slot, contact_id))
            self._settle_contact(call_id, contact_id, campaign, result.outcome, retry_at, now)
        return str(cause)

    def _proof(self, call_id: int, call: tuple[Any, ...], result: CallResult, ts: str) -> None:
        """The consents row of the call's choice. One its key already wrote (record_choice) is
        completed with what the call's end knows, never doubled; its time stays the key's."""
        contact_id, number, caller_id, campaign, answered_at = call
        heard = json.dumps(_heard(result))
        # The slot was chosen with the consent: its row keeps it, even under a later opposition.
        slot = result.slot if result.choice == "consent" else None
        if result.slot and slot is None:
            self.db.conn.execute("UPDATE consents SET slot = ? WHERE call_id = ? AND kind = "
                                 "'consent'", (result.slot, call_id))
        if self.db.conn.execute(
                "UPDATE consents SET prompt_key = ?, prompt_sha256 = ?, slot = ?, heard_sha256 = ?,"
                " amd_status = ?, answered_at = ? WHERE call_id = ? AND kind = ?",
                (result.answered_prompt, result.answered_sha256, slot, heard,
                 result.amd_status, answered_at, call_id, result.choice)).rowcount:
            return
        self.db.conn.execute(
            "INSERT INTO consents (call_id, contact_id, number, kind, key, at, caller_id,"
            " campaign, prompt_key, prompt_sha256, slot, heard_sha256, amd_status, "
            "answered_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (call_id, contact_id, number, result.choice, result.choice_key, ts, caller_id,
             campaign, result.answered_prompt, result.answered_sha256, slot, heard,
             result.amd_status, answered_at))

    def record_choice(self, call_id: int, result: CallResult, at: datetime) -> bool:
        """A refusal or an opposition, the moment its key is pressed: its proof row and the keys
        so far, so a controller that dies before the call ends loses neither (every settle of
        the call after a fault reads it back: choices_of). Once per call and kind; False if
        the row was there already or the call has its outcome."""
        with self.transaction():
            # Nothing for a call erased meanwhile (finish_answered says why).
            self.db.conn.execute("UPDATE calls SET keys = ? WHERE id = ? AND outcome IS NULL "
                                 "AND number != ?", (result.keys, call_id, ERASED_NUMBER))
            cur = self.db.conn.execute(
                "INSERT INTO consents (call_id, contact_id, number, kind, key, at, caller_id, "
                "campaign, prompt_key, prompt_sha256, heard_sha256, amd_status, answered_at) "
                "SELECT id, contact_id, number, ?, ?, ?, caller_id, campaign, ?, ?, ?, ?, "
                "answered_at FROM calls WHERE id = ? AND number != ? AND (outcome IS NULL OR "
                "(outcome = 'error' AND stage = 'orphaned')) AND NOT EXISTS (SELECT 1 FROM "
                "consents WHERE call_id = ? AND kind = ?)",
                (result.choice, result.choice_key, utc(at), result.answered_prompt,
                 result.answered_sha256, json.dumps(_heard(result)), result.amd_status, call_id,
                 ERASED_NUMBER, call_id, result.choice))
        return cur.rowcount == 1

    def choices_of(self, call_id: int) -> set[str]:
        return {r["kind"] for r in self._rows("SELECT kind FROM consents WHERE call_id = ?",
                                              (call_id,))}

    def withdraw_attempt(self, call_id: int) -> bool:
        """A claimed attempt whose Originate never left (a stop or a pause came first): its
        row goes, so it costs the contact no attempt and holds no number in flight. Only an
        attempt still without an outcome, and still `dialing` as its claim wrote it; False if
        none was removed. One another controller settled as orphaned meanwhile stays: that
        guess has settled the contact, and a later attempt may already count from it."""
        with self.transaction():
            cur = self.db.conn.execute("DELETE FROM calls WHERE id = ? AND outcome IS NULL AND "
                                       "state = 'dialing' AND answered_at IS NULL", (call_id,))
        return cur.rowcount == 1

    def finish_unanswered(self, call_id: int, outcome: str, cause: str | None, now: datetime,
                          retry_at: datetime | None, stage: str | None = None) -> bool:
        """As finish_answered: the first outcome stands, but for another controller's guess."""
        _known(outcome)
        with self.transaction():
            row = self.db.conn.execute(
                "UPDATE calls SET state = 'ended', outcome = ?, hangup_cause = ?, ended_at = ?, "
                "retry_at = ?, stage = ? WHERE id = ? AND (outcome IS NULL OR "
                "(? AND outcome = 'error' AND stage = 'orphaned')) RETURNING contact_id, campaign",
                (outcome, cause, utc(now), utc(retry_at) if retry_at else None, stage,
                 call_id, outcome != "error")).fetchall()
            if not row:
                return False
            self._settle_contact(call_id, row[0][0], row[0][1], outcome, retry_at, now)
        return True

    def set_hangup_cause(self, call_id: int, cause: str) -> None:
        self.db.execute("UPDATE calls SET hangup_cause = ? WHERE id = ?", (cause, call_id))

    def set_hangup_cause_by_channel(self, channel_id: str, cause: str, campaign: str) -> None:
        """One statement, no lookup: Hangup events arrive for every call on the PBX, other
        campaigns' included, so only this campaign's attempt with that channel is written."""
        self.db.execute("UPDATE calls SET hangup_cause = ? WHERE channel_id = ? AND "
                        "campaign = ? AND hangup_cause IS NOT ?",
                        (cause, channel_id, campaign, cause))

    def _settle_contact(self, call_id: int, contact_id: int | None, campaign: str,
                        outcome: str, retry_at: datetime | None, now: datetime) -> None:
        if contact_id is None:
            return
        status, final = _settled(outcome, retry_at)
        # An opted-out contact stays opted out, whatever a later outcome says. The binding
        # holds the progress in this campaign; the contact's own status, the last one seen.
        # Only the newest attempt settles them, but for a final status (an answer, a choice):
        # an older one's result landing late (it replaced another controller's guess after a
        # retry was placed) must not reopen a contact that retry finished, yet its answer
        # finishes one the retry left pending. Nor does a later unanswered attempt reopen a
        # binding an answer finished (that retry was claimed before the answer landed).
        self.db.conn.execute("UPDATE campaign_contacts SET status = ? WHERE contact_id = ? "
                             "AND campaign = ? AND status != 'opted_out' AND (? OR (status != "
                             "'done' AND NOT EXISTS (SELECT 1 FROM calls n WHERE "
                             "n.contact_id = ? AND n.campaign = ? AND n.id > ?)))",
                             (status, contact_id, campaign, final, contact_id, campaign,
                              call_id))
        # The contact's own, after its binding: not reopened while that binding is done.
        self.db.conn.execute("UPDATE contacts SET status = ?, updated_at = ? WHERE id = ? AND "
                             "status != 'opted_out' AND (? OR (NOT EXISTS (SELECT 1 FROM calls "
                             "n WHERE n.contact_id = ? AND n.id > ?) AND NOT (status = 'done' "
                             "AND EXISTS (SELECT 1 FROM campaign_contacts b WHERE "
                             "b.contact_id = ? AND b.campaign = ? AND b.status = 'done'))))",
                             (status, utc(now), contact_id, final, contact_id, call_id,
                              contact_id, campaign))

    # -- many calls ---------------------------------------------------------------------------
    def open_calls(self, node: str | None = None, campaign: str | None = None,
                   controller: str | None = None) -> list[Row]:
        """Attempts without an outcome: in flight, or left behind by a crash. Given a node
        and/or a campaign, only the attempts that node placed for that campaign (a
        reconciliation must not touch another node's, nor another campaign's live calls).
        Given a controller (issue 14), only its own, those no controller recorded, and those
        of a controller no longer alive: stopped, lease expired, unregistered, or any other
        while this store holds the campaign's run lock. Another LIVE controller's queued
        Originate is absent from CoreShowChannels too: settling it would dial it twice."""
        held = int(campaign is not None and
                   getattr(self, "_held_campaign", None) == campaign)
        return self._rows(
            "SELECT c.* FROM calls c LEFT JOIN controllers k ON k.id = c.controller "
            "WHERE c.outcome IS NULL AND (:node IS NULL OR c.node = :node) "
            "AND (:campaign IS NULL OR c.campaign = :campaign) "
            "AND (:me IS NULL OR c.controller IS NULL OR c.controller = :me OR :held "
            "OR k.id IS NULL OR k.stopped_at IS NOT NULL OR "
            "(julianday(:now) - julianday(k.heartbeat_at)) * 86400.0 > k.lease_s) "
            "ORDER BY c.id",
            {"node": node, "campaign": campaign, "me": controller, "held": held,
             "now": utc(datetime.now(timezone.utc))})

    def last_call_id(self, campaign: str | None = None) -> int:
        """The newest attempt's id (of `campaign`: a run counts its own campaign's that come
        after, and another campaign's withdrawn attempt may free its id for the next claim),
        0 when there is none."""
        if campaign is not None:  # calls_campaign (campaign, id): its last entry
            row = self._row("SELECT COALESCE(MAX(id), 0) AS m FROM calls WHERE campaign = ?",
                            (campaign,))
            return int(row["m"]) if row else 0
        row = self._row("SELECT COALESCE(MAX(id), 0) AS m FROM calls")
        return int(row["m"]) if row else 0

    def outcome_counts(self, campaign: str | None, since_id: int = 0,
                       controller: str | None = None) -> dict[str, int]:
        """Ended attempts with an id above since_id, per outcome; campaign None = all;
        controller: only the attempts it placed (calls.controller), None = anyone's."""
        rows = self._rows("SELECT outcome, COUNT(*) AS n FROM calls WHERE id > :since AND "
                          "(:campaign IS NULL OR campaign = :campaign) AND outcome IS NOT NULL "
                          "AND (:controller IS NULL OR controller = :controller) "
                          "GROUP BY outcome",
                          {"since": since_id, "campaign": campaign, "controller": controller})
        return {r["outcome"]: int(r["n"]) for r in rows}
