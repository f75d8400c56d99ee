"""What an erasure keeps of a number for the calling rules (schema 18: `erasure_holds`), both
backends. The policy is in ivr/records/privacy.py; the statements are here.

An erasure deletes the refusals (consents) and anonymises the attempts (calls), which are what
the refusal cooldown and the attempt cap read: a person who refused and then asked to be erased
would be called again on the next list that holds the number. So, before deleting, the erasure
keeps under the number's keyed hash (the optouts' HMAC) the newest refusal still in its cooldown
and the attempts still in the cap's window, until the later of the two ends (`kept_until`);
nothing when there is nothing to keep, nor for an opposed number (its opposition already keeps
it from every call). The claim and the plan's bulk history read the hold as they read the rows
it replaces; an expired hold is ignored, and `ivr purge` deletes it.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from ivr.config_checks import CAP_PERIOD_DAYS
from ivr.numbers import box_forms
from ivr.store.base import History, Row, parse_utc, utc

CAP_PERIOD = timedelta(days=CAP_PERIOD_DAYS)  # the attempt cap's window (calling_rules)
COOLDOWN = timedelta(days=60)  # config's refusal_cooldown_days default, when none is given

# The erased rows' scope is the erasure's (sqlite_privacy.erase_person): the number, its
# contacts, and their calls.
_SQL: dict[str, str] = {
    "refusals": "SELECT at FROM consents WHERE kind = 'refusal' AND (number = :n OR contact_id "
                "IN (SELECT id FROM contacts WHERE number = :n) OR call_id IN (SELECT id FROM "
                "calls WHERE number = :n OR contact_id IN (SELECT id FROM contacts WHERE "
                "number = :n)))",
    "attempts": "SELECT started_at FROM calls WHERE number = :n OR contact_id IN "
                "(SELECT id FROM contacts WHERE number = :n)",
    "opposed": "SELECT 1 AS x FROM optouts WHERE number_hash = :h",
    # The no-op update locks an existing row (PostgreSQL: a concurrent erasure of the same
    # line waits here), so the read and merge below cannot lose the other's attempts.
    "lock": "INSERT INTO erasure_holds (number_hash, attempts, kept_until) VALUES (:h, '[]', "
            ":k) ON CONFLICT (number_hash) DO UPDATE SET number_hash = excluded.number_hash",
    "get": "SELECT last_refusal, attempts, kept_until FROM erasure_holds WHERE number_hash = :h",
    "put": "UPDATE erasure_holds SET last_refusal = :r, attempts = :a, kept_until = :k "
           "WHERE number_hash = :h",
}
SQLITE = _SQL
# PostgreSQL: `x = ANY(ARRAY(SELECT ...))`, not `x IN (SELECT ...)` (pg_privacy.erase_person
# says why: an OR of the latter scans the whole table).
PG = {k: re.sub(r":(\w+)", r"%(\1)s", v) for k, v in _SQL.items()} | {
    "refusals": "SELECT at FROM consents WHERE kind = 'refusal' AND (number = %(n)s OR "
                "contact_id = ANY(ARRAY(SELECT id FROM contacts WHERE number = %(n)s)) OR "
                "call_id = ANY(ARRAY(SELECT id FROM calls WHERE number = %(n)s OR contact_id = "
                "ANY(ARRAY(SELECT id FROM contacts WHERE number = %(n)s)))))",
    "attempts": "SELECT started_at FROM calls WHERE number = %(n)s OR contact_id = ANY(ARRAY("
                "SELECT id FROM contacts WHERE number = %(n)s))"}
# The holds of many hashes (the bulk history, held_among): one JSON, one array parameter.
HOLDS_SQLITE = ("SELECT number_hash, last_refusal, attempts, kept_until FROM erasure_holds "
                "WHERE number_hash IN (SELECT value FROM json_each(?))")
HOLDS_PG = ("SELECT number_hash, last_refusal, attempts, kept_until FROM erasure_holds "
            "WHERE number_hash = ANY(%(hs)s)")
# The retention purge (purge_before): holds whose time has passed.
PURGE_SQLITE = "DELETE FROM erasure_holds WHERE julianday(kept_until) <= julianday(:now)"
PURGE_PG = ("DELETE FROM erasure_holds WHERE kept_until::timestamptz <= "
            "%(now)s::timestamptz")
# The leftover scan's entries (it holds hashes and times only: every column is searched).
SCAN_SQLITE = (
    "SELECT * FROM erasure_holds WHERE instr(number_hash, :n) > 0 OR "
    "instr(last_refusal, :n) > 0 OR instr(attempts, :n) > 0 OR instr(kept_until, :n) > 0",
    ("number_hash", "last_refusal", "attempts", "kept_until"), ())
SCAN_PG = "SELECT * FROM erasure_holds t WHERE strpos(t::text, %(n)s) > 0"

Rows = Callable[[str, dict[str, Any]], list[Row]]
Write = Callable[[str, dict[str, Any]], object]


def keep_hold(rows: Rows, write: Write, sql: dict[str, str], hash_of: Callable[[str], str],
              number: str, now: datetime | None, cooldown: timedelta | None) -> int:
    """Before an erasure of `number`: merge what the rules still need of it into the hold of
    every form of its line (an overseas box's two forms: whichever a later list holds). 1 if
    something was kept, else 0 (nothing written). `cooldown`: schedule.refusal_cooldown_days
    (COOLDOWN if None); `now`: the clock's if None."""
    now = now or datetime.now(timezone.utc)
    cooldown = COOLDOWN if cooldown is None else cooldown  # 0 days: no refusal to keep
    if rows(sql["opposed"], {"h": hash_of(number)}):
        return 0
    p = {"n": number}
    refused = [r for r in (_instant(x["at"]) for x in rows(sql["refusals"], p))
               if r and r + cooldown > now]
    tried = [a for a in (_instant(x["started_at"]) for x in rows(sql["attempts"], p))
             if a and a > now - CAP_PERIOD]
    if not refused and not tried:
        return 0
    last = max(refused) if refused else None
    until = _until(last, tried, cooldown)
    for form in dict.fromkeys(box_forms(number) or (number,)):
        h = hash_of(form)
        write(sql["lock"], {"h": h, "k": utc(until)})
        old = rows(sql["get"], {"h": h})[0]
        merged = {utc(a) for a in tried} | {
            a for a in json.loads(old["attempts"]) if parse_utc(a) > now - CAP_PERIOD}
        newest = max(filter(None, (last, old["last_refusal"] and parse_utc(old["last_refusal"]))),
                     default=None)
        write(sql["put"], {"h": h, "r": utc(newest) if newest else None,
                           "a": json.dumps(sorted(merged)),
                           "k": utc(max(until, parse_utc(old["kept_until"])))})
    return 1


def _instant(text: object) -> datetime | None:
    """A stored time as an aware instant; None for text that is not one (a row written by
    hand: the rules cannot read it either)."""
    try:
        at = parse_utc(str(text))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)  # as SQLite reads it


