"""Contact lists in: CSV import with provenance, E.164 numbers, merging (oppositions: elsewhere).

Memory stays bounded whatever the file size. A first streaming pass over the bytes refuses what is
not text (NUL bytes) and picks the encoding; nothing is written before it and the header check
pass. Rows are then streamed through csv.reader and written in batches of BATCH numbers, each
batch in its own transaction. A fatal error after some batches (e.g. broken quoting at line
900 000) leaves the earlier batches imported and consistent, never half a batch; the error says
so with the counts (PartialImportError: its report holds the rejects found before it, which
`ivr contacts import` lists), the audit row records it, and importing the fixed file again is
safe because importing is idempotent.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ivr.errors import ImportFileError, StoreError, store_trouble
from ivr.numbers import NumberRejected, e164, parse_callee
from ivr.opposition_input import objected_number
from ivr.records.csv_read import (EMPTY, LATIN1_WARNING, header_columns, marked_columns,
                                  marked_refusal, objection_in_cells, overflow_reason,
                                  read_records, short, unnamed)
from ivr.records.import_report import (DEFAULT_TZ, ImportReport, PartialImportError,
                                       acquired_on_date,
                                       counts_of, extra_columns, fill_blanks, provenance, to_json,
                                       two_zones, zone_clashes)
from ivr.records.interrupts import signals_held
from ivr.records.list_share import share_list
from ivr.store.base import Row, StoreBackend

__all__ = ["BATCH", "LATIN1_WARNING", "ImportReport", "PartialImportError", "e164", "import_csv",
           "import_optouts", "share_list"]

BATCH = 1000            # distinct numbers per transaction
NO_DATE = ("no acquisition date (--acquired-on): the list's stays unknown and `ivr check` "
           "warns of it; import the same list again with its date to record it")
MAX_LISTED_REJECTS = 1000  # beyond this only counted: an all-garbage huge file stays bounded
MAX_LISTED_OBJECTIONS = 100_000  # objection lines are listed past it, up to this (bounded too)


def import_csv(store: StoreBackend, path: Path, *, campaign: str, source: str,
               basis: str | None, acquired_on: str | None, default_region: str, now: datetime,
               allow_countries: frozenset[str] = frozenset(),
               log: Callable[[str], None] = lambda s: None,
               default_tz: str = DEFAULT_TZ) -> ImportReport:
    """Import a contact list; see the module docstring for what a fatal error leaves behind."""
    source = (source or "").strip()
    if not source:
        raise ImportFileError("a list needs its provenance: pass --source NAME")
    notes: list[str] = []
    basis = provenance(source, basis, notes)
    importer = _Importer(store, campaign=campaign, source=source, basis=basis,
                         acquired_on=acquired_on_date(acquired_on, now),
                         region=default_region, now=now, allow=allow_countries,
                         default_tz=default_tz)
    report = importer.report
    report.warnings += notes
    if importer.acquired_on is None:
        report.warnings.append(NO_DATE)
    records = read_records(path, report.warnings)
    try:
        with closing(records):
            header = next(records, None)  # runs the byte/encoding pass first
            if header is None:
                raise ImportFileError(f"{path.name} {EMPTY}")
            importer.set_columns(header_columns(path.name, header[1], islice(records, 5)))
            try:
                with store.import_session():
                    _stream(importer, records, log, path.name)
            except Exception as exc:  # the session's cleanup failing on the same dead store
                if store_trouble(exc) and isinstance(exc.__context__, PartialImportError):
                    raise exc.__context__ from None  # must not hide what was kept
                raise
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (the CLI turns it into this)
        raise ImportFileError(f"import of {path.name} interrupted before any row was written: "
                              "nothing was imported; import the file again") from None
    importer.note_kept()
    with signals_held():  # the import is whole: its audit row too
        store.audit("import", None, importer.detail(path.name, complete=True), now)
    return report


def _stream(importer: _Importer, records: Iterator[tuple[int, list[str]]],
            log: Callable[[str], None], name: str) -> None:
    """An interruption (KeyboardInterrupt: Ctrl-C, or SIGTERM through the CLI) after some
    batches ends as a file error there does: the batches kept, the audit row with complete
    false, PartialImportError. Before any batch, it propagates: nothing was written. A store
    that fails (a full disk, a lock held past the wait, PostgreSQL away) ends the same way."""
    line = 0
    try:
        for line, cells in records:
            importer.add(line, cells)
            if line % 100_000 == 0:
                log(f"{name}: line {line}")
        importer.flush()
    except (ImportFileError, KeyboardInterrupt) as exc:
        if not importer.batches_written:
            raise  # nothing written yet: leave the store untouched
        with signals_held(deliver=False):  # stopping anyway: a signal now must not cut it
            importer.flush()  # so that every line read before it is written or rejected
            importer.note_kept()
            importer.store.audit("import", None, importer.detail(name, complete=False,
                                                                 line=line), importer.now)
        if isinstance(exc, KeyboardInterrupt):
            raise PartialImportError(
                f"import of {name} interrupted at line {line}: the lines before it were "
                f"imported, but for the rejected ones: {importer.report.summary()}; nothing "
                "from there on: import the same file again to finish it (the rows imported "
                "are kept, importing again adds only the rest)", importer.report) from None
        raise PartialImportError(
            f"{exc}; the lines before it were imported (up to line {line}), but for the "
            f"rejected ones: {importer.report.summary()}; nothing from there on: fix the file "
            "and import it again (the rows imported are kept)",
            importer.report) from exc
    except Exception as exc:
        trouble = store_trouble(exc)
        if trouble is None:
            raise  # a bug: its traceback
        _store_failed(importer, name, line, trouble, exc)


def _store_failed(importer: _Importer, name: str, line: int, trouble: tuple[str, str],
                  exc: Exception) -> None:
    """The batches written stay whole, the failed one rolled back with its counts; the audit
    row is tried (the same full disk may refuse it: then the error says so)."""
    (what, fix), r, audit = trouble, importer.report, ""
    importer.note_kept()
    kept = r.added + r.merged + r.unchanged
    if importer.batches_written:
        try:
            importer.store.audit("import", None, importer.detail(name, complete=False,
                                                                 line=line), importer.now)
        except Exception as again:  # noqa: BLE001  (a store failure: said, not raised)
            if store_trouble(again) is None:
                raise
            audit = "; its audit row could not be written either (the same store failure)"
    raise PartialImportError(
        f"import of {name} stopped at line {line}: store {what}: {kept} line(s) of the file "
        f"before it are in the store, in whole batches ({r.summary()}; the rejected ones "
        f"counted up to there), nothing from there on{audit}: {fix} (import the same file "
        "again: the numbers already imported are skipped)", r) from exc


# Zones of no place anyone lives in: the hours of the callee's place cannot be read from them
NO_PLACE = re.compile(r"(?i)(?:(?:posix|right)/)?(?:etc/.*|utc|uct|gmt[0-9+-]*|universal|zulu|"
                      r"greenwich|factory)")


class _Importer:
    def __init__(self, store: StoreBackend, *, campaign: str, source: str, basis: str | None,
                 acquired_on: str | None, region: str, now: datetime,
                 allow: frozenset[str] = frozenset(), default_tz: str = DEFAULT_TZ) -> None:
        self.store, self.source, self.basis = store, source, basis
        self.default_tz = default_tz  # schedule.timezone: a contact without one is judged in it
        self.campaign = campaign  # the list is bound to it (ivr/store/schema.py, 5)
        self.allow = allow  # contacts.allow_countries
        self.acquired_on, self.region, self.now = acquired_on, region, now
        self.columns: list[str] = []
        self.marks: dict[str, bool] = {}  # consent/objection columns (csv_read.marked_columns)
        self.unnamed: frozenset[str] = frozenset()  # column_N of an empty header cell
        self.report = ImportReport()
        self.batch: dict[str, dict[str, str]] = {}  # number -> column -> value
        self.lines: dict[str, int] = {}  # number -> the line that gave it its zone
        self.own_zone: set[str] = set()  # the batch's numbers whose stored zone it corrects
        self.batches_written = 0
        self.zones: set[str] = set()  # valid names seen; zoneinfo does not cache failures
        self.refused: set[str] = set()  # numbers a line objects to: out of the queue at flush
        self.refused_new: set[str] = set()  # those not yet taken out by a flush

    def reject(self, line: int, reason: str, objection: bool = False) -> None:
        """`objection`: a line recording an objection or no consent is listed past the cap
        (up to MAX_LISTED_OBJECTIONS): the operator records it on the opposition list, which
        no other campaign's queue escapes, only if it is shown."""
        self.report.rejected_total += 1
        if len(self.report.rejected) < MAX_LISTED_REJECTS or \
                objection and len(self.report.rejected) < MAX_LISTED_OBJECTIONS:
            self.report.rejected.append((line, reason))
        elif self.report.rejected_total == MAX_LISTED_REJECTS + 1:
            self.report.warnings.append(f"more than {MAX_LISTED_REJECTS} lines rejected: only "
                                        "the first ones are listed")

    def set_columns(self, columns: list[str]) -> None:
        self.columns, self.marks = columns, marked_columns(columns)
        self.unnamed = frozenset(c for i, c in enumerate(columns, 1) if c == unnamed(i))

    def add(self, line: int, cells: list[str]) -> None:
        width = len(self.columns)
        if len(cells) > width and not any(c.strip() for c in cells[width:]):
            cells = cells[:width]  # empty cells past the header: a spreadsheet's trailing ","
        if len(cells) > width:
            return self.reject(line, overflow_reason(cells, width))
        row = {k: v for k, v in zip(self.columns, [c.strip() for c in cells])
               if v or k not in self.unnamed}  # an unnamed column's empty cell: nothing kept
        row.update((k, "") for k in self.columns[len(cells):] if k not in self.unnamed)
        raw, zone = row.pop("number", ""), row.get("timezone", "")
        if not raw:
            return self.reject(line, "no number")
        refused = marked_refusal(row, self.marks, self.report.warnings)
        if refused:  # before any merge: never reaches pending
            return self._refuse(line, raw, refused)
        worded = objection_in_cells(row, self.marks)
        if worded:  # out of this campaign's queue too, as the same words beside the number
            return self._refuse(line, raw, worded)
        try:  # strict: no suffix, premium/special or (unless allowed) foreign number
            number = parse_callee(raw, self.region, self.allow)
        except NumberRejected as exc:
            if exc.objection:
                return self._refuse(line, raw, exc.reason)
            return self.reject(line, f"{short(raw)}: {exc.reason}")
        if zone and not self._zone_ok(zone):
            return self.reject(line, f"time zone {short(zone)} is unknown: use an IANA name "
                                     "such as Europe/Paris")
        if zone and NO_PLACE.fullmatch(zone):  # a CRM's default: 20:30 in Paris was 19:30 UTC
            return self.reject(line, f"time zone {short(zone)} names no place: give the "
                                     "callee's (e.g. Europe/Paris), or leave the cell empty "
                                     "for the number's own")
        self._keyable(line, number)
        if number in self.batch:  # a later line of the same number fills blanks only
            kept = self.batch[number].get("timezone")
            if zone and kept and zone != kept:
                return self.reject(line, two_zones(number, kept,
                                                   f"on line {self.lines[number]}", zone))
            if zone and not kept:
                self.lines[number] = line  # the line whose zone the number takes
            fill_blanks(self.batch[number], row)
            self.report.duplicates += 1
            self.report.merged += 1
            return None
        self.batch[number], self.lines[number] = row, line
        if len(self.batch) >= BATCH:
            self.flush()
        return None

    def _keyable(self, line: int, number: str) -> None:
        """A real number in a store keyed with the demo's key beside it stops the import at its
        line, before its batch: found at the write, it left the batches before it kept with no
        audit row, and the CLI said the store was empty."""
        try:
            self.store.guard_key(number)
        except StoreError as exc:
            raise ImportFileError(f"line {line}: {exc}") from None

    def _refuse(self, line: int, raw: str, reason: str) -> None:
        """A line recording an objection or no consent: rejected, and its number, if an earlier
        list queued it for this campaign, leaves the queue (flush) rather than being called."""
        number = objected_number(raw, self.region, self.allow)
        if number is not None and number not in self.refused:
            self.refused.add(number)
            self.refused_new.add(number)
        self.reject(line, f"{short(raw)}: {reason}", objection=True)

    def _zone_ok(self, name: str) -> bool:
        if name in self.zones:
            return True
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # unknown, malformed, a folder
            return False
        self.zones.add(name)
        return True

    def flush(self) -> None:
        """Write the batch in one transaction: new contacts, merges, opposition statuses."""
        if not self.batch and not self.refused_new:
            return
        with signals_held():
            self._flush()

    def _flush(self) -> None:
        batch, self.batch = self.batch, {}
        numbers, counts = list(batch), counts_of(self.report)
        try:
            with self.store.transaction():
                existing = self.store.contacts_by_number(numbers)
                seen = self.store.seen_in_import(numbers)
                clashes, own = zone_clashes(batch, existing, self.store, self.campaign,
                                            self.default_tz)
                for number in own & seen:  # its zone came from an earlier batch of this file
                    clashes[number] = two_zones(number, existing[number]["timezone"],
                                                "on an earlier line", batch[number]["timezone"])
                self.own_zone = own - seen
                numbers = [n for n in numbers if n not in clashes]
                listed = self.store.opted_out_among(numbers)
                bound = self.store.bindings_in(numbers, self.campaign)
                here = {r["number"] for r in bound}
                # bound under another list or basis: bind_contacts keeps that provenance
                kept = [r for r in bound if (r["source"], r["basis"]) != (self.source,
                                                                          self.basis)]
                for number in numbers:
                    self._write(number, batch[number], existing.get(number), number in seen,
                                number in listed, number in here)
                self.store.bind_contacts(numbers, campaign=self.campaign, source=self.source,
                                         basis=self.basis, acquired_on=self.acquired_on,
                                         now=self.now, names={  # this list's, its binding's
                                             n: batch[n].get("name") or None for n in numbers})
                # the new ones, and earlier ones this batch may have queued again
                out = self.refused_new | self.refused.intersection(numbers)
                if out:
                    self.report.withdrawn += self.store.withdraw_pending(
                        sorted(out), campaign=self.campaign)
        except BaseException:  # rolled back (an interruption mid-batch): counted as unwritten
            for key, value in counts.items():
                setattr(self.report, key, value)
            self.batch = batch
            raise
        self.batches_written += 1
        self.refused_new = set()
        for number, reason in clashes.items():
            self.reject(self.lines[number], reason)
        self.lines = {}
        self._count_kept([r for r in kept if r["number"] not in seen])  # a repeat: counted

    def _count_kept(self, kept: list[Row]) -> None:
        """Count the bindings this batch left with their first provenance (once written)."""
        self.report.provenance_kept += len(kept)
        for r in kept:
            first = f"{r['source']}/{r['basis'] or 'no basis'}"
            self.report.kept_as[first] = self.report.kept_as.get(first, 0) + 1

    def note_kept(self) -> None:
        """The one line saying this import's provenance was not applied to some numbers."""
        r = self.report
        if not r.provenance_kept:
            return
        firsts = sorted(r.kept_as.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = ", ".join(k if len(firsts) == 1 else f"{k} ({n})" for k, n in firsts[:3])
        more = f" and {len(firsts) - 3} more" if len(firsts) > 3 else ""
        others = r.added + r.merged - r.duplicates + r.unchanged - r.provenance_kept
        rest = f"; {self.source}/{self.basis} applies to the file's {others} other(s)" \
            if others > 0 else ""
        r.warnings.append(
            f"{r.provenance_kept} number(s) already bound to campaign {self.campaign!r} with "
            f"another source/basis were left as they were (first: {shown}{more}): a number "
            f"keeps the list and basis it was first bound with in a campaign{rest}")

    def _write(self, number: str, row: dict[str, str], old: dict[str, Any] | None,
               repeat: bool, on_list: bool, here: bool) -> None:
        """One distinct number of the batch; `repeat`: seen in an earlier batch of this file;
        `here`: already bound to this campaign. A contact only another campaign had is counted
        added, as a new one: merged or unchanged told an importer which of its numbers another
        party's lists hold."""
        report, store = self.report, self.store
        if repeat:
            report.duplicates += 1
            report.merged += 1
        else:
            store.mark_seen_in_import(number)
            report.opted_out += int(on_list)
        if old is None:
            store.add_contact(number, name=row.get("name") or None,
                              timezone=row.get("timezone") or None, source=self.source,
                              basis=self.basis, acquired_on=self.acquired_on,
                              extra=to_json(extra_columns(row)),
                              status="opted_out" if on_list else "pending", now=self.now)
            report.added += 1
            return
        changes = self._changes(old, row, on_list)
        if changes:
            store.update_contact(old["id"], changes, self.now)
        if not repeat:
            if not here:
                report.added += 1
            elif changes:
                report.merged += 1
            else:
                report.unchanged += 1

    def _changes(self, old: dict[str, Any], row: dict[str, str],
                 on_list: bool) -> dict[str, Any]:
        """Fill what the existing contact lacks; provenance and progress stay as they were."""
        changes: dict[str, Any] = {
            col: row[col] for col in ("name", "timezone") if row.get(col) and not old[col]}
        if old["number"] in self.own_zone:  # this campaign's alone: its list corrects it
            changes["timezone"] = row["timezone"]
        extra = json.loads(old["extra"] or "{}")
        filled = fill_blanks(dict(extra), extra_columns(row))
        if filled != extra:
            changes["extra"] = to_json(filled)
        if self.basis and not old["basis"] and old["source"] == self.source:
            changes["basis"] = self.basis  # same list, basis given late: not another provenance
        if on_list and old["status"] != "opted_out":
            changes["status"] = "opted_out"  # never reset otherwise: done stays done
        return changes

    def detail(self, file: str, *, complete: bool, line: int | None = None) -> dict[str, Any]:
        r = self.report
        detail: dict[str, Any] = {
            "campaign": self.campaign, "source": self.source, "basis": self.basis,
            "acquired_on": self.acquired_on,
            "file": file, "added": r.added, "merged": r.merged, "duplicates": r.duplicates,
            "unchanged": r.unchanged, "opted_out": r.opted_out, "rejected": r.rejected_total,
            "complete": complete}
        if r.withdrawn:
            detail["withdrawn"] = r.withdrawn
        if r.provenance_kept:  # the basis above was not applied to these: say how many
            detail.update(provenance_kept=r.provenance_kept, kept_as=dict(r.kept_as))
        if line is not None:
            detail["last_line_read"] = line
        return detail


from ivr.records.optout_import import import_optouts  # noqa: E402  (its own module: size)
