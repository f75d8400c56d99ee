"""Reading a CSV file of any size and common encoding: refuse what is not text, pick the
encoding and the delimiter, stream (line number, cells) records.
"""
from __future__ import annotations

import codecs
import csv
import itertools
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from ivr.errors import ImportFileError
from ivr.numbers import OPTOUT_ADD, SCIENTIFIC, SCIENTIFIC_REASON
from ivr.objection_words import fold_text, says_objection

CHUNK = 1 << 20         # bytes per read in the encoding pass
FIELD_LIMIT_KB = csv.field_size_limit() // 1024  # the csv module's own limit (128 KB)
LATIN1_WARNING = "file is not UTF-8; read as Windows-1252 (Latin-1): check accented names"
EMPTY = "is empty: its first line must be a header naming a 'number' column"
# Bytes Windows-1252 leaves undefined. Excel on Windows writes cp1252 (’ œ €), a superset of
# Latin-1 for printable text; a file holding one of these bytes is read as strict Latin-1.
CP1252_HOLES = (b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d")
# A well-formed UTF-8 sequence of 2 to 4 bytes (an accent, a curly quote): rare in cp1252 text
UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|"
                           rb"[\xf0-\xf4][\x80-\xbf]{3}")


def short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def header_columns(file: str, header: list[str],
                   later: Iterable[tuple[int, list[str]]] = ()) -> list[str]:
    """Header names: number/name/timezone matched case-insensitively, others kept as written,
    an empty one (Excel's trailing ';;') named column_N. `later`: the next records, read only
    to say that a title row stands above the header."""
    names = [cell.strip() for cell in header]
    columns, lowered = [], set()
    for i, name in enumerate(names, start=1):
        low = name.lower()
        if low in lowered:
            raise ImportFileError(f"{file}: column {name!r} appears twice in the header: "
                                  "rename one")
        if low:  # empty names are not duplicates of each other: each gets its own column_N
            lowered.add(low)
        columns.append(low if low in ("number", "name", "timezone") else name or unnamed(i))
    if "number" not in columns:
        below = next((line for line, cells in later if _names_number(cells)), None)
        if below is not None:
            raise ImportFileError(f"{file}: the header must be the first line: remove the title "
                                  f"rows above it (line {below} looks like the header)")
        found = ", ".join(repr(n) for n in names)
        raise ImportFileError(f"{file}: no 'number' column (columns found: {found}): name the "
                              "phone number column 'number'")
    return columns


def unnamed(i: int) -> str:
    """The name of the i-th (from 1) column, when its header cell is empty."""
    return f"column_{i}"


def _names_number(cells: list[str]) -> bool:
    """A record with a 'number' cell, split on any delimiter (the file's was chosen from the
    title row above it)."""
    return any(part.strip().strip('"').strip().lower() == "number"
               for cell in cells for part in re.split(r"[;,\t]", cell))


def overflow_reason(cells: list[str], width: int) -> str:
    """Why a line has more fields than the header's `width`. A one-column file is split on ','
    (its header has no delimiter): French Excel's 6,12345678E+08 is then two fields."""
    if width == 1 and SCIENTIFIC.fullmatch(",".join(c.strip() for c in cells)):
        return f"{short(','.join(cells))}: {SCIENTIFIC_REASON}"
    return f"{len(cells)} fields where the header has {width}: check the quoting and the delimiter"


# Columns recording the person's objection or consent, found in the header name's words (case,
# accents and punctuation dropped): "Refus", "STOP SMS", "Ne plus appeler ?", "DNC",
# "is_do_not_contact", "Opt-in", "consent_given", "Consentement RGPD", "Accepte d'être
# contacté". A word starting with a stem counts ("Opposé(e)", "Désabonné"), a phrase may run
# over several words ("do not call"); an objection word wins ("Consentement refusé" is an
# objection column). A column about another channel (email_opt_in, Consentement newsletter) is
# not: its "no" does not forbid a call. A line whose cell says an objection or no consent is
# rejected: stored as an opaque extra, it would be called (a person who objected, called).
OBJECTION_STEMS = ("oppos", "refus", "stop", "bloctel", "dnc", "desinscri", "desabonn",
                   "unsubscri", "blacklist")  # "opt out": OBJECTION_PHRASES
OBJECTION_PHRASES = re.compile(r"optout|donotcall|donotcontact|dontcall|dontcontact|"
                               r"ne(?:pas|plus)(?:re)?(?:appel|contact)|listerouge")
CONSENT_STEMS = ("consent", "optin", "accord", "accept", "rgpd", "gdpr")
OTHER_CHANNELS = frozenset({"email", "mail", "courriel", "emailing", "newsletter", "postal",
                            "courrier"})
_YES = frozenset({"oui", "yes", "true", "vrai", "1", "x", "o", "y"})
_NO = frozenset({"non", "no", "false", "faux", "0", "n"})
# A consent cell saying no in other words: "Non recueilli", "Retiré le 12/03", "Révoqué".
_DENIED = re.compile(r"\b(?:non|no|not|pas|aucune?|sans|refus\w*|retir\w*|retrait\w*|revoq\w*|"
                     r"revok\w*|withdraw\w*|denied|declined?|jamais|never)\b")
