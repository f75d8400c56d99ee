"""Who is due now, and why nobody is: the plan a run dials from, and the dial-time claim.

One pure judge decides for a contact from its History; the plan applies it in bulk (writing
nothing), and `claim` applies it again inside the store's transaction that writes the attempt.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from ivr.compliance.calling_rules import CAP_PERIOD, Verdict, callee_zone, check_call
from ivr.config import Config
from ivr.store.base import Claim, History, StoreBackend
from ivr.telephony.agi_auth import new_token, token_hash

RETRY_WAIT = "retry_wait"
IN_FLIGHT = Verdict(False, "in_flight", "a call to this contact is in progress", None)


@dataclass
class Plan:
    due: list[dict[str, Any]] = field(default_factory=list)
    waiting: list[tuple[dict[str, Any], Verdict]] = field(default_factory=list)
    history: dict[str, History] = field(default_factory=dict)  # of the due numbers

    def reasons(self) -> Counter[str]:
        return Counter(v.reason for _, v in self.waiting)

    def next_retry(self) -> datetime | None:
        times = [v.next_allowed for _, v in self.waiting
                 if v.reason == RETRY_WAIT and v.next_allowed is not None]
        return min(times) if times else None


def judge(cfg: Config, contact: dict[str, Any], now: datetime) -> Callable[[History], Verdict]:
    """The one decision for a contact, pure: opposition, a call in flight, the retry delay of
    its last attempt, then the calling rules. The plan and the claim both use it."""
    number = contact["number"]

    def decide(past: History) -> Verdict:
        if past.opted_out:
            return Verdict(False, "opted_out", f"{number} is on the opposition list", None)
        if past.in_flight:
            return IN_FLIGHT
        if past.retry_at is not None and past.retry_at > now:
            return Verdict(False, RETRY_WAIT, "waiting before the next attempt", past.retry_at)
        zone = callee_zone(number, contact.get("timezone"), cfg.schedule.timezone)
        return check_call(now, number=number, zone=zone, schedule=cfg.schedule,
                          attempts_utc=past.attempts, last_refusal_utc=past.last_refusal,
                          preferred_slot=contact.get("slot"))
    return decide


def _since(cfg: Config, now: datetime) -> tuple[datetime, datetime]:
    """What the rules look back on: attempts within the cap period, refusals within the
    cooldown."""
    return now - CAP_PERIOD, now - timedelta(days=max(cfg.schedule.refusal_cooldown_days, 0))


def claim(cfg: Config, store: StoreBackend, contact: dict[str, Any], node: str,
          now: datetime) -> Claim:
    """The dial path: judge the contact on its fresh history and, if allowed, write the attempt
    (placed by `node`), in one store transaction. The attempt's FastAGI token is drawn here:
    the store gets its hash, the returned Claim the token (for the Originate only)."""
    attempts_since, refusals_since = _since(cfg, now)
    token = new_token()
    got = store.claim_attempt(contact, campaign=cfg.campaign.name,
                              caller_id=cfg.campaign.caller_id, node=node, now=now,
                              attempts_since=attempts_since, refusals_since=refusals_since,
                              judge=judge(cfg, contact, now), token_hash=token_hash(token))
    return replace(got, token=token) if got.call is not None else got


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
    """Who is due now: the pending contacts, their history read in bulk, each judged. Writes
    nothing (a dry run leaves the store byte-identical); the claim updates statuses."""
    result = Plan()
    contacts = store.pending_contacts(cfg.campaign.name)
    attempts_since, refusals_since = _since(cfg, now)
    history = store.history([c["number"] for c in contacts], attempts_since, refusals_since,
                            cfg.campaign.name)
    for contact in contacts:
        past = history[contact["number"]]
        verdict = judge(cfg, contact, now)(past)
        if verdict.allowed:
            result.due.append(contact)
            result.history[contact["number"]] = past
        else:
            result.waiting.append((contact, verdict))
    return result


def why_nobody(store: StoreBackend, p: Plan, campaign: str | None = None) -> str:
    """One line for an operator whose run called nobody (or nobody more); `campaign`: count
    only that campaign's contacts."""
    by_status = store.contact_status_counts(campaign)
    if not any(by_status.values()):
        where = f" for campaign {campaign!r}" if campaign else ""
        return (f"no contacts{where}: import a list with `ivr contacts import FILE --source "
                "NAME`, or bind one with `ivr contacts share`")
    if not p.waiting and not p.due:
        done = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
        return f"all done: nothing left to call ({done})"
    parts = []
    for reason, n in p.reasons().most_common():
        sample = next(v for _, v in p.waiting if v.reason == reason)
        when = f", next allowed {sample.next_allowed:%Y-%m-%d %H:%M} UTC" \
            if sample.next_allowed else ""
        parts.append(f"{n} {reason.replace('_', ' ')} ({sample.detail}{when})")
    return "nobody can be called now: " + "; ".join(parts)
