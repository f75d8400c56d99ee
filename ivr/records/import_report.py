"""An import's report and the pure parts of a line's way into the store: the provenance check
of the list, the acquisition date, a merge that fills blanks only, the counters a batch moves
(ivr/records/contacts.py drives them)."""
from __future__ import annotations

import difflib
import json
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from ivr.compliance.callee_place import Zones, callee_zone
from ivr.compliance.list_sources import KNOWN_BASES
from ivr.compliance.preflight import check_sources
from ivr.compliance.violations import fold
from ivr.config import Schedule
from ivr.errors import ComplianceError
from ivr.errors import ImportFileError
from ivr.store.base import Row

DEFAULT_TZ = Schedule.timezone  # the config's default, for callers that give none


@dataclass
class ImportReport:
    """Each non-blank data line lands in exactly one of added, merged, unchanged, rejected.

    added = numbers new to the campaign, whether or not another campaign holds them (that is
    the other party's to know); merged = the campaign's contacts that gained data + lines
    repeating a number seen earlier in the file (those are also counted in `duplicates`).
    opted_out counts the file's distinct numbers on the opposition list, whichever of
    added/merged/unchanged they fell in.
    """
    added: int = 0
    merged: int = 0
    unchanged: int = 0
    opted_out: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    duplicates: int = 0
    rejected_total: int = 0  # len(rejected) unless more than MAX_LISTED_REJECTS
    # The file's distinct numbers already bound to the campaign under another list or basis:
    # their binding keeps that first provenance (bind_contacts). kept_as: "source/basis" -> n.
    provenance_kept: int = 0
    kept_as: dict[str, int] = field(default_factory=dict)
    # Bindings to the campaign an earlier list queued, taken out of the queue (opted_out)
    # because a line of this file records the person's objection or lack of consent.
    withdrawn: int = 0

    def summary(self) -> str:
        dup = (f" ({self.merged - self.duplicates} existing updated, {self.duplicates} "
               "repeated in the file)") if self.duplicates else ""
        out = (f"{self.added} added, {self.merged} merged{dup}, {self.unchanged} unchanged, "
               f"{self.opted_out} on the opposition list (never called), "
               f"{self.rejected_total} rejected")
        return out + (f", {self.withdrawn} taken out of the queue (this file records "
                      "their objection or no consent)" if self.withdrawn else "")


class PartialImportError(ImportFileError):
    """A fatal error in the file once reading began; `report`: what was found before it (its
    rejects, for the command to list)."""

    def __init__(self, message: str, report: ImportReport) -> None:
        super().__init__(message)
        self.report = report


def provenance(source: str, basis: str | None, notes: list[str] | None = None) -> str:
    """The basis, once the list's name and basis pass the preflight provenance rules (the run
    would refuse them anyway: refusing here stores nothing that may not be called). `notes`
    takes the check's warnings about the basis (a typo such as 'concent'), in its words: said
    at the import, not first at the next `ivr check`."""
    _source_name(source)
    basis = (basis or "").strip()
    if not basis:
        raise ImportFileError("a list needs its acquisition basis: pass --basis consent, "
                              "member_file or rented_file")
    found = check_sources([{"source": source, "basis": basis, "acquired_on": "2000-01-01"}])
    errors = [v.message for v in found if v.is_error]
    if errors:
        raise ImportFileError("; ".join(errors))
    _refuse_a_basis_typo(basis)
    if notes is not None:
        notes += [v.message for v in found if v.code.startswith("basis")]
    return basis


SOURCE_MAX = 200  # characters: a list's name is shown on every page and report line of it


def _source_name(source: str) -> None:
    """A list's name is a label on one line: a megabyte of it was stored and sent with every
    page of the campaign, and a line break split report.csv's rows."""
    if len(source) > SOURCE_MAX:
        raise ImportFileError(f"source: {len(source)} characters, at most {SOURCE_MAX}: give "
                              "the list a short name")
    if any(unicodedata.category(c).startswith("C") for c in source):
        raise ImportFileError("source: it holds a line break or a control character: give the "
                              "list a name on one line")


def _refuse_a_basis_typo(basis: str) -> None:
    """A basis of one's own is taken with a warning, but one this close to a known basis is a
    typo ('concent'): the binding keeps the basis it was first imported with, so stored it
    could never be corrected by importing the list again."""
    folded = fold(basis).strip()
    if folded in KNOWN_BASES:
        return
    close = difflib.get_close_matches(folded, sorted(KNOWN_BASES), n=1, cutoff=0.7)
    if close:
        raise ImportFileError(f"basis {basis!r} is not one of {', '.join(sorted(KNOWN_BASES))}:"
                              f" did you mean {close[0]}? Give the basis {close[0]} (a list "
                              "keeps the basis it is first imported with)")


