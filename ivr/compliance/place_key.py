"""The digits of a French number that can tell where its line is, so that the calling rules
parse a head once, not every number.

Placing an overseas number (its zones, its holiday regions: callee_place.py) costs ~0.2 ms of
phonenumbers: a plan over 100,000 Réunion contacts spent 20 s on it, where 100,000 mainland
ones, decided by their code alone, take 1.5 s. Yet phonenumbers reads a number's region, type
and time zone from regular expressions that, for the French plans, all end in at least TAIL
free digits (`…\\d{4}`), and from prefixes shorter than the number minus TAIL. So the last TAIL
digits never change what the rules make of the number: `place_key` zeroes them, and the rules'
memos serve every number of a block from one parse.

That is proved from the installed metadata at first use, not assumed: each pattern of every
region concerned is parsed (`re`'s own parser) and must end in TAIL digit positions on every
branch; each prefix (time zones, leading digits, national prefix) must leave TAIL digits
untouched. A release whose ranges split on the last digits turns the key off for that code
(the number is then its own key, as before). New Caledonia's and French Polynesia's patterns
do not pass (6-digit numbers ending in `\\d{3}`, an optional pair): their numbers are parsed
one by one.
"""
from __future__ import annotations

import functools
from typing import Any

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata, PhoneNumberDesc
from phonenumbers.timezone import TIMEZONE_DATA

from ivr.numbers import OVERSEAS_REGIONS

try:  # the standard library's regular-expression parser (sre_parse before Python 3.11)
    from re import _constants as _c, _parser as _sre  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _sre  # type: ignore[no-redef]

TAIL = 4  # trailing digits keyed away: a block of 10,000 numbers shares one parse
# ivr.numbers reads a French number's national form in every overseas region's plan (+33 9
# boxes, 09 76 22.. being Réunion's or French Guiana's): their patterns count for each code.
_FRENCH_CODES = frozenset({33, *(PhoneMetadata.metadata_for_region(r).country_code
                                 for r in OVERSEAS_REGIONS)})
_DIGITS = ((_c.IN, [(_c.CATEGORY, _c.CATEGORY_DIGIT)]), (_c.IN, [(_c.RANGE, (48, 57))]))


def place_key(number: str) -> str:
    """`number` (E.164) with its last TAIL digits zeroed when the metadata proves they cannot
    change its place (module docstring); else `number` itself."""
    shortest = _shortest(number[1:4]) if number[:1] == "+" else None
    if shortest is None or len(number) < shortest or not number.isascii() or \
            not number[1:].isdigit():
        return number
    return number[:-TAIL] + "0" * TAIL


@functools.lru_cache(maxsize=1024)
def _shortest(first: str) -> int | None:
    """The shortest E.164 string (with its `+`) that place_key may key, for numbers starting
    with these three digits; None if it keys none of them."""
    for size in (1, 2, 3):  # country codes are prefix-free: at most one fits
        code = int(first[:size]) if first[:size].isdigit() else None
        if code is not None and code in COUNTRY_CODE_TO_REGION_CODE:
            width = head_width(code)
            return None if width is None else 1 + size + width + TAIL
    return None


@functools.lru_cache(maxsize=None)
def head_width(code: int) -> int | None:
    """How many leading digits of a significant number under `code` the metadata may read as
    a prefix (time zones, leading digits, national prefix), if every pattern it matches whole
    numbers with ends in TAIL free digits; None if one does not (no key for this code)."""
    codes = {code} | (set(_FRENCH_CODES) if code in _FRENCH_CODES else set())
    widths = [0]
    for each in codes:
        width = _code_width(each)
        if width is None:
            return None
        widths.append(width)
    return max(widths)


def _code_width(code: int) -> int | None:
    widths = [len(k) - len(str(code)) for k in TIMEZONE_DATA if k.startswith(str(code))]
    for region in COUNTRY_CODE_TO_REGION_CODE.get(code, ()):
        meta = PhoneMetadata.metadata_for_region(region)
        if meta is None:
            return None
        for pattern in (meta.leading_digits, meta.national_prefix_for_parsing):
            width = prefix_width(pattern) if pattern else 0
            if width is None:
                return None
            widths.append(width)
        descs = [d for d in vars(meta).values() if isinstance(d, PhoneNumberDesc)]
        if not all(tail_free(d.national_number_pattern, TAIL) for d in descs
                   if d.national_number_pattern):
            return None
    return max(widths, default=0)


def prefix_width(pattern: str) -> int | None:
    """The most characters `pattern`, matched at a number's start, may read; None if it looks
    further (an anchor: `$` reads the whole number)."""
    tree = _sre.parse(pattern)
    if _has_anchor(list(tree)):
        return None
    return int(min(tree.getwidth()[1], 1 << 16))


def _has_anchor(items: list[tuple[Any, Any]]) -> bool:
    for op, av in items:
        if op is _c.AT or op in (_c.ASSERT, _c.ASSERT_NOT, _c.GROUPREF):
            return True
        if op is _c.BRANCH and any(_has_anchor(list(b)) for b in av[1]):
            return True
        if op is _c.SUBPATTERN and _has_anchor(list(av[3])):
            return True
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT) and _has_anchor(list(av[2])):
            return True
    return False


def tail_free(pattern: str, k: int) -> bool:
    """Does every string `pattern` matches whole end in k positions any digit fills (so that,
    among strings of digits, a match never depends on the last k)?"""
    return _ends_free(list(_sre.parse(pattern)), k)


def _ends_free(items: list[tuple[Any, Any]], k: int) -> bool:
    while k > 0:
        if not items:
            return False
        op, av = items[-1]
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            low, high, sub = av
            if low != high or low == 0 or not _is_digit(list(sub)):
                return False
            k, items = k - low, items[:-1]
        elif _is_digit([(op, av)]):
            k, items = k - 1, items[:-1]
        elif op is _c.SUBPATTERN and not av[1] and not av[2]:  # a group, no flags: inline it
            items = items[:-1] + list(av[3])
        elif op is _c.BRANCH:
            return all(_ends_free(items[:-1] + list(branch), k) for branch in av[1])
        else:
            return False
    return True


def _is_digit(items: list[tuple[Any, Any]]) -> bool:
    return len(items) == 1 and items[0] in _DIGITS
