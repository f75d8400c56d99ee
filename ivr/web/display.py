"""What the pages show in the operator's terms, where the store and the API keep theirs: times
in the campaign's zone (the config's schedule.timezone; the API keeps ISO UTC, which other
tools read), and the service's refusals in French (the API and the CLI keep the English).
console.js's localTime() writes times exactly as local_time() does, so a live update never
brings UTC back."""
from __future__ import annotations

import re
from datetime import datetime, timezone, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ivr.campaign.run_control import PAUSED, STANDBY
from ivr.web import i18n


@lru_cache(maxsize=16)
def zone(name: str) -> tzinfo:
    """The zone called `name`; UTC for a name this machine does not know (the config's
    check refuses one before a run: a page must still show)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def local_time(value: str | datetime | None, zone_name: str, *, named: bool = True,
               seconds: bool = False) -> str:
    """An instant (ISO text, as the store writes it, or a datetime) as 'dd/mm/YYYY HH:MM',
    with ':SS' when `seconds`, and ' (Europe/Paris)' when `named` (else a heading names the
    zone once). "" for none; a text that is no instant, as it is."""
    if not value:
        return ""
    try:
        at = value if isinstance(value, datetime) else \
            datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if at.tzinfo is None:  # the store's times are UTC
        at = at.replace(tzinfo=timezone.utc)
    text = at.astimezone(zone(zone_name)).strftime("%d/%m/%Y %H:%M" + (":%S" if seconds else ""))
    return f"{text} ({zone_name})" if named else text


@lru_cache(maxsize=4096)
def local_hour(hour: str, zone_name: str) -> str:
    """A UTC hour bucket of the store ('YYYY-MM-DDTHH') as its local start ('YYYY-MM-DDTHH:MM'):
    minutes 00 in every zone a whole number of hours from UTC, 30 in the Marquesas (UTC-9:30),
    where the hour 18Z runs 08:30-09:30 (a 09:15 call is not under an 08h bar). One that is
    not an hour is left as it is."""
    at = _hour_bucket(hour)
    return at.astimezone(zone(zone_name)).strftime("%Y-%m-%dT%H:%M") if at else hour


@lru_cache(maxsize=4096)
def utc_offset(hour: str, zone_name: str) -> str:
    """The zone's UTC offset during a UTC hour bucket ('+01:00'); '' for one not an hour."""
    at = _hour_bucket(hour)
    if at is None:
        return ""
    text = at.astimezone(zone(zone_name)).strftime("%z")
    return f"{text[:3]}:{text[3:]}"


def _hour_bucket(hour: str) -> datetime | None:
    """The start of a UTC hour bucket of the store ('YYYY-MM-DDTHH'), None for anything else."""
    try:
        return datetime.strptime(hour, "%Y-%m-%dT%H").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


# The service's refusals the rights and pacing forms meet most, in French; the field's key
# stays first, as in the English (the API's and the CLI's words: records/privacy.py,
# web/records.py, web/service.py).
_FRENCH = (
    (re.compile(r"(\w+): (.*) is not a valid phone number: give it as \+33… or 0…; (.*)", re.S),
     "refused_number"),
    (re.compile(r"confirm: type the number (\S+) again to confirm the erasure"),
     "refused_confirm"),
    (re.compile(r"(\w+): (.*) is not a whole number", re.S), "refused_whole"),
    (re.compile(r"(\w+): (.*) is not a number", re.S), "refused_float"),
    (re.compile(r"opt-out channel (.*) is not one of: .*", re.S), "refused_via"),
    (re.compile(r"pacing: give max_concurrent, calls_per_second or both"), "refused_pacing"),
    (re.compile(r"max_concurrent is (.*): use at least 1 and at most (\d+) calls "
                r"\(dialer.max_concurrent\)", re.S), "refused_max_concurrent"),
    # a contact list's file the upload refuses whole (records/csv_read.py): most often a first
    # list's header in French (`numero`), met by a new operator before anything else
    (re.compile(r"(.*): no 'number' column \(columns found: (.*)\): name the phone number "
                r"column 'number'", re.S), "upload_no_number"),
    (re.compile(r"(.*) is empty: its first line must be a header naming a 'number' column",
                re.S), "upload_empty"),
    (re.compile(r"(.*) is not CSV text \(NUL byte at offset (\d+)\): export the list as CSV",
                re.S), "upload_nul"),
    (re.compile(r"(.*) is a spreadsheet \(Excel/ODS\), not CSV text: save it as 'CSV UTF-8'",
                re.S), "upload_spreadsheet"),
    (re.compile(r"(.*) is UTF-16 text: save it as 'CSV UTF-8'", re.S), "upload_utf16"),
    (re.compile(r"(.*): column (.*) appears twice in the header: rename one", re.S),
     "upload_twice"),
    (re.compile(r"(.*): the header must be the first line: remove the title rows above it "
                r"\(line (\d+) looks like the header\)", re.S), "upload_title_rows"),
    (re.compile(r"--acquired-on (.*) is not a date: use YYYY-MM-DD", re.S), "upload_bad_date"),
    (re.compile(r"--acquired-on (.*) is in the future: give the date the list was acquired",
                re.S), "upload_future_date"),
    (re.compile(r"source: (\d+) characters, at most (\d+): give the list a short name", re.S),
     "upload_source_long"),
    # an erasure the store could not finish on disk (privacy.erase_warning): what remains, and
    # what to do, in the operator's words: "effacé" alone made them tell the person it was
    (re.compile(r"warning: another process holds (.*) open: the erased number stays in its "
                r"-wal file until that process closes the store; run `ivr gdpr erase` again "
                r"then", re.S), "erase_left_wal"),
    (re.compile(r"warning: the role (\S+) does not own (.*), so PostgreSQL may not rewrite them: "
                r".*", re.S), "erase_left_owner"),
    (re.compile(r"warning: another session held a lock on a table the erasure changed, .*",
                re.S), "erase_left_lock"),
)


