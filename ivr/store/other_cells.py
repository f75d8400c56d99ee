"""Other contacts' cells naming a person, for the right of access and erasure: a list's
"parrain" or "conjoint" column, or a name cell ("Paul (fils de Jeanne 06 12 34 56 78)"), holds
another person's number, often in national form, which the E.164 scan does not see. The access
request exports the number's text in these cells, the erasure removes it, the scan after it
looks for it again. Pure text work, shared by both backends; their narrowing SQL stays in
sqlite_privacy.py and pg_privacy.py."""
from __future__ import annotations

import json
import re
from typing import Any

from ivr.numbers import names_number, number_spans

ERASED_MARK = "[effacé]"  # what stays of the person in a cell that names someone else too
_PART = re.compile(r"[^,;|\n]+")  # one person's part of a cell: "Jean 06…, Marie 06…"
_LEFTOVER = re.compile(r"[\s,;|.\-/()]*")


def extra_probes(number: str) -> dict[str, str]:
    """The SQL narrowing's parameters: the last three digits (d3), and the two pairs around
    any one character as a GLOB (glob) and a LIKE (like) pattern."""
    head, tail = number[-4:-2], number[-2:]
    return {"d3": number[-3:], "glob": f"*{head}?{tail}*", "like": f"%{head}_{tail}%"}


def cells_naming(extra: str | None, number: str) -> dict[str, Any] | None:
    """The cells (column -> value) of one contact's extra JSON that write `number`; None for a
    text that is not a JSON object but writes it (no cell to remove: the scan reports it)."""
    try:
        cells = json.loads(extra) if extra else {}
    except json.JSONDecodeError:
        cells = None
    if not isinstance(cells, dict):
        return None if extra and names_number(extra, number) else {}
    return {k: v for k, v in cells.items() if isinstance(v, (str, int, float))
            and not isinstance(v, bool) and names_number(str(v), number)}


def cell_without(text: str, number: str) -> str | None:
    """The cell without the person: each part of it (between ',', ';', '|' or line breaks)
    writing the number becomes ERASED_MARK, the name beside it included; a part holding other
    digits too (another person's number) loses only the number's own text. None when nothing
    but marks and separators is left: the column is then removed."""
    spans = number_spans(text, number)
    cuts = [s for s in spans if not any(a <= s[0] and s[1] <= b for a, b in _parts(text))]
    for a, b in _parts(text):
        inside = [s for s in spans if a <= s[0] and s[1] <= b]
        rest = [text[i] for i in range(a, b) if not any(x <= i < y for x, y in inside)]
        cuts += inside if any(c.isdigit() for c in rest) else [(a, b)] if inside else []
    return _marked(text, cuts)


def name_without(text: str, number: str) -> str | None:
    """Another contact's name cell without the number's own text ("Paul (fils de Jeanne
    [effacé])"): the words around it are that contact's own name, kept. None when nothing but
    the mark is left."""
    return _marked(text, number_spans(text, number))


def _marked(text: str, cuts: list[tuple[int, int]]) -> str | None:
    """`text` with each cut span made ERASED_MARK; None when nothing but marks and separators
    is left."""
    out = text
    for a, b in sorted(cuts, reverse=True):
        out = out[:a] + ERASED_MARK + out[b:]
    return None if _LEFTOVER.fullmatch(out.replace(ERASED_MARK, "")) else out


def _parts(text: str) -> list[tuple[int, int]]:
    """(start, end) of each part of a cell between separators, its spaces left out."""
    return [(m.start() + len(m.group()) - len(m.group().lstrip()),
             m.end() - len(m.group()) + len(m.group().rstrip())) for m in _PART.finditer(text)]


def extra_without(extra: str, columns: dict[str, Any], number: str) -> str:
    """The extra JSON text (as an import writes it) without the number in these columns."""
    cells = json.loads(extra)
    for column, value in columns.items():
        kept = cell_without(str(value), number)
        if kept is None:
            del cells[column]
        else:
            cells[column] = kept
    return json.dumps(cells, ensure_ascii=False)


def naming_rows(rows: list[dict[str, Any]], number: str) -> list[dict[str, Any]]:
    """Of the narrowed rows (id, number, extra, name), those whose extra or name names
    `number`, each with `cells` (cells_naming: column -> value, or None) and `in_name` (the
    name cell writes it: "Paul (fils de Jeanne 06 12 34 56 78)") added."""
    out = []
    for row in rows:
        cells = cells_naming(row["extra"], number)
        in_name = bool(row.get("name")) and names_number(str(row["name"]), number)
        if cells is None or cells or in_name:
            out.append({**row, "cells": cells, "in_name": in_name})
    return out


def named_in(rows: list[dict[str, Any]], number: str) -> list[dict[str, Any]]:
    """What the access request shows of other contacts' rows: under each column's name, only
    the text writing the person's number (not a name or number beside it: another person's).
    A contact's name kept the same by its bindings (schema 25: same id) is shown once."""
    seen: set[tuple[Any, str, str]] = set()
    out = []
    for row in rows:
        if row["number"] == number:
            continue
        for column, value in [*(row["cells"] or {}).items(),
                              *([("name", row["name"])] if row["in_name"] else [])]:
            if (row["id"], column, str(value)) in seen:
                continue
            seen.add((row["id"], column, str(value)))
            out += [{"column": column, "value": str(value)[a:b]}
                    for a, b in number_spans(str(value), number)]
    return out


def naming_columns(rows: list[dict[str, Any]]) -> set[str]:
    """The contacts columns the narrowed rows still write the number in (the scan's)."""
    return {"extra" for r in rows if r["cells"] is None or r["cells"]} | \
        {"name" for r in rows if r["in_name"]}
