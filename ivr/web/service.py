"""What the console shows and does for one campaign, as plain data: the API returns it as
JSON and the pages render it. Every function takes an open store (the caller's thread's) and
writes only through the store's methods; the console never reaches into a controller."""
from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from ivr.callflow import outcomes as outcome_table
from ivr.campaign.planning import plan
from ivr.campaign.run_control import check_pacing
from ivr.campaign.why import why_parts, why_sentence
from ivr.config import Config
from ivr.records import report
from ivr.store.base import Chunk, StoreBackend, parse_utc
from ivr.web.cache import Marked

# control action -> desired state (run_control.desired)
ACTIONS = {"start": "running", "pause": "paused", "resume": "running", "stop": "stopped",
           "hard_stop": "hard_stop"}
STALE_S = 10.0  # a snapshot older than this is a controller that stopped publishing
PLAN_TTL_S = 15.0  # "why nobody" is planned at most this often per campaign (it reads lists)
Why = tuple[str, str | None, list[dict[str, Any]]]  # PlanCache.why's answer


def for_campaign(cfg: Config, campaign: str) -> Config:
    """The console's config with another campaign's name (the switcher): lists, calls and
    preflight are the campaign's; the prompts, rules and pacing bounds are this config's."""
    if campaign == cfg.campaign.name:
        return cfg
    return dataclasses.replace(cfg, campaign=dataclasses.replace(cfg.campaign, name=campaign))


# -- the overview ----------------------------------------------------------------------------
class PlanCache:
    """why_nobody and the next allowed time per campaign, kept PLAN_TTL_S: planning reads
    every pending contact, too much for each refresh of each open console. Planned afresh
    sooner when the campaign's number of contacts moved (a list imported, here or by `ivr
    contacts import`; calls only move them between statuses) or the console forgot it
    (forget(): its own upload, run control, erasure): else the overview said "no contacts:
    import a list" for 15 s after an import."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[float, int, Why]] = {}

    def why(self, cfg: Config, store: StoreBackend, campaign: str, now: datetime,
            contacts: Mapping[str, int] | None = None) -> Why:
        """(why_nobody's line, the next allowed time, the line's parts: why.why_parts)."""
        counts = sum((contacts or {}).values())
        with self._lock:
            hit = self._kept.get(campaign)
            if hit and hit[1] == counts and time.monotonic() - hit[0] < PLAN_TTL_S:
                return hit[2]
        p = plan(for_campaign(cfg, campaign), store, now)
        soonest = p.next_allowed()  # not every retry's: the soonest is searched for (planning)
        parts = why_parts(store, p, campaign) if not p.due else []
        value = (why_sentence(parts) if parts else "", soonest.isoformat() if soonest else None,
                 parts)
        with self._lock:
            self._kept[campaign] = (time.monotonic(), counts, value)
        return value

    def forget(self, campaign: str | None = None) -> None:
        """The next overview of `campaign` (of every campaign: None) plans afresh."""
        with self._lock:
            if campaign is None:
                self._kept.clear()
            else:
                self._kept.pop(campaign, None)


def _live(snapshots: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Snapshots of controllers still running: fresh and not over. The age is the store's when
    it gives one (PostgreSQL: its own clock's, the one that stamped the row), else this
    machine's clock against the row's stamp (SQLite: the controllers share this machine)."""
    out = []
    for row in snapshots:
        snap = row["snapshot"]
        age = row.get("age_s")
        if age is None:
            age = (now - parse_utc(row["at"])).total_seconds()
        if age <= STALE_S and not snap.get("stopped"):
            out.append({**snap, "controller": row["controller"], "age_s": round(age, 1)})
    return out