def refusal(lang: str, text: str) -> str:
    """A refusal as a page in `lang` shows it: in English as it is; in French, its French
    words when known, else the English behind the note that says so."""
    if i18n.pick(lang) != "fr" or not text:
        return text
    return known(lang, text) or f"{i18n.translate(lang, 'detail_en')} {text}"


# A node's state as the controllers publish it (campaign/nodes.NodeState.why_not_ready): the
# words of the state; the node's name is in its own column.
_NODE_STATES = (
    (re.compile(r"node \S+ down \((\d+) call\(s\) in flight wait for it\)"), "node_down_waiting"),
    (re.compile(r"node \S+ down"), "node_down"),
    (re.compile(r"node \S+ reconciling"), "node_reconciling"),
    (re.compile(r"node \S+ holding after a PBX fault"), "node_holding"),
    (re.compile(r"node \S+ full"), "node_full"))


_NODE_NAMED = re.compile(r"node (\S+) .*", re.S)


def node_state(lang: str, holding: str) -> str:
    """A node's `holding` text as a page in `lang` shows it: French words in French (the
    English behind the note when unknown); as it is in English."""
    if i18n.pick(lang) != "fr" or not holding:
        return holding
    return _french_of(lang, _NODE_STATES, holding) or \
        f"{i18n.translate(lang, 'detail_en')} {holding}"


def known(lang: str, text: str) -> str | None:
    """The French words of a refusal _FRENCH knows, else None (an English page: None)."""
    return _french_of(lang, _FRENCH, text)


def _french_of(lang: str, table: tuple[tuple[re.Pattern[str], str], ...],
            text: str) -> str | None:
    """The French words of the first pattern of `table` the whole text matches, its groups
    filled in; None on an English page or when none matches."""
    if i18n.pick(lang) != "fr":
        return None
    for pattern, key in table:
        found = pattern.fullmatch(text)
        if found:
            return i18n.translate(lang, key).format(*found.groups())
    return None


# A run held from the console: the controllers' own words (run_control), known here.
_HELD = {PAUSED: "why_held_paused", STANDBY: "why_held_standby"}


def why_text(lang: str, o: dict[str, Any], zone_name: str) -> str:
    """Why nobody is called (an overview's `why_waiting`, `why_parts`) as a page in `lang`
    shows it: in English as the API gives it; in French, the plan's reasons and next allowed
    times in words and in the campaign's zone, each rule's detail in English beside them; a
    controller's own words behind the note that says they are English."""
    text = o.get("why_waiting") or ""
    if i18n.pick(lang) == "en" or not text:
        return text
    parts = o.get("why_parts") or []
    if not parts:
        key = _HELD.get(text)
        node, state = _NODE_NAMED.fullmatch(text), _french_of(lang, _NODE_STATES, text)
        if key is None and node is not None and state:  # a node the run waits on, in words
            return f"{i18n.translate(lang, 'node')} {node.group(1)} : {state}"
        return i18n.translate(lang, key) if key else \
            f"{i18n.translate(lang, 'detail_en')} {text}"
    first, say = parts[0], lambda key, **kw: i18n.translate(lang, key).format(**kw)
    if first["kind"] == "no_contacts":
        return say("why_no_contacts", campaign=first["campaign"])
    if first["kind"] == "all_done":
        return say("why_all_done", done=", ".join(
            f"{i18n.translate(lang, 'contact_' + s, s)} : {n}"
            for s, n in first["statuses"].items()))
    reasons = "; ".join(
        say("why_reason", n=q["n"], detail=q["detail"],
            reason=i18n.translate(lang, "reason_" + q["reason"], q["reason"].replace("_", " ")),
            when=say("why_when", next=local_time(q["next_allowed"], zone_name))
            if q["next_allowed"] else "")  # none: opted out, the cap (no date comes back)
        for q in parts if q["kind"] == "reason")
    if first["kind"] == "stopped_due":
        return "; ".join(filter(None, (say("why_stopped_due", n=first["n"]), reasons)))
    return say("why_nobody_now", reasons=reasons)


NNBSP = "\u202f"  # French groups a number's thousands with a narrow no-break space


def whole(lang: str, value: Any) -> str:
    """A count as a page in `lang` writes it: 12 345 in French (a narrow no-break space),
    12,345 in English (console.js's `num` writes the live updates the same); None: "—"; what
    is not a whole number, as it is."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool) or not isinstance(value, int):
        return str(value)
    text = f"{value:,}"
    return text.replace(",", NNBSP) if i18n.pick(lang) == "fr" else text


def decimal(lang: str, value: Any) -> str:
    """A figure with one decimal as a page in `lang` writes it: 12,5 in French, 12.5 in
    English (console.js's `dec` writes the live updates the same); None: "—"."""
    if value is None or value == "":
        return "—"
    text = f"{float(value):.1f}" if isinstance(value, (int, float)) else str(value)
    return text.replace(".", ",") if i18n.pick(lang) == "fr" else text