_COUNTS = ("added", "merged", "unchanged", "opted_out", "duplicates", "withdrawn")


def counts_of(report: ImportReport) -> dict[str, int]:
    """The counters a batch's writes move (ImportReport), to put back if it rolls back."""
    return {key: getattr(report, key) for key in _COUNTS}


def fill_blanks(base: dict[str, Any], more: dict[str, str]) -> dict[str, Any]:
    """Blanks of `base` take the values of `more`; nothing is overwritten."""
    for key, value in more.items():
        if value and not base.get(key):  # an empty cell adds nothing, not even its key
            base[key] = value
    return base


def extra_columns(row: dict[str, str]) -> dict[str, str]:
    """The columns kept as JSON: all but name and timezone (the number is already out)."""
    return {k: v for k, v in row.items() if k not in ("name", "timezone")}


def to_json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False)


def acquired_on_date(text: str | None, now: datetime) -> str | None:
    """ISO date, or None when none is given: the date stays unknown rather than today's, a
    date nobody stated being no proof of when the numbers were acquired (`ivr check` warns
    of a list without one: preflight's acquired_on_missing)."""
    if text is None or not text.strip():
        return None
    try:
        day = date.fromisoformat(text.strip())
    except ValueError as exc:
        raise ImportFileError(f"--acquired-on {text!r} is not a date: use YYYY-MM-DD") from exc
    if day > now.date() + timedelta(days=1):  # one day of slack for time zones
        raise ImportFileError(f"--acquired-on {day} is in the future: give the date the list "
                              "was acquired")
    return day.isoformat()


def implied_zones(number: str, default_tz: str) -> set[str]:
    """The zones a contact stored with no time zone is judged in (callee_zone): its number's
    when the number tells, else the campaign's schedule.timezone."""
    try:
        zone = callee_zone(number, None, default_tz)
    except ComplianceError:  # an unknown default: the config check says so
        return {default_tz}
    return {z.key for z in zone.zones} if isinstance(zone, Zones) else {str(zone.key)}


def zone_clashes(batch: dict[str, dict[str, str]], existing: dict[str, Row], store: Any,
                 campaign: str, default_tz: str = DEFAULT_TZ) -> tuple[dict[str, str], set[str]]:
    """The numbers stored with a time zone the file contradicts (none stored: the zone it is
    judged in, `implied_zones`): ({number: why} for those
    another campaign has bound too, whose lines are rejected with nothing of them written,
    and the others', this campaign's alone, whose zone the file corrects). A contact is one
    row for every campaign and a later list only fills its blanks: another campaign's zone
    was ignored without a word, and its calls judged at the first list's hours."""
    differ = [n for n, row in batch.items() if row.get("timezone") and (
        existing.get(n) or {}).get("timezone") not in (None, "", row.get("timezone"))]
    # Stored with none, the contact is judged in its number's zone or the default: a zone
    # that differs from those is as much another zone (found in review: B's list filled A's
    # blank with America/Martinique, and A's calls to that mobile moved to Martinique hours).
    blanks = [n for n, row in batch.items() if row.get("timezone") and n in existing
              and not existing[n].get("timezone")]
    shared = store.bound_elsewhere(differ + blanks, campaign) if differ or blanks else set()
    judged = {n: implied_zones(n, default_tz) for n in shared if not existing[n]["timezone"]}
    shared = {n for n in shared if batch[n]["timezone"] not in judged.get(n, ())}
    clashes = {}
    for number in [n for n in batch if n in shared]:  # in the file's order, not a set's
        old, new = existing[number]["timezone"], batch[number]["timezone"]
        clashes[number] = (f"{number} is stored with time zone {old}, which another "
                           f"campaign's list shares; this file says {new}: a person has one, "
                           f"so correct whichever list is wrong, or leave this file's "
                           f"timezone empty to keep {old}") if old else (
            f"{number} is stored with no time zone (its calls judged in "
            f"{' or '.join(sorted(judged[number]))}), which another "
            f"campaign's list shares; this file says {new}: a person has one, so correct "
            f"whichever list is wrong, or leave this file's timezone empty")
    return clashes, set(differ) - shared


def two_zones(number: str, earlier: str, where: str, zone: str) -> str:
    """Why a later line of a file is rejected: it gives `number` another zone than an earlier
    line (`where`: "on line N", or "on an earlier line" once that line's batch is written)."""
    return (f"{number} has two time zones in this file: {earlier} {where}, {zone} here: a "
            "person has one; correct the file")
