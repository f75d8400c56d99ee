"""Who is due now, and why nobody is: the plan a run dials from, and the dial-time claim.

One pure judge decides for a contact from its History; the plan applies it in bulk (writing
nothing), and `claim` applies it again inside the store's transaction that writes the attempt.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from ivr.campaign.retry_wait import RetryWait, calendar_place, soonest_retry
from ivr.compliance.callee_place import e164
from ivr.compliance.place_key import place_key
from ivr.compliance.calling_rules import (CAP_PERIOD, Verdict, callee_zone, check_call,
                                          is_fiction_number)
from ivr.config import Config
from ivr.store.base import Claim, History, StoreBackend
from ivr.telephony.agi_auth import new_token, token_hash

PLAN_CHUNK = 5000  # contacts per read of the plan: memory bounded, round trips few
IN_FLIGHT = Verdict(False, "in_flight", "a call to this contact is in progress", None)
CALLER_ID_FICTION = "caller_id_fiction"


class _Histories(dict[str, History]):
    def __missing__(self, number: str) -> History:
        return History()


@dataclass
class Plan:
    due: list[dict[str, Any]] = field(default_factory=list)
    waiting: list[tuple[dict[str, Any], Verdict]] = field(default_factory=list)
    # of the due numbers; one that has no past at all (judged without reading it) reads as
    # an empty History
    history: dict[str, History] = field(default_factory=lambda: _Histories())
    _soonest: tuple[int, RetryWait | None] | None = field(default=None, init=False, repr=False,
                                                           compare=False)

    def reasons(self) -> Counter[str]:
        return Counter(v.reason for _, v in self.waiting)

    def next_retry(self) -> datetime | None:
        """The soonest time a contact waiting on its retry delay may be called (the run's wait
        and progress), found without correcting every such contact (`soonest_retry`)."""
        soonest = self.soonest_retry()
        return soonest.next_allowed if soonest is not None else None

    def soonest_retry(self) -> RetryWait | None:
        """The retry-waiting contact's verdict with the soonest next_allowed; found once per
        plan (the run, its progress and the why-nobody line each ask)."""
        if self._soonest is None or self._soonest[0] != len(self.waiting):
            self._soonest = (len(self.waiting), soonest_retry(
                v for _, v in self.waiting if isinstance(v, RetryWait)))
        return self._soonest[1]

    def next_allowed(self) -> datetime | None:
        """The soonest next allowed time of any contact waiting (the console's)."""
        times = [v.next_allowed for _, v in self.waiting
                 if not isinstance(v, RetryWait) and v.next_allowed is not None]
        retry = self.next_retry()
        return min(times + ([retry] if retry is not None else []), default=None)


def judge(cfg: Config, contact: dict[str, Any], now: datetime) -> Callable[[History], Verdict]:
    """The one decision for a contact, pure: opposition, a call in flight, the retry delay of
    its last attempt, a fiction caller ID, then the calling rules. The plan and the claim both
    use it. The slot and zone are the history's `current` ones when it has them (the claim's:
    the contact may have changed since the plan read `contact`)."""
    number = contact["number"]
    caller = cfg.campaign.caller_id

    def decide(past: History) -> Verdict:
        if past.opted_out:
            return Verdict(False, "opted_out", f"{number} is on the opposition list", None)
        if past.in_flight:
            return IN_FLIGHT
        if past.retry_at is not None and past.retry_at > now:
            return RetryWait(number, past, rules, cfg.schedule,
                             past.current if past.current is not None else contact)
        # Checked at every claim, not only by the preflight at start: a list uploaded in the
        # console while a run is up (or on standby) must not be called from a fiction number.
        if is_fiction_number(caller) and not is_fiction_number(number):
            return Verdict(False, CALLER_ID_FICTION, f"campaign.caller_id {caller} is a fiction "
                           "number: it may call fiction numbers only", None)
        return rules(now, past)

    def rules(at: datetime, past: History) -> Verdict:
        row = past.current if past.current is not None else contact
        return row_verdict(cfg, number, row, at, past.attempts, past.last_refusal)
    return decide


def row_verdict(cfg: Config, number: str, row: Mapping[str, Any], at: datetime,
                attempts: Iterable[datetime] = (), last_refusal: datetime | None = None
                ) -> Verdict:
    """The calling rules at `at` for `number`, in the zone and slot of the contact's `row`,
    on the history given (none: the calendar rules alone)."""
    zone = callee_zone(number, row.get("timezone"), cfg.schedule.timezone)
    return check_call(at, number=number, zone=zone, schedule=cfg.schedule,
                      attempts_utc=attempts, last_refusal_utc=last_refusal,
                      preferred_slot=row.get("slot"))


def _since(cfg: Config, now: datetime) -> tuple[datetime, datetime]:
    """What the rules look back on: attempts within the cap period, refusals within the
    cooldown."""
    return now - CAP_PERIOD, now - timedelta(days=max(cfg.schedule.refusal_cooldown_days, 0))


def calendar_verdict(cfg: Config, contact: dict[str, Any], now: datetime) -> Verdict:
    """The calendar rules alone at `now` (window, slot, holiday, blackout), on the contact's
    row: what may close between a claim and its Originate's departure. The history's rules
    (cap, cooldown, opposition) were judged by the claim itself."""
    return row_verdict(cfg, contact["number"], contact, now)


def claim(cfg: Config, store: StoreBackend, contact: dict[str, Any], node: str,
          now: datetime) -> Claim:
    """The dial path: judge the contact on its fresh history and, if allowed, write the attempt
    (placed by `node`), in one store transaction. The attempt's FastAGI token is drawn here:
    the store gets its hash, the returned Claim the token (for the Originate only)."""
    attempts_since, refusals_since = _since(cfg, now)
    token = new_token()
    decide, current = judge(cfg, contact, now), []

    def judged(past: History) -> Verdict:  # keeps the row the claim read, for sending.py
        if past.current is not None:
            current.append(past.current)
        return decide(past)
    got = store.claim_attempt(contact, campaign=cfg.campaign.name,
                              caller_id=cfg.campaign.caller_id, node=node, now=now,
                              attempts_since=attempts_since, refusals_since=refusals_since,
                              judge=judged, token_hash=token_hash(token))
    if got.call is None:
        return got
    return replace(got, token=token, contact={**contact, **current[-1]} if current else contact)


def verdict_for(cfg: Config, store: StoreBackend, contact: dict[str, Any], now: datetime,
                history: History | None = None) -> Verdict:
    """The judge's verdict, writing nothing: on `history` when given (e.g. the plan's), else on
    the contact's history read afresh. Dialling goes through `claim`, which re-reads it."""
    if history is None:
        number = contact["number"]
        attempts_since, refusals_since = _since(cfg, now)
        history = store.history([number], attempts_since, refusals_since,
                                cfg.campaign.name)[number]
    return judge(cfg, contact, now)(history)


def plan(cfg: Config, store: StoreBackend, now: datetime) -> Plan:
    """Who is due now: the pending contacts, each judged (`judged`). Writes nothing (a dry run
    leaves the store byte-identical); the claim updates statuses."""
    result = Plan()
    for contact, verdict, past in judged(cfg, store, now):
        if verdict.allowed:
            result.due.append(contact)
            if past is not None:
                result.history[contact["number"]] = past
        else:
            result.waiting.append((contact, verdict))
    return result


def judged(cfg: Config, store: StoreBackend, now: datetime
           ) -> Iterator[tuple[dict[str, Any], Verdict, History | None]]:
    """Every pending contact with the judge's verdict, in id order (`judged_chunks`, one at
    a time)."""
    for chunk in judged_chunks(cfg, store, now):
        yield from chunk


Judged = list[tuple[dict[str, Any], Verdict, History | None]]


def judged_chunks(cfg: Config, store: StoreBackend, now: datetime) -> Iterator[Judged]:
    """Every pending contact with the judge's verdict, in id order, PLAN_CHUNK at a time (a
    dry run over a million contacts never holds them all). The store marks the contacts whose
    history is empty but for the opposition list (`plan_quiet`): those are judged without
    reading it, their verdict computed once per zone, holiday region, slot and fiction bypass
    (the only things it depends on then). The history given is None for them."""
    attempts_since, refusals_since = _since(cfg, now)
    quiet = _QuietVerdicts(cfg, now)
    for rows in store.plan_contacts(cfg.campaign.name, attempts_since=attempts_since,
                                    refusals_since=refusals_since, now=now, chunk=PLAN_CHUNK):
        yield _judge_chunk(cfg, store, rows, now, quiet)


def _judge_chunk(cfg: Config, store: StoreBackend, rows: list[dict[str, Any]], now: datetime,
                 quiet_verdict: _QuietVerdicts) -> Judged:
    quiet = [bool(r.pop("plan_quiet")) for r in rows]  # the due list carries contacts only
    read = [r.pop("plan_history", None) for r in rows]
    marked = [r.pop("plan_opposed", None) for r in rows]
    if any(m is not None for m in marked):
        # the store read the opposition list and the others' history with the plan
        # (PostgreSQL): an opposed one's is marked as `history` marks it
        opposed = {r["number"] for r, m in zip(rows, marked) if m}
        history = {r["number"]: _opposed(h) if r["number"] in opposed else h
                   for r, q, h in zip(rows, quiet, read) if not q}
    else:
        opposed = store.opted_out_among([r["number"] for r, q in zip(rows, quiet) if q]) \
            if any(quiet) else set()
        history = _histories(cfg, store, [r["number"] for r, q in zip(rows, quiet) if not q],
                             now)
    held = store.held_among([r["number"] for r in rows], now)
    if held:  # an erasure's hold (store/erasure_holds.py): the rows the plan reads are gone
        # Each held number's history is read again, through `history`, which adds the hold:
        # the plan's own statement (plan_history, PostgreSQL) does not. Held numbers are few.
        quiet = [q and r["number"] not in held for r, q in zip(rows, quiet)]
        history.update(_histories(cfg, store, [r["number"] for r in rows
                                               if r["number"] in held], now))
    out: Judged = []
    add = out.append
    for contact, q in zip(rows, quiet):
        number = contact["number"]
        if q and number not in opposed:  # most contacts: no per-contact judging (memo)
            add((contact, quiet_verdict(contact), None))
            continue
        # what `history` gives an opposed number
        past = history[number] if not q else History(opted_out=True)
        add((contact, judge(cfg, contact, now)(past), past))
    return out


def _opposed(past: History) -> History:
    """What `history` gives an opposed number: that, and whether a call is in flight."""
    return History(opted_out=True, in_flight=past.in_flight)


def _histories(cfg: Config, store: StoreBackend, numbers: list[str], now: datetime
               ) -> dict[str, History]:
    attempts_since, refusals_since = _since(cfg, now)
    return store.history(numbers, attempts_since, refusals_since, cfg.campaign.name) \
        if numbers else {}


class _QuietVerdicts:
    """The judge's verdict on an empty history: the calling rules alone, which then depend on
    the callee's zone, holiday region, slot and (demo_any_hour) whether the number is fiction;
    computed for the first contact of each such key, with its own number."""

    def __init__(self, cfg: Config, now: datetime) -> None:
        self.cfg, self.now = cfg, now
        self.memo: dict[tuple[object, ...], Verdict] = {}
        # (first five digits, slot) -> verdict, for an E.164 number without a zone of its
        # own whose country code decides its place (code_place), demo_any_hour off: the
        # verdict is then that key's alone, found without a call per contact. Five digits, not
        # the code's three: +33 3 87.. (Alsace-Moselle) is not decided by +33 alone. Other
        # numbers (overseas ones) by their place_key: the digits that can tell their place.
        self.by_head: dict[tuple[str, object], Verdict] = {}
        # a fiction caller ID or demo_any_hour: the verdict also depends on whether the number
        # is fiction, which its first digits do not tell
        self.fiction = cfg.schedule.demo_any_hour or is_fiction_number(cfg.campaign.caller_id)
        self.heads = not self.fiction

    def __call__(self, contact: dict[str, Any]) -> Verdict:
        number = contact["number"]
        if self.heads and not contact.get("timezone") and e164(number):
            slot = contact.get("slot")
            verdict = self.by_head.get((number[1:6], slot))
            if verdict is None:
                verdict = self.by_head.get((place_key(number), slot))
            if verdict is not None:
                return verdict
        return self._keyed(contact)

    def _keyed(self, contact: dict[str, Any]) -> Verdict:
        number, tz = contact["number"], contact.get("timezone")
        place, by_code = calendar_place(number, tz, self.cfg.schedule.timezone)
        key = (place, self.fiction and is_fiction_number(number), contact.get("slot"))
        verdict = self.memo.get(key)
        if verdict is None:
            verdict = self.memo[key] = judge(self.cfg, contact, self.now)(History())
        if self.heads and not tz and e164(number):
            head = number[1:6] if by_code else place_key(number)
            if head != number:  # a number that is its own key is not kept: no other shares it
                self.by_head[(head, contact.get("slot"))] = verdict
        return verdict