def purge_params(now: datetime | None) -> dict[str, str]:
    """The purge's parameters: a hold is deleted once `now` (the clock's if None) reaches its
    kept_until."""
    return {"now": utc(now or datetime.now(timezone.utc))}


def _until(last_refusal: datetime | None, attempts: Sequence[datetime],
           cooldown: timedelta) -> datetime:
    """When the rules stop reading what is kept: the cooldown's end, the newest attempt's
    leaving the cap's window, whichever is later."""
    ends = [last_refusal + cooldown] if last_refusal else []
    return max(ends + [max(attempts) + CAP_PERIOD] if attempts else ends)


def add_hold(past: History, hold: Sequence[Any] | None, now: datetime,
             attempts_since: datetime, refusals_since: datetime) -> None:
    """Add a hold (last_refusal, attempts JSON text, kept_until) to the history the rules read,
    as the rows it replaces would be: attempts after attempts_since, a refusal since
    refusals_since. An expired hold (kept_until passed) adds nothing."""
    if not hold or parse_utc(hold[2]) <= now:
        return
    past.attempts += [a for a in map(parse_utc, json.loads(hold[1])) if a > attempts_since]
    if hold[0]:
        refused = parse_utc(hold[0])
        if refused >= refusals_since and (past.last_refusal is None
                                          or refused > past.last_refusal):
            past.last_refusal = refused


def add_holds(out: dict[str, History], by_hash: dict[str, str], held: Iterable[Row],
              attempts_since: datetime, refusals_since: datetime) -> None:
    """add_hold for the bulk history: rows (number_hash, last_refusal, attempts, kept_until).
    Its `now` is the plan's: attempts_since is now - CAP_PERIOD (planning._since)."""
    now = attempts_since + CAP_PERIOD
    for r in held:
        add_hold(out[by_hash[r["number_hash"]]],
                 (r["last_refusal"], r["attempts"], r["kept_until"]), now, attempts_since,
                 refusals_since)


def live(by_hash: dict[str, str], held: Iterable[Row], now: datetime) -> set[str]:
    """The numbers (by_hash: hash -> number) whose hold, among these rows, has not expired."""
    return {by_hash[r["number_hash"]] for r in held if parse_utc(r["kept_until"]) > now}


def hold_of(rows: Rows, sql: dict[str, str], h: str) -> Row | None:
    """The hold kept of the number (its access request shows it), attempts as a list."""
    got = rows(sql["get"], {"h": h})
    return {**got[0], "attempts": json.loads(got[0]["attempts"])} if got else None
