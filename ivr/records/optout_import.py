"""Opposition lists in: a CSV with a 'number' column, or a plain list of numbers one per line,
read leniently (an objection lost in the rejects is a person called after objecting)."""
from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Callable
from contextlib import closing
from datetime import datetime
from pathlib import Path

from ivr.errors import ImportFileError, IvrError
from ivr.numbers import NumberRejected, in_home_plan
from ivr.objection_words import fold_text
from ivr.opposition_input import opposition_number
from ivr.records.csv_read import read_records, short
from ivr.store.base import StoreBackend


def import_optouts(store: StoreBackend, path: Path, *, via: str, default_region: str,
                   now: datetime, on_reject: Callable[[int, str], None] | None = None
                   ) -> tuple[int, list[tuple[int, str]]]:
    """A CSV with a 'number' column, or a plain list of numbers one per line.

    Each valid number goes through store.add_optout (its own transaction and audit row), so an
    interrupted import keeps what it added and can simply be run again. The rejected lines are
    returned, or handed to `on_reject` as they come and not kept (a million garbage lines
    would otherwise be held in memory: the CLI lists the first ones and counts the rest).
    """
    warnings: list[str] = []  # numbers are digits: the encoding cannot garble them
    added, rejected = 0, []
    reject = on_reject or (lambda line, why: rejected.append((line, why)))
    records = read_records(path, warnings)
    with closing(records):
        first = next(records, None)
        if first is None:
            raise ImportFileError(f"{path.name} is empty: give one number per line or a CSV "
                                  "with a 'number' column")
        lowered = [cell.strip().lower() for cell in first[1]]
        if "number" in lowered:
            col, rows, extra_from = lowered.index("number"), records, len(lowered)
            # the person's other lines: a column named as a phone ('mobile', 'tel_fixe'); a
            # comment or an agent's column is not read, and cells past the header are
            phones = [i for i, name in enumerate(lowered) if i != col
                      and _PHONE_COLUMN.search(fold_text(name))
                      and not _STAFF_COLUMN.search(fold_text(name))]
        elif _optout_number(first[1][0], default_region)[0]:
            col, rows, extra_from, phones = 0, itertools.chain([first], records), 1, []
        else:
            raise ImportFileError(f"{path.name}: line {first[0]} is neither a header with a "
                                  f"'number' column nor a phone number: add a 'number' header")
        line = first[0]
        try:
            for line, cells in rows:
                added += _import_line(store, line, cells, col, phones, extra_from, via=via,
                                      region=default_region, now=now, reject=reject)
        except (IvrError, KeyboardInterrupt) as exc:
            if not added:
                raise  # nothing written: the store as it was
            why = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
            raise OptoutImportStopped(
                f"{path.name}: stopped at line {line} ({why}); the {added} opposition(s) "
                "before it were added and stay: import the same file again to finish (a "
                "number already on the list is skipped)") from None
    return added, rejected


class OptoutImportStopped(ImportFileError):
    """An opposition import stopped part-way: the numbers before it stay (the CLI: the store
    is not empty)."""
    report = None


def _import_line(store: StoreBackend, line: int, cells: list[str], col: int,
                 phones: list[int], extra_from: int, *, via: str, region: str, now: datetime,
                 reject: Callable[[int, str], None]) -> int:
    """One line's numbers onto the list (its number, or the ones a ';' joins, and the person's
    other lines): how many were added."""
    raw = cells[col].strip() if col < len(cells) else ""
    number, why = _optout_number(raw, region)
    split = _semicolon_numbers(raw, region) if number is None else []
    if number is None and not split:
        reject(line, f"{short(raw)} is not a valid phone number: {why}" if raw else "no number")
    others = [cells[i] for i in phones if i < len(cells)] + cells[extra_from:]
    numbers = ([number] if number else []) + split + _extra_optouts(others, region)
    return sum(1 for n in numbers if store.add_optout(n, via, now))


# A header naming another phone line of the person: mobile, portable, tel_fixe, phone 2, gsm...
_PHONE_COLUMN = re.compile(r"(?<![a-z])(?:num(?:ero)?s?|tel\w*|phones?|mobiles?|portables?|gsm"
                           r"|fixes?|cell\w*)(?![a-z])")
# ... unless it names whoever took the request down: their line is not the person's
_STAFF_COLUMN = re.compile(r"conseill|agent|operat|benevol|militant|staff|saisi|transmis|"
                           r"recu par|par qui|contact interne")
_BARE_DIGITS = re.compile(r"[0-9][0-9\s.\-/]*")  # digits and separators, no '+'


def _extra_optouts(cells: list[str], region: str) -> list[str]:
    """The numbers in a line's other cells than the number's (another column of the header, such
    as 'mobile', or past the first of a plain list) that the opposition form reads as numbers:
    "+33612345678, +33612345679" on one line is two people objecting. Digits with neither a '+' nor a leading
    0 are one only when 11 digits or more in the French plan or the region's country (a
    33199000078 whose '+' a spreadsheet dropped); else a customer id, a SIRET, a postcode
    (12025550123 is an id as often as a number): ignored, as names and dates are."""
    out = []
    for cell in (c.strip() for c in cells):
        plain = unicodedata.normalize("NFKC", cell)
        bare = bool(_BARE_DIGITS.fullmatch(plain)) and not plain.startswith("0")
        if not cell or (bare and len(re.sub(r"[^0-9]", "", plain)) < 11):
            continue
        number = _optout_number(cell, region)[0]
        if number is not None and (not bare or in_home_plan(number, region)):
            out.append(number)
    return out


def _semicolon_numbers(raw: str, region: str) -> list[str]:
    """The numbers of a cell such as "06 12 34 56 81 ; 06 12 34 56 82" (a list read with ','
    as its delimiter, written with ';'): two people objecting, as the ',' form gives. Only when
    every part is a number: "tel:+33612345678;ext=5" stays refused (an extension)."""
    parts = [p for p in raw.split(";") if p.strip()]
    if len(parts) < 2:
        return []
    found = [_optout_number(p, region)[0] for p in parts]
    return [n for n in found if n] if all(found) else []


def _optout_number(raw: str, default_region: str) -> tuple[str | None, str]:
    """(E.164, "") or (None, why) by the opposition form's rule (opposition_input.opposition_number)."""
    try:
        return opposition_number(raw, default_region), ""
    except NumberRejected as exc:
        return None, exc.reason