def _nodes(live: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Calls in flight per node, summed over the campaign's controllers, against the node's
    configured max_channels (each controller reports its config's; the cap is per node, not
    per controller: a sum showed twice the cap with two controllers)."""
    nodes: dict[str, dict[str, Any]] = {}
    for snap in live:
        for n in snap.get("nodes") or []:
            e = nodes.setdefault(n.get("name", "?"), {"name": n.get("name", "?"), "in_flight": 0,
                                                      "cap": 0, "up": True, "holding": ""})
            e["in_flight"] += int(n.get("in_flight") or 0)
            e["cap"] = max(e["cap"], int(n.get("cap") or 0))
            e["up"] = e["up"] and bool(n.get("up", True))
            e["holding"] = e["holding"] or n.get("holding") or ""
    return list(nodes.values())


def desired_set(control: Mapping[str, Any] | None) -> str | None:
    """The run state last written (Start, Pause, Stop…), None while nobody has set one: a
    row a pacing created says `paused` only so a standby run neither starts nor ends."""
    return control["desired"] if control and control["updated_at"] else None


def campaign_cap(cfg: Config, control: Mapping[str, Any] | None) -> int:
    """The campaign-wide cap on calls in flight the run applies: the console's pacing when
    set, else dialer.max_concurrent, kept within the config as run_control keeps it."""
    top = cfg.dialer.max_concurrent
    asked = (control or {}).get("max_concurrent") or top
    return max(1, min(int(asked), top))


def _progress(rep: dict[str, Any], rate_per_min: float) -> tuple[float | None, float | None]:
    """% of the campaign's contacts no longer pending, and the seconds left at this rate."""
    contacts = rep["contacts"]
    total = sum(contacts.values())
    pending = contacts.get("pending", 0)
    pct = round(100.0 * (total - pending) / total, 1) if total else None
    if pct is not None and pending:  # 1 left of 20,000 rounded to 100.0 beside an ETA
        pct = min(pct, 99.9)
    eta = round(60.0 * pending / rate_per_min) if rate_per_min > 0 and pending else None
    return pct, eta


def _why(cfg: Config, store: StoreBackend, campaign: str, now: datetime, plans: PlanCache,
         live: list[dict[str, Any]], contacts: Mapping[str, int]) -> Why:
    """Why nobody is called, and the next allowed time. A run held (the console's pause or
    standby, no node taking calls, the store refusing writes) says so; otherwise the calling
    rules say why, with the time they next allow a call: a controller's snapshot only counts
    its waiting contacts per reason and gives no time unless a retry is waiting, so the
    plan's own line and time come first, the snapshot's words as a fallback."""
    held = next((h for s in live for h in (s.get("console"), s.get("holding"), s.get("paused"))
                 if h), "")
    retries = [s["next_retry"] for s in live if s.get("next_retry")]
    if held:
        return held, min(retries) if retries else None, []
    why, planned_next, parts = plans.why(cfg, store, campaign, now, contacts)
    if not why:
        why = next((s["waiting"] for s in live if s.get("waiting")), "")
    times = [t for t in (planned_next, *retries) if t]
    return why, min(times, key=parse_utc) if times else None, parts


def _until_commit(kept: Marked | None, key: str, read: Callable[[], Any],
                  mark: Callable[[], str] | None = None) -> Any:
    """read(), or its value kept until something is committed to the store (`kept`: keyed by
    the store's change marker, so never stale): an open overview recomputes every second.
    `mark`: a narrower marker (the campaign's calls), read before `read`."""
    if kept is None:
        return read()
    return kept.get(key, read, mark() if mark is not None else None)


def overview(cfg: Config, store: StoreBackend, campaign: str, now: datetime,
             plans: PlanCache, kept: Marked | None = None) -> dict[str, Any]:
    """The live overview. `counts` come from the report's own code (records/report.summary),
    so at the end they equal `ivr report --format json`'s outcomes exactly. `kept`: the
    summary and the calls per hour as last read, read again only after a commit. The calls
    per hour are a GROUP BY over every call of the campaign (250-500 ms at 300,000 calls):
    read each second, one idle open page cost 16 % of a core; now it is read once."""
    rep = _until_commit(kept, f"summary:{campaign}", lambda: report.summary(store, campaign))
    # keyed on the campaign's calls: a run commits its snapshot every second, night and day,
    # and each commit recomputed this (350-420 ms at 300,000 calls) for an open page
    hours = _until_commit(kept, f"per_hour:{campaign}",
                          lambda: [dict(r) for r in store.calls_per_hour(campaign)],
                          lambda: store.calls_marker(campaign))
    counts = {o: 0 for o in outcome_table.ORDER} | rep["outcomes"]
    # Only the fresh rows: the table keeps every past run's last snapshot, never shown
    live = _live(store.fresh_snapshots(campaign, STALE_S, now), now)
    rate = round(sum(float(s.get("rate_per_min") or 0) for s in live), 1)
    pct, eta = _progress(rep, rate)
    in_flight = sum(int(s.get("in_flight") or 0) for s in live)
    why, next_allowed, parts = ("", None, []) if in_flight else \
        _why(cfg, store, campaign, now, plans, live, rep["contacts"])
    control = store.run_control(campaign)
    return {
        "campaign": campaign, "at": now.isoformat(), "counts": counts,
        "attempts": rep["attempts"], "in_flight": in_flight, "in_flight_rows": rep["in_flight"],
        "cap": campaign_cap(cfg, control),
        "nodes": _nodes(live), "calls_per_minute": rate, "percent_complete": pct,
        "eta_s": eta, "contacts": rep["contacts"], "why_waiting": why,
        "why_parts": parts, "next_allowed": next_allowed,
        "desired": desired_set(control),
        "controllers": [{"controller": s["controller"], "status": s.get("status", ""),
                         "in_flight": s.get("in_flight", 0), "age_s": s["age_s"]}
                        for s in live],
        "per_hour": hours,
        "recent_calls": [dict(r) for r in store.recent_calls(campaign, 50)],
    }


# -- run control -------------------------------------------------------------------------------
def control(store: StoreBackend, campaign: str, action: str, user: str,
            now: datetime) -> dict[str, Any]:
    if action not in ACTIONS:
        raise ValueError(f"action: {action!r} is not one of {', '.join(ACTIONS)}")
    return dict(store.set_run_control(campaign, desired=ACTIONS[action], by=user, now=now))


def _number(where: str, text: Any, kind: type) -> Any:
    if text is None or text == "":
        return None
    try:
        return kind(text)
    except (TypeError, ValueError):
        # int("2.5") fails too: "not a number" misled (it is one, not a whole one)
        raise ValueError(f"{where}: {text!r} is not a "
                         f"{'whole number' if kind is int else 'number'}") from None


def pacing(cfg: Config, store: StoreBackend, campaign: str, max_concurrent: Any,
           calls_per_second: Any, user: str, now: datetime) -> dict[str, Any]:
    mc = _number("max_concurrent", max_concurrent, int)
    cps = _number("calls_per_second", calls_per_second, float)
    if mc is None and cps is None:
        raise ValueError("pacing: give max_concurrent, calls_per_second or both")
    check_pacing(cfg, mc, cps)  # the controller's own bounds: the config's, never beyond
    return dict(store.set_run_control(campaign, max_concurrent=mc, calls_per_second=cps,
                                      by=user, now=now))


def preflight(cfg: Config, store: StoreBackend, campaign: str) -> list[dict[str, str]]:
    """`ivr check`'s violations for the campaign. The build is judged for the console's own
    campaign only (another campaign's controller has its own config and build), and against the
    config the console loaded only while it is still the one on disk."""
    from ivr.compliance.campaign_check import check_campaign
    from ivr.web.prompts import config_moved_on
    own = campaign == cfg.campaign.name
    moved_on = config_moved_on(cfg) if own else None
    out = [{"severity": v.severity, "code": v.code, "message": v.message}
           for v in check_campaign(for_campaign(cfg, campaign), store,
                                   build=own and moved_on is None, prompts=own)]
    if not own:  # its prompts and rules are in its own config: A's said nothing of them
        out.append({"severity": "info", "code": "other_campaign", "message": (
            f"judged with this console's config, not {campaign}'s own: its prompts are not "
            f"checked here, and its calling rules and pacing bounds are its own config's; run "
            f"`ivr check` with that config")})  # unnamed: a bound user may not see the other
    if moved_on:
        out.append({"severity": "error", "code": "console_config_stale", "message": moved_on})
    return out


# -- reports: the same bytes as `ivr report --format csv|json` -----------------------------------
def write_report_csv(store: StoreBackend, campaign: str, out: Any) -> None:
    report.calls_csv(store, out, campaign=campaign)


def write_report_csv_kept(store: StoreBackend, campaign: str, out: Any,
                          kept: Mapping[int, Chunk], fresh: dict[int, Chunk] | None,
                          fresh_max: int | None = None) -> None:
    """The same bytes, the unchanged blocks of `kept` reused (the console's report.csv)."""
    report.calls_csv_kept(store, out, campaign, kept, fresh, fresh_max)


def report_json(store: StoreBackend, campaign: str) -> str:
    # The CLI prints this with print(): the same text and its newline.
    return json.dumps(report.summary(store, campaign), indent=2, ensure_ascii=False) + "\n"


def eta_text(seconds: float | None) -> str:
    """H:MM:SS, hours past 24 included, as console.js's eta() writes it (a live update
    rewrites this field: timedelta's '1 day, 1:00:00' came back as '25:00:00')."""
    if seconds is None:
        return "—"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
