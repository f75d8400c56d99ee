"""Why a run calls nobody, in one line for the operator: the plan's reasons counted, each with
its soonest contact's detail and next allowed time. As data (why_parts), which the console
words in its page's language, and in the command line's English (why_sentence), which the
CLI, the run's report and the API's `why_waiting` give."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from ivr.campaign.planning import Plan
from ivr.campaign.retry_wait import RETRY_WAIT, soonest_first
from ivr.store.base import StoreBackend


def why_nobody(store: StoreBackend, p: Plan, campaign: str | None = None) -> str:
    """One line for an operator whose run called nobody (or nobody more); `campaign`: count
    only that campaign's contacts. With contacts still due (a run's end only: stopped before
    calling them) it says so, not "nobody can be called now" with no reason."""
    return why_sentence(why_parts(store, p, campaign))


def why_parts(store: StoreBackend, p: Plan, campaign: str | None = None) -> list[dict[str, Any]]:
    """What why_nobody says, as data a page words in its own language: one of `no_contacts`
    (with `campaign`), `all_done` (`statuses`: count by contact status), or a `stopped_due`
    (`n`) and/or one `reason` part per calling rule (`reason`, `n`, `detail`, and the
    soonest contact's `next_allowed`, ISO UTC or None), the most common first."""
    by_status = store.contact_status_counts(campaign)
    if not any(by_status.values()):
        return [{"kind": "no_contacts", "campaign": campaign}]
    if not p.waiting and not p.due:
        return [{"kind": "all_done", "statuses": dict(sorted(by_status.items()))}]
    parts: list[dict[str, Any]] = [{"kind": "stopped_due", "n": len(p.due)}] if p.due else []
    for reason, n in p.reasons().most_common():
        # the example is the reason's soonest contact: its time is then the one the
        # console's `next allowed` gives (the first in id order may be in a later zone)
        sample = (p.soonest_retry() if reason == RETRY_WAIT else None) or \
            min((v for _, v in p.waiting if v.reason == reason), key=soonest_first)
        nxt = sample.next_allowed.isoformat() if sample.next_allowed else None
        parts.append({"kind": "reason", "reason": reason, "n": n, "detail": sample.detail,
                      "next_allowed": nxt})
    return parts


def why_sentence(parts: list[dict[str, Any]]) -> str:
    """why_parts in the command line's English (the API's `why_waiting` too)."""
    first = parts[0]
    if first["kind"] == "no_contacts":
        where = f" for campaign {first['campaign']!r}" if first["campaign"] else ""
        return (f"no contacts{where}: import a list with `ivr contacts import FILE --source "
                "NAME`, or bind one with `ivr contacts share`")
    if first["kind"] == "all_done":
        done = ", ".join(f"{n} {s}" for s, n in first["statuses"].items())
        return f"all done: nothing left to call ({done})"
    said = []
    for part in (q for q in parts if q["kind"] == "reason"):
        nxt = part["next_allowed"]
        when = f", next allowed {datetime.fromisoformat(nxt):%Y-%m-%d %H:%M} UTC" if nxt else ""
        said.append(f"{part['n']} {part['reason'].replace('_', ' ')} ({part['detail']}{when})")
    if first["kind"] == "stopped_due":  # only at a run's end: stopped before calling them
        said.insert(0, f"the run stopped with {first['n']} contact(s) still due, not called")
        return "; ".join(said)
    return "nobody can be called now: " + "; ".join(said)