ACCEPTED = "oui/yes/true/1/x or non/no/false/0, or leave it empty"


def marked_columns(columns: list[str]) -> dict[str, bool]:
    """Column -> True for an objection column (yes = objected), False for a consent one."""
    marks = {}
    for col in columns:
        words = re.findall(r"[a-z0-9]+", fold_text(col))
        if OTHER_CHANNELS.intersection(words):
            continue
        # "opt-in", "opt out": the stems are looked for in the words joined pairwise too
        pairs = words + [a + b for a, b in zip(words, words[1:])]
        if any(w.startswith(OBJECTION_STEMS) for w in pairs) or \
                OBJECTION_PHRASES.search("".join(words)):
            marks[col] = True
        elif any(w.startswith(CONSENT_STEMS) for w in pairs):
            marks[col] = False
    return marks


def objection_in_cells(row: dict[str, str], marks: dict[str, bool]) -> str | None:
    """Why a line is rejected when another of its cells (a name, a comment, a status) writes
    an objection in words ("Martin (ne plus appeler)", "STOP - opposé par courrier"), as the
    same words next to the number do; before, such a line was imported and the person called.
    Not taken for an opposition (a group called "Opposition" is no objection): the operator
    records it if it is one. Its number leaves this campaign's queue if an earlier list put it
    there (contacts.py `_refuse`): failing safe, one campaign's calls only."""
    for col, value in row.items():
        if col not in marks and col != "timezone" and value and says_objection(value):
            return (f"column {col!r} says {short(value)}, which looks like an objection: not "
                    f"imported; if it is one, record the number with `{OPTOUT_ADD}`, otherwise "
                    "remove the words or the column")
    return None


def marked_refusal(row: dict[str, str], marks: dict[str, bool],
                   warnings: list[str] | None = None) -> str | None:
    """Why a line whose objection or consent column forbids the call is rejected, or None. An
    objection column must say yes or no (anything else: rejected, to be written plainly); a
    consent column rejects only a no or a refusal: a date or "recueilli le 3 mars" is kept,
    with one warning per column in `warnings`."""
    for col, objection in marks.items():
        value = row.get(col, "").strip()
        word = fold_text(value).rstrip(".").strip()
        if not value or word in (_NO if objection else _YES):
            continue
        # An objection column's yes; a consent column's no, in a word (false, 0, faux, n: a
        # CRM's export) or in other words ("non recueilli")
        if (word in _YES) if objection else (word in _NO or _DENIED.search(word)):
            said = "an objection" if objection else "no consent"
            return (f"column {col!r} says {short(value)} ({said}): not imported, and out of "
                    "this campaign's queue if a list queued it before: record the number with "
                    f"`{OPTOUT_ADD}` so that no campaign calls it")
        if objection:
            return f"column {col!r} holds {short(value)}: write {ACCEPTED}"
        said = f"column {col!r} holds values that say neither yes nor no"
        if warnings is not None and not any(w.startswith(said) for w in warnings):
            warnings.append(f"{said}, such as {short(value)}: those lines were imported as "
                            "consented; check the column")
    return None


