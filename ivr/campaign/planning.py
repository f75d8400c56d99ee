"""Who is due now, and why nobody is: the plan a run dials from, and the dial-time verdict."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ivr.compliance.calling_rules import CAP_PERIOD, Verdict, callee_zone, check_call
from ivr.config import Config
from ivr.store.safe_writes import STORE_ERRORS
from ivr.store.sqlite import History, Store, parse_utc, utc

log = logging.getLogger(__name__)
RETRY_WAIT = "retry_wait"


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


def verdict_for(cfg: Config, store: Store, contact: dict[str, Any], now: datetime,
                history: History | None = None) -> Verdict:
    """Every rule, checked at the moment of dialling. The opposition list and the last attempt
    are always read afresh; `history` (from the plan) spares re-reading attempts and refusals,
    which only this contact's own calls can change."""
    number = contact["number"]
    if store.is_opted_out(number):
        return _opted_out(number)
    last = store.one("SELECT retry_at, outcome FROM calls WHERE contact_id = ? AND campaign = ? "
                     "ORDER BY id DESC LIMIT 1", (contact["id"], cfg.campaign.name))
    if last and last["outcome"] is None:
        return IN_FLIGHT
    if last and last["retry_at"] and parse_utc(last["retry_at"]) > now:
        return Verdict(False, RETRY_WAIT, "waiting before the next attempt",
                       parse_utc(last["retry_at"]))
    if history is None:
        history = _history(cfg, store, [number], now)[number]
    return _rules(cfg, contact, now, history)


def _history(cfg: Config, store: Store, numbers: list[str], now: datetime
             ) -> dict[str, History]:
    """What the rules need to look back on: attempts within the cap period, refusals within
    the cooldown."""
    return store.history(numbers, now - CAP_PERIOD,
                         now - timedelta(days=max(cfg.schedule.refusal_cooldown_days, 0)))


def _opted_out(number: str) -> Verdict:
    return Verdict(False, "opted_out", f"{number} is on the opposition list", None)


def _rules(cfg: Config, contact: dict[str, Any], now: datetime, history: History) -> Verdict:
    number = contact["number"]
    zone = callee_zone(number, contact.get("timezone"), cfg.schedule.timezone)
    return check_call(now, number=number, zone=zone, schedule=cfg.schedule,
                      attempts_utc=history.attempts, last_refusal_utc=history.last_refusal,
                      preferred_slot=contact.get("slot"))


IN_FLIGHT = Verdict(False, "in_flight", "a call to this contact is in progress", None)


def plan(cfg: Config, store: Store, now: datetime) -> Plan:
    """Who is due now. One query classifies contacts in flight or waiting for a retry, and the
    history of the others is read in bulk, so a re-plan costs a few queries, not four per
    contact."""
    result = Plan()
    rows = store.q(
        "SELECT c.*, l.id AS last_id, l.outcome AS last_outcome, l.retry_at AS last_retry "
        "FROM contacts c LEFT JOIN calls l ON l.id = (SELECT MAX(id) FROM calls "
        "WHERE contact_id = c.id AND campaign = ?) WHERE c.status = 'pending' ORDER BY c.id",
        (cfg.campaign.name,))
    to_check = []
    for row in rows:
        contact = {k: v for k, v in row.items() if not k.startswith("last_")}
        if row["last_id"] is not None and row["last_outcome"] is None:
            result.waiting.append((contact, IN_FLIGHT))
        elif row["last_retry"] and parse_utc(row["last_retry"]) > now:
            result.waiting.append((contact, Verdict(False, RETRY_WAIT, "waiting before the "
                                                    "next attempt", parse_utc(row["last_retry"]))))
        else:
            to_check.append(contact)
    history = _history(cfg, store, [c["number"] for c in to_check], now)
    for contact in to_check:
        past = history[contact["number"]]
        if past.opted_out:
            verdict = _opted_out(contact["number"])
            try:  # keep the status true to the list
                store.db.execute("UPDATE contacts SET status = 'opted_out', "
                                 "updated_at = ? WHERE id = ?", (utc(now), contact["id"]))
            except STORE_ERRORS as exc:  # cosmetic: the hash is checked at dial time
                log.warning("contact status not updated (%s)", exc)
            result.waiting.append((contact, verdict))
            continue
        verdict = _rules(cfg, contact, now, past)
        if verdict.allowed:
            result.due.append(contact)
            result.history[contact["number"]] = past
        else:
            result.waiting.append((contact, verdict))
    return result


def why_nobody(store: Store, p: Plan) -> str:
    """One line for an operator whose run called nobody (or nobody more)."""
    counts = store.q("SELECT status, COUNT(*) AS n FROM contacts GROUP BY status")
    by_status = {r["status"]: r["n"] for r in counts}
    if not any(by_status.values()):
        return "no contacts: import a list with `ivr contacts import FILE --source NAME`"
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
