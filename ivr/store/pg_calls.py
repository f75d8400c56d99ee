"""The PostgreSQL backend's calls: claiming an attempt, its outcome, and the history the rules
read. The twin of sqlite_calls.py; rows compare equal across the two backends.

claim_attempt locks the number's contacts row with `FOR UPDATE SKIP LOCKED`: a controller that
finds it locked refuses at once (another controller is claiming that number), and the one holding
it reads the history afresh (opposition, attempt in flight in any campaign, retry delay, cap,
last refusal) before writing the attempt. No number gets two attempts in flight.
"""
from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import psycopg

from ivr.store import erasure_holds
from ivr.store.erasure_holds import HOLDS_PG
from ivr.store.base import (ERASED_NUMBER, CallResult, Claim, History, Judge, Row,
                             parse_utc, utc)
from ivr.store.pg_core import PgCore
from ivr.store.sqlite_calls import OTHERS_OPEN_FOR, _heard, _known, _settled, campaign_tag
from ivr.store.sqlite_history import chunked_history, hashes_of


# The function's one row: o_done false when the attempt already had its outcome. Named
# notation: nineteen arguments cannot be passed in the wrong order unseen.
FINISH_ANSWERED = (
    "SELECT o_done, o_number, o_campaign, o_cause FROM finish_answered(p_call => %(call)s, "
    "p_outcome => %(outcome)s, p_stage => %(stage)s, p_keys => %(keys)s, p_prompts => "
    "%(prompts)s, p_amd => %(amd)s, p_at => %(at)s, p_cause => %(cause)s, p_retry => "
    "%(retry)s, p_over_orphan => %(over_orphan)s, p_choice => %(choice)s, p_choice_key => "
    "%(choice_key)s, p_slot => %(slot)s, p_prompt_key => %(prompt_key)s, p_prompt_sha => "
    "%(prompt_sha)s, p_heard => %(heard)s, p_status => %(status)s, p_final => %(final)s, "
    "p_erased => %(erased)s)")
FINISH_UNANSWERED = (
    "SELECT finish_unanswered(p_call => %(call)s, p_outcome => %(outcome)s, p_cause => "
    "%(cause)s, p_at => %(at)s, p_retry => %(retry)s, p_stage => %(stage)s, p_over_orphan => "
    "%(over_orphan)s, p_status => %(status)s, p_final => %(final)s) AS done")

# Named, as the outcome functions: ten arguments, four of them text that could swap unseen.
RECORD_CHOICE = (
    "SELECT record_choice(p_call => %(call)s, p_choice => %(choice)s, p_key => %(key)s, "
    "p_at => %(at)s, p_keys => %(keys)s, p_prompt_key => %(prompt_key)s, p_prompt_sha => "
    "%(prompt_sha)s, p_heard => %(heard)s, p_amd => %(amd)s, p_erased => %(erased)s) AS added")


def _inserted(result: tuple[list[Row], int]) -> Row:
    """The row an INSERT … RETURNING wrote (one, always)."""
    rows, _ = result
    assert rows, "an INSERT … SELECT without WHERE writes its row"
    return rows[0]