def read_records(path: Path, warnings: list[str]) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each non-blank CSV record, the header first.

    The line number is where the record starts (header = 1), as an editor shows it.
    """
    encoding = _sniff(path, warnings)
    try:
        fh = open(path, encoding=encoding, newline="")
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    with fh:
        line_num = 0
        try:
            head: list[str] = []  # leading blank lines, then the header line
            for text in fh:
                head.append(text)
                if text.strip():
                    break
            past_end: list[bool] = []
            # One blank line past the end: a quote left open on the last line takes it in, and
            # is caught as any other (the reader otherwise ends the field at the end of the
            # file, silently: a last line's objection was read into its name).
            reader = csv.reader(itertools.chain(head, fh, _blank_line_past_end(past_end)),
                                delimiter=_delimiter(head[-1] if head else ""))
            for cells in reader:
                start, line_num = line_num + 1, reader.line_num
                if line_num > start:  # no field holds a line break: a quote was left open
                    raise ImportFileError(_open_quote(path.name, start,
                                                      line_num - len(past_end)))
                if any(c.strip() for c in cells):
                    yield start, cells
        except csv.Error as exc:
            raise _csv_error(path.name, line_num + 1, reader.line_num - len(past_end),
                             exc) from exc
        except UnicodeDecodeError as exc:  # the encoding pass accepted it: the file changed
            raise ImportFileError(f"{path.name} changed while being read: import it again") \
                from exc
        except OSError as exc:
            raise _unreadable(path, exc) from exc


def _blank_line_past_end(taken: list[bool]) -> Iterator[str]:
    """The file's lines are counted by the reader (its line_num): one more once this is
    taken, which `taken` says (nothing is counted per line)."""
    taken.append(True)
    yield "\n"


def _open_quote(name: str, start: int, end: int, over: str = "") -> str:
    """`end`: the file's line the record was read to; `start` itself when the quote opens on
    the last line (the reader took in only the blank line read_records adds)."""
    # Also what a spreadsheet cell typed with Alt+Enter gives: its line break is the fault.
    runs = f"runs on to line {end}{over}" if end > start else "is never closed"
    return (f"{name} line {start}: a quote opens a field that {runs}: "
            "close or remove the quote (a cell cannot hold a line break)")


def _csv_error(name: str, start: int, read_to: int, exc: csv.Error) -> ImportFileError:
    """csv.Error of the record starting at `start`; `read_to`: the last line read."""
    if read_to > start:  # the record spans lines: the limit was hit inside an open quote
        return ImportFileError(_open_quote(name, start, read_to,
                                           f" and past {FIELD_LIMIT_KB} KB"))
    if "field limit" in str(exc):
        return ImportFileError(f"{name} line {start}: a field is over {FIELD_LIMIT_KB} KB: "
                               "shorten it (no name, number or column needs that much)")
    return ImportFileError(f"{name} line {start}: {exc}: fix the quoting")


def _delimiter(line: str) -> str:
    """The delimiter whose split of the header has a 'number' cell; else the one the header
    uses most, ';' on a tie (French Excel writes ';'; "Nom, prénom;Code postal, ville;number"
    split on ',' said "no 'number' column"), else ','."""
    named = [d for d in (";", ",", "\t")
             if "number" in (c.strip().strip('"').strip().lower() for c in line.split(d))]
    if len(named) == 1:
        return named[0]
    counts = {d: line.count(d) for d in (";", ",", "\t")}
    best = max(counts, key=lambda d: counts[d])  # the first of equals: ';'
    return best if counts[best] else ","


def _sniff(path: Path, warnings: list[str]) -> str:
    """One streaming pass over the bytes: refuse what is not text, choose the encoding."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode):
        # Read twice (the encoding, then the lines): a pipe gives its lines to the first pass
        # only, and the import said the file was empty.
        raise ImportFileError(f"{path} is a pipe or a device, not a file: save the list to a "
                              "file first (e.g. `cat … > list.csv`) and import that file")
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8, holes, size, bom = True, False, 0, False
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                if size == 0:
                    _refuse_known_binary(path, chunk)
                    bom = chunk.startswith(codecs.BOM_UTF8)
                nul = chunk.find(b"\x00")
                if nul >= 0:
                    raise ImportFileError(f"{path.name} is not CSV text (NUL byte at offset "
                                          f"{size + nul}): export the list as CSV")
                utf8 = utf8 and _decodes(decoder, chunk)
                holes = holes or any(b in chunk for b in CP1252_HOLES)
                size += len(chunk)
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    if size == 0:
        raise ImportFileError(f"{path.name} {EMPTY}")
    if utf8 and _decodes(decoder, b"", final=True):  # final: no sequence cut at the end
        return "utf-8-sig"  # with or without a BOM
    if bom:  # Latin-1 would read the mark as 'ï»¿' glued to the first column's name
        raise ImportFileError(f"{path.name} starts with a UTF-8 mark (BOM) but is not UTF-8 "
                              "past it: save it again as 'CSV UTF-8'")
    _refuse_mixed(path)
    warnings.append(LATIN1_WARNING)
    return "latin-1" if holes else "cp1252"


def _refuse_mixed(path: Path) -> None:
    """A UTF-8 file with one stray byte (a line pasted from elsewhere) is not Windows-1252:
    read so, every accent of its other lines became two letters ('é' as 'Ã©'). Refused,
    naming the line, when the file also holds well-formed UTF-8 sequences."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line, bad, mixed = 1, 0, False
    with open(path, "rb") as fh:
        while (chunk := fh.read(CHUNK)) and not (bad and mixed):
            mixed = mixed or UTF8_SEQUENCE.search(chunk) is not None
            if bad:
                continue
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk)
                line += chunk.count(b"\n")
            except UnicodeDecodeError as exc:
                bad = line + chunk[:max(exc.start - pending, 0)].count(b"\n")
    if bad and mixed:
        raise ImportFileError(f"{path.name} line {bad}: a byte that is not UTF-8, in a file "
                              "whose other accents are UTF-8: fix that line (or save the file "
                              "again as 'CSV UTF-8'); nothing was imported")


def _decodes(decoder: codecs.IncrementalDecoder, chunk: bytes, final: bool = False) -> bool:
    try:
        decoder.decode(chunk, final)
    except UnicodeDecodeError:
        return False
    return True


def _refuse_known_binary(path: Path, head: bytes) -> None:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ImportFileError(f"{path.name} is UTF-16 text: save it as 'CSV UTF-8'")
    if head.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise ImportFileError(f"{path.name} is a spreadsheet (Excel/ODS), not CSV text: "
                              "save it as 'CSV UTF-8'")


def _unreadable(path: Path, exc: OSError) -> ImportFileError:
    why = {FileNotFoundError: "file not found: check the path",
           IsADirectoryError: "is a folder: give the CSV file inside it",
           PermissionError: "cannot be read (permission denied): check its rights"}
    return ImportFileError(f"{path}: {why.get(type(exc), f'cannot be read: {exc}')}")
