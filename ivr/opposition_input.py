"""Opposition input: lenient about how a number is written, strict about which number.

A number an objection names (a letter, an email, a file of oppositions, a list's "STOP" cell)
is read more leniently than a number to call: an opposition overlooked in the rejects is a
person called after objecting. Labels, invisible characters, other scripts' digits and the
words of the objection around it are taken off; two numbers, other letters or an extension
are still refused, because the wrong number is not safe either. The rest of the plan's rules
are numbers.py's.
"""
from __future__ import annotations

import itertools
import re
import unicodedata

import phonenumbers

from ivr.numbers import (_LETTERS, _NUMBER_HEAD, _NUMBER_TEXT, SCIENTIFIC, NumberRejected,
                         _format, _parse_valid, _visible, parse_callee)
from ivr.objection_words import OBJECTION as _OBJECTION, fold_text, says_objection

__all__ = ["objected_number", "opposition_number"]

# Words that may stand before a number copied from a signature or a letter ("Tél. :", "tel:"
# as RFC 3966 writes it); not followed by a letter, so "Telex 06…" keeps its letters.
_LABEL = re.compile(r"(?:(?:t[ée]l[ée]phone|t[ée]l|phone|mobile|portable|gsm)(?![^\W\d_])"
                    r"\s*\.?\s*)+:?\s*", re.IGNORECASE)
_BRACKETED_CODE = re.compile(r"\(\s*(?:\+|00)\s*([1-9][0-9]{0,2})\s*\)")  # (+33) 6 12…
_EXTENSION = re.compile(r"[,;]?\s*(?:ext(?:ension)?\s*[.:=]?|poste|p\.|x|#|int\.?)\s*[0-9]{1,6}",
                        re.IGNORECASE)


def _unwrap(raw: str) -> str:
    """The number's text without what copy-paste and spreadsheets wrap around it: invisible
    characters, any Unicode space, digits of other scripts (０６… as phonenumbers reads them),
    a leading apostrophe (a spreadsheet's text marker), a label and a bracketed country code."""
    chars = []
    for ch in _visible(raw):
        if ch.isspace():
            chars.append(" ")
        elif ch.isdigit() and unicodedata.decimal(ch, None) is not None:
            chars.append(str(unicodedata.decimal(ch)))
        else:
            chars.append("+" if ch == "\uff0b" else ch)
    text = "".join(chars).strip().lstrip("'\u2019").strip()
    label = _LABEL.match(text)
    if label and label.end() < len(text):  # a label alone is a header, not a number
        text = text[label.end():]
    code = _BRACKETED_CODE.match(text)
    return f"+{code.group(1)} {text[code.end():]}".strip() if code else text


def _opposition_refusal(text: str, default_region: str) -> str:
    """Why `text` (unwrapped) gives no opposition: one line, saying what to fix."""
    if not text:
        return "no number"
    found = phonenumbers.PhoneNumberMatcher(text, default_region,
                                            leniency=phonenumbers.Leniency.VALID)
    if sum(1 for _ in itertools.islice(found, 2)) > 1:
        return ("two numbers on one line: give one per line (an opposition of the wrong number "
                "leaves the person callable)")
    head = _NUMBER_HEAD.match(text)
    tail = text[head.end():].strip() if head else text
    if head and _EXTENSION.fullmatch(tail):
        return (f"an extension ({tail!r}): give the person's direct line (an opposition of the "
                "switchboard's number leaves theirs callable)")
    if SCIENTIFIC.fullmatch(text):
        return ("a spreadsheet turned the number into scientific notation: format the column as "
                "text and export the list again")
    letters = [w for w in _LETTERS.findall(text) if w.isalpha()]
    if letters:
        return (f"letters ({letters[0][:20]!r}) that are not a label such as 'Tél.': give the "
                "number alone")
    digits = sum(ch.isdigit() for ch in text)
    if digits > 15:  # E.164's most: two numbers written one after the other
        return (f"{digits} digits, more than one number holds: two numbers on one line? give "
                "one per line")
    odd = sorted({ch for ch in text if not (ch.isdigit() or ch in "+ ().-/")})
    if odd and not _NUMBER_TEXT.fullmatch(text):
        return f"characters a phone number does not hold ({''.join(odd)!r}): give it alone"
    return "check the digits and the country code"


def _without_objection(text: str) -> str:
    """The text, folded, without the words of an objection around a number ("STOP")."""
    return _OBJECTION.sub(" ", fold_text(text)).strip(" -:;,.()[]*!")


def opposition_number(raw: str, default_region: str) -> str:
    """E.164 of a number an objection names, or NumberRejected(reason).

    Lenient about the writing (an opposition overlooked in the rejects is a person called after
    objecting): see `_unwrap`; then phonenumbers must find one valid number of any type or
    country. Still refused: two numbers, other letters, an extension - the wrong number is not
    safe either."""
    text = _unwrap(raw if isinstance(raw, str) else "")
    if says_objection(text):  # "06 12 34 56 78 STOP": the word says why
        bare = _without_objection(text)
        text = bare if _NUMBER_TEXT.fullmatch(bare) else text  # as objected_number reads it
    num = _parse_valid(text, default_region) if _NUMBER_TEXT.fullmatch(text) else None
    if num is None or num.extension or not phonenumbers.is_valid_number(num):
        raise NumberRejected(_opposition_refusal(text, default_region))
    return _format(num)


def objected_number(raw: str, default_region: str,
                    allow_countries: frozenset[str] = frozenset()) -> str | None:
    """E.164 of the one valid number a cell names, words around it or not ("06 12 34 56 78
    STOP"), or None: what a line recording an objection takes out of the queue. The words
    gone, the number is read as an import reads it (parse_callee), else found in the text."""
    text = _unwrap(raw if isinstance(raw, str) else "")
    bare = _without_objection(text)  # "612345678 STOP" too
    try:
        return parse_callee(bare, default_region, allow_countries)
    except NumberRejected:
        pass
    found = [m.number for m in phonenumbers.PhoneNumberMatcher(
        text, default_region, leniency=phonenumbers.Leniency.VALID)]
    return _format(found[0]) if len(found) == 1 else None