class PgCallsSQL(PgCore):
    # -- claiming an attempt ------------------------------------------------------------------
    def claim_attempt(self, contact: Mapping[str, Any], *, campaign: str, caller_id: str,
                      node: str, now: datetime, attempts_since: datetime,
                      refusals_since: datetime, judge: Judge,
                      token_hash: str | None = None) -> Claim:
        """Lock the number's contact row (or refuse without waiting if another controller
        holds it), read its fresh history, judge it and write the attempt: one transaction."""
        number = contact["number"]
        with self.pipelined():
            # the locked row's slot and timezone: the contact as it is now (History.current)
            locked = self._row("SELECT id, slot, timezone FROM contacts WHERE id = %s "
                               "FOR UPDATE SKIP LOCKED", (contact["id"],))
            if locked is None:  # being claimed elsewhere: as good as a call in flight
                return Claim(call=None, decision=judge(History(in_flight=True)))
            past, bound = self._history_of(contact["id"], number, attempts_since,
                                           refusals_since, campaign, now)
            # Settled by another controller since this one planned it (its last attempt, say):
            # the stale plan must not dial past the attempt cap. As good as in flight: skipped.
            if bound is not None and bound != "pending":
                return Claim(call=None, decision=judge(History(in_flight=True)))
            past.current = {"slot": locked["slot"], "timezone": locked["timezone"]}
            decision = judge(past)
            if not decision.allowed:
                if past.opted_out:  # keep the contact's status true to the opposition list
                    self._later("UPDATE contacts SET status = 'opted_out', updated_at = %s "
                                "WHERE id = %s AND status != 'opted_out'",
                                (utc(now), contact["id"]))
                return Claim(call=None, decision=decision)
            insert = self._insert_attempt(contact, campaign, caller_id, node, now, token_hash)
        return Claim(call=_inserted(self._result_of(insert)), decision=decision)

    def _history_of(self, contact_id: int, number: str, attempts_since: datetime,
                    refusals_since: datetime, campaign: str, now: datetime
                    ) -> tuple[History, str | None]:
        """One number's history in one round trip (the claim's hot path), with what an
        erasure of the number kept (erasure_holds); and the status of the contact's binding
        to the campaign (None: not bound). Read after the claim's lock on the contact, in
        one statement: one snapshot, taken once the lock is held."""
        row = self._row(
            "SELECT EXISTS (SELECT 1 FROM optouts WHERE number_hash = %(h)s) AS opted_out, "
            "EXISTS (SELECT 1 FROM calls WHERE number = %(n)s AND outcome IS NULL AND (campaign "
            "= %(c)s OR started_at > %(f)s)) AS in_flight,"
            " ARRAY(SELECT started_at FROM calls WHERE number = %(n)s AND started_at > %(a)s "
            "ORDER BY id) AS attempts, "
            "(SELECT MAX(at) FROM consents WHERE number = %(n)s AND kind = 'refusal' "
            "AND at >= %(r)s) AS last_refusal, "
            "(SELECT retry_at FROM calls WHERE campaign = %(c)s AND number = %(n)s "
            "ORDER BY id DESC LIMIT 1) AS retry_at, "
            "(SELECT ARRAY[last_refusal, attempts, kept_until] FROM erasure_holds "
            "WHERE number_hash = %(h)s) AS hold, "
            "(SELECT status FROM campaign_contacts WHERE contact_id = %(k)s AND "
            "campaign = %(c)s) AS bound",
            {"h": self.number_hash(number), "n": number, "a": utc(attempts_since),
             "r": utc(refusals_since), "c": campaign, "f": utc(now - OTHERS_OPEN_FOR),
             "k": contact_id})
        assert row is not None  # a SELECT without FROM always gives its one row
        past = History(opted_out=bool(row["opted_out"]), in_flight=bool(row["in_flight"]),
                       attempts=[parse_utc(t) for t in row["attempts"]],
                       last_refusal=parse_utc(row["last_refusal"]) if row["last_refusal"]
                       else None,
                       retry_at=parse_utc(row["retry_at"]) if row["retry_at"] else None)
        erasure_holds.add_hold(past, row["hold"], now, attempts_since, refusals_since)
        return past, row["bound"]

    def create_attempt(self, contact: Mapping[str, Any], campaign: str, caller_id: str,
                       now: datetime, token_hash: str | None = None) -> Row:
        """Private-for-now, not part of StoreBackend: an attempt without the rules nor a node
        (bench/ only)."""
        with self.transaction():
            insert = self._insert_attempt(contact, campaign, caller_id, None, now, token_hash)
        return _inserted(self._result_of(insert))

    def _insert_attempt(self, contact: Mapping[str, Any], campaign: str, caller_id: str,
                        node: str | None, now: datetime, token_hash: str | None
                        ) -> psycopg.Cursor[Row]:
        """Write the attempt before its Originate is sent, so a crash cannot lose it. One
        statement: the id is drawn first, so the channel id (which holds it) is written with
        the row, in the state SQLite's two statements leave it ('dialing'). Its row is read
        once the transaction is over (_later): in a pipelined one it leaves with the COMMIT."""
        # Unique across stores and runs sharing one PBX (Asterisk refuses a reused id).
        return self._later(
            "INSERT INTO calls (id, contact_id, number, attempt, campaign, caller_id, "
            "channel_id, state, started_at, node, token_hash, controller) "
            "SELECT n.id, %(contact)s, %(number)s, 1 + (SELECT COUNT(*) FROM calls WHERE "
            "contact_id = %(contact)s AND campaign = %(campaign)s), %(campaign)s, %(caller)s, "
            "'ivr-' || %(tag)s || '-' || n.id || '-' || %(salt)s, 'dialing', %(now)s, %(node)s, "
            "%(token)s, %(controller)s FROM (SELECT nextval(pg_get_serial_sequence('calls', "
            "'id')) AS id) n RETURNING *",
            {"contact": contact["id"], "number": contact["number"], "campaign": campaign,
             "caller": caller_id, "tag": campaign_tag(campaign), "salt": secrets.token_hex(4),
             "now": utc(now), "node": node, "token": token_hash,
             "controller": self.controller_id})

    # -- one call -----------------------------------------------------------------------------
    def call(self, call_id: int) -> Row | None:
        return self._row("SELECT * FROM calls WHERE id = %s", (call_id,))

    def call_by_channel(self, channel_id: str) -> Row | None:
        return self._row("SELECT id, number, campaign FROM calls WHERE channel_id = %s",
                         (channel_id,))

    def mark_answered(self, call_id: int, now: datetime) -> None:
        """The IVR session was accepted: its token is spent, so its hash goes."""
        self._exec("UPDATE calls SET state = 'answered', answered_at = COALESCE(answered_at, "
                   "%s), token_hash = NULL WHERE id = %s AND outcome IS NULL", (utc(now), call_id))

    def record_answer(self, call_id: int, at: datetime) -> None:
        """The answer as the PBX reported it; the earliest report wins (sqlite_calls says why).
        Text timestamps of one form: LEAST compares them in time order."""
        # Both rows in one statement (one round trip, its own transaction): neither update
        # reads what the other writes. A refusal's or an opposition's proof row is written at
        # its key (record_choice), before the call ends: it takes the true answer time too.
        self._exec("WITH answered AS (UPDATE calls SET answered_at = LEAST(COALESCE("
                   "answered_at, %(t)s), %(t)s) WHERE id = %(c)s) UPDATE consents SET "
                   "answered_at = LEAST(COALESCE(answered_at, %(t)s), %(t)s) "
                   "WHERE call_id = %(c)s", {"t": utc(at), "c": call_id})

    def finish_answered(self, call_id: int, result: CallResult, now: datetime,
                        retry_at: datetime | None = None) -> str | None:
        """Record an answered call and its proof of consent in one transaction. Returns the
        hangup cause stored (an earlier one is kept); None (and nothing written) if the attempt
        already has its outcome, but for another controller's guess (sqlite_calls says why).
        One command, the server function of schema 23 (pg_functions.py); an opposition's row
        joins it in one transaction."""
        _known(result.outcome)
        status, final = _settled(result.outcome, retry_at)
        args = {"call": call_id, "outcome": result.outcome, "stage": result.stage,
                "keys": result.keys, "prompts": json.dumps(result.heard),
                "amd": result.amd_status, "at": utc(now),
                "cause": result.hangup_cause or "16",
                "retry": utc(retry_at) if retry_at else None,
                "over_orphan": result.outcome != "error", "choice": result.choice or None,
                "choice_key": result.choice_key, "slot": result.slot or None,
                "prompt_key": result.answered_prompt, "prompt_sha": result.answered_sha256,
                "heard": json.dumps(_heard(result)), "status": status, "final": final,
                "erased": ERASED_NUMBER}
        if result.choice != "optout":
            row = self._row(FINISH_ANSWERED, args)
        else:
            with self.pipelined():
                row = self._row(FINISH_ANSWERED, args)
                # Erased while it rang or ran: no opposition (sqlite_calls says why).
                if row is not None and row["o_done"] and row["o_number"] != ERASED_NUMBER:
                    self._add_optout(row["o_number"], "phone-key", row["o_campaign"], now)
        return str(row["o_cause"]) if row is not None and row["o_done"] else None

    def record_choice(self, call_id: int, result: CallResult, at: datetime) -> bool:
        """A refusal or an opposition as its key is pressed: its proof row and the keys so far
        (sqlite_calls says why). Once per call and kind: the server function (schema 23,
        pg_functions.py) locks the call's row first, so two writes of one choice never both
        insert. One command, its own transaction."""
        row = self._row(RECORD_CHOICE, {
            "call": call_id, "choice": result.choice, "key": result.choice_key, "at": utc(at),
            "keys": result.keys, "prompt_key": result.answered_prompt,
            "prompt_sha": result.answered_sha256, "heard": json.dumps(_heard(result)),
            "amd": result.amd_status, "erased": ERASED_NUMBER})
        return bool(row and row["added"])

    def choices_of(self, call_id: int) -> set[str]:
        return {r["kind"] for r in self._rows("SELECT kind FROM consents WHERE call_id = %s",
                                              (call_id,))}

    def withdraw_attempt(self, call_id: int) -> bool:
        """A claimed attempt whose Originate never left (a stop or a pause came first): its
        row goes, so it costs the contact no attempt and holds no number in flight. Only an
        attempt still without an outcome, and still `dialing` as its claim wrote it; False if
        none was removed. One another controller settled as orphaned meanwhile stays: that
        guess has settled the contact, and a later attempt may already count from it."""
        return self._exec("DELETE FROM calls WHERE id = %s AND outcome IS NULL AND "
                          "state = 'dialing' AND answered_at IS NULL", (call_id,)) == 1

    def finish_unanswered(self, call_id: int, outcome: str, cause: str | None, now: datetime,
                          retry_at: datetime | None, stage: str | None = None) -> bool:
        """As finish_answered: the first outcome stands, but for another controller's guess.
        One command: the server function (schema 24, pg_functions.py) writes the outcome and
        settles the contact, the statements sqlite_calls runs, in the same order."""
        _known(outcome)
        status, final = _settled(outcome, retry_at)
        row = self._row(FINISH_UNANSWERED, {
            "call": call_id, "outcome": outcome, "cause": cause, "at": utc(now),
            "retry": utc(retry_at) if retry_at else None, "stage": stage,
            "over_orphan": outcome != "error", "status": status, "final": final})
        return bool(row and row["done"])

    def set_hangup_cause(self, call_id: int, cause: str) -> None:
        self._exec("UPDATE calls SET hangup_cause = %s WHERE id = %s", (cause, call_id))

    def set_hangup_cause_by_channel(self, channel_id: str, cause: str, campaign: str) -> None:
        """One statement, no lookup; only this campaign's attempt with that channel."""
        self._exec("UPDATE calls SET hangup_cause = %s WHERE channel_id = %s AND campaign = %s "
                   "AND hangup_cause IS DISTINCT FROM %s", (cause, channel_id, campaign, cause))

    # -- many calls ---------------------------------------------------------------------------
    def open_calls(self, node: str | None = None, campaign: str | None = None,
                   controller: str | None = None) -> list[Row]:
        """Attempts without an outcome, of one node and/or campaign, and given a controller
        only its own, those with none recorded and those of a controller no longer alive
        (stopped, lease expired, unregistered): sqlite_calls says why."""
        return self._rows(
            "SELECT c.* FROM calls c LEFT JOIN controllers k ON k.id = c.controller "
            "WHERE c.outcome IS NULL AND (%(node)s::text IS NULL OR c.node = %(node)s) "
            "AND (%(campaign)s::text IS NULL OR c.campaign = %(campaign)s) "
            "AND (%(me)s::text IS NULL OR c.controller IS NULL OR c.controller = %(me)s "
            "OR k.id IS NULL OR k.stopped_at IS NOT NULL OR "
            "GREATEST(k.heartbeat_at::timestamptz, clock_timestamp() - "  # pg_controllers'
            "%(back_s)s::float8 * interval '1 second') + k.lease_s * interval '1 second' "
            "< clock_timestamp()) ORDER BY c.id",  # LEASE_END, on the server's clock
            {"node": node, "campaign": campaign, "me": controller, "back_s": self._back_s()})

    def last_call_id(self, campaign: str | None = None) -> int:
        if campaign is not None:  # calls_campaign (campaign, id): the last entry
            row = self._row("SELECT COALESCE(MAX(id), 0) AS m FROM calls WHERE campaign = %s",
                            (campaign,))
            return int(row["m"]) if row else 0
        row = self._row("SELECT COALESCE(MAX(id), 0) AS m FROM calls")
        return int(row["m"]) if row else 0

    def outcome_counts(self, campaign: str | None, since_id: int = 0,
                       controller: str | None = None) -> dict[str, int]:
        rows = self._rows("SELECT outcome, COUNT(*) AS n FROM calls WHERE id > %(since)s AND "
                          "(%(campaign)s::text IS NULL OR campaign = %(campaign)s) "
                          "AND outcome IS NOT NULL AND (%(controller)s::text IS NULL OR "
                          "controller = %(controller)s) GROUP BY outcome",
                          {"since": since_id, "campaign": campaign, "controller": controller})
        return {r["outcome"]: int(r["n"]) for r in rows}

    def history(self, numbers: list[str], attempts_since: datetime, refusals_since: datetime,
                campaign: str | None = None) -> dict[str, History]:
        """What the rules need for many numbers at once: five queries per HISTORY_CHUNK
        numbers, each list one array parameter. A number opposed or with a call in flight gets
        only that (the judge refuses it first; sqlite_history.history says why)."""
        return chunked_history(self._fill_history, numbers, attempts_since, refusals_since,
                               campaign)

    def held_among(self, numbers: list[str], now: datetime) -> set[str]:
        """The numbers with a live erasure hold (sqlite_history.held_among says why)."""
        if not self._rows("SELECT 1 AS x FROM erasure_holds WHERE kept_until > %s LIMIT 1",
                          (utc(now),)):
            return set()
        by_hash = hashes_of(self, numbers)
        return erasure_holds.live(by_hash, self._rows(HOLDS_PG, {"hs": list(by_hash)}), now)

    def _fill_history(self, out: dict[str, History], chunk: list[str], attempts_since: datetime,
                      refusals_since: datetime, campaign: str | None) -> None:
        by_hash = hashes_of(self, chunk)
        for r in self._rows("SELECT number_hash FROM optouts WHERE number_hash = ANY(%s)",
                            (list(by_hash),)):
            out[by_hash[r["number_hash"]]].opted_out = True
        fresh = utc(attempts_since + erasure_holds.CAP_PERIOD - OTHERS_OPEN_FOR)  # sqlite_calls
        for r in self._rows("SELECT DISTINCT number FROM calls WHERE outcome IS NULL AND number "
                            "= ANY(%(n)s) AND (%(c)s::text IS NULL OR campaign = %(c)s OR "
                            "started_at > %(f)s)", {"n": chunk, "c": campaign, "f": fresh}):
            out[r["number"]].in_flight = True
        chunk = [n for n in chunk if not (out[n].opted_out or out[n].in_flight)]
        if not chunk:
            return
        for r in self._rows("SELECT number, started_at FROM calls WHERE number = ANY(%s) "
                            "AND started_at > %s ORDER BY id", (chunk, utc(attempts_since))):
            out[r["number"]].attempts.append(parse_utc(r["started_at"]))
        for r in self._rows("SELECT number, MAX(at) AS at FROM consents WHERE number = ANY(%s) "
                            "AND kind = 'refusal' AND at >= %s GROUP BY number",
                            (chunk, utc(refusals_since))):
            out[r["number"]].last_refusal = parse_utc(r["at"])
        judged = set(chunk)  # the holds of the numbers judged further, by their hash
        kept = {h: n for h, n in by_hash.items() if n in judged}
        erasure_holds.add_holds(out, kept, self._rows(HOLDS_PG, {"hs": list(kept)}), attempts_since,
                                refusals_since)
        if campaign is None:
            return
        for r in self._rows("SELECT DISTINCT ON (number) number, retry_at FROM calls "
                            "WHERE campaign = %s AND number = ANY(%s) ORDER BY number, id DESC",
                            (campaign, chunk)):
            if r["retry_at"] is not None:
                out[r["number"]].retry_at = parse_utc(r["retry_at"])
