"""The digits of a French number that can tell where its line is, so that the calling rules
parse a head once, not every number.

Placing an overseas number (its zones, its holiday regions: callee_place.py) costs ~0.2 ms of
phonenumbers: a plan over 100,000 Réunion contacts spent 20 s on it, where 100,000 mainland
ones, decided by their code alone, take 1.5 s. Yet phonenumbers reads a number's region, type
and time zone from regular expressions that, for the French plans, all end in at least TAIL
free digits (`…\\d{4}`), and from prefixes (a national prefix, then time zones or leading
digits) that stop TAIL digits short of the shortest number. So the last TAIL digits never
change what the rules make of the number: `place_key` zeroes them, and the rules' memos serve
every number of a block from one parse.

That is proved from the installed metadata at first use, not assumed, for every code of the
French plans together (ivr.numbers reads a French number's national form in each overseas
region's plan): each pattern of their regions is parsed with `re`'s own parser and must be
plain (no look-around, anchor, atomic group, possessive repeat or back-reference anywhere) and
end in TAIL digit positions on every branch; no region may rewrite digits (a national-prefix
transform rule). A release that breaks any of it turns the key off (each number is its own
key, as before). Other codes (New Caledonia's 6-digit numbers end in `\\d{3}`; foreign
plans) are never keyed.
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
    with these three digits; None if it keys none of them (a code outside the French plans)."""
    for size in (1, 2, 3):  # country codes are prefix-free: at most one fits
        code = int(first[:size]) if first[:size].isdigit() else None
        if code is not None and code in COUNTRY_CODE_TO_REGION_CODE:
            width = head_width(code)
            return None if width is None else 1 + size + width + TAIL
    return None


def head_width(code: int) -> int | None:
    """How many leading digits of a French significant number the metadata may read as a
    prefix (a national prefix stripped, then time zones or leading digits read after it),
    proved for every code of the French plans, since ivr.numbers reads a national form in each
    (module docstring); None if one code's metadata is not proved (no key), or `code` is not
    a French plan's."""
    return _french_reads() if code in _FRENCH_CODES else None


@functools.lru_cache(maxsize=1)
def _french_reads() -> int | None:
    """head_width of every French plan's code: proved once, for all of them together."""
    reads = [_code_reads(each) for each in sorted(_FRENCH_CODES)]
    return None if None in reads else max(r for r in reads if r is not None)


def _code_reads(code: int) -> int | None:
    """The leading digits `code`'s metadata may read, when every whole-number pattern of its
    regions ends in TAIL free digits, and its shortest numbers keep TAIL digits past what it
    reads (a subscriber form, 0508 41 23 45 read as +508 41 23 45, is then safe too)."""
    zones = max((len(k) - len(str(code)) for k in TIMEZONE_DATA if k.startswith(str(code))),
                default=0)
    reads, shortest = [zones], []
    for region in COUNTRY_CODE_TO_REGION_CODE.get(code, ()):
        meta = PhoneMetadata.metadata_for_region(region)
        if meta is None or meta.national_prefix_transform_rule:
            return None  # a rule that rewrites the digits: not proved
        national = prefix_width(meta.national_prefix_for_parsing or "")
        lead = prefix_width(meta.leading_digits or "")
        if national is None or lead is None:
            return None
        reads.append(national + max(lead, zones))  # read after a stripped national prefix
        descs = [d for d in vars(meta).values() if isinstance(d, PhoneNumberDesc)]
        if not all(tail_free(d.national_number_pattern, TAIL) for d in descs
                   if d.national_number_pattern):
            return None
        shortest += [n for n in meta.general_desc.possible_length if n > 0]
    if not shortest or max(reads) + TAIL > min(shortest):
        return None
    return max(reads)


# What `re` may hold for the proof to stand: concatenation, alternation, groups without
# flags, counted repeats and character classes (a regular language, matched whole). A
# look-around, an anchor, an atomic group, a possessive repeat or a back-reference reads
# beyond its place: any of them anywhere, and nothing is proved.
_PLAIN = frozenset({_c.LITERAL, _c.NOT_LITERAL, _c.IN, _c.ANY, _c.BRANCH, _c.SUBPATTERN,
                    _c.MAX_REPEAT, _c.MIN_REPEAT})


def _plain(items: list[tuple[Any, Any]]) -> bool:
    for op, av in items:
        if op not in _PLAIN:
            return False
        if op is _c.BRANCH and not all(_plain(list(b)) for b in av[1]):
            return False
        if op is _c.SUBPATTERN and (av[1] or av[2] or not _plain(list(av[3]))):
            return False
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT) and not _plain(list(av[2])):
            return False
    return True


def prefix_width(pattern: str) -> int | None:
    """The most characters `pattern`, matched at a number's start, may read: 0 for none;
    None if it may read further than its own width (an anchor, a look-ahead)."""
    if not pattern:
        return 0
    tree = _sre.parse(pattern)
    if not _plain(list(tree)):
        return None
    return int(min(tree.getwidth()[1], 1 << 16))


def tail_free(pattern: str, k: int) -> bool:
    """Does every string `pattern` matches whole end in k positions any digit fills (so that,
    among strings of digits, a match never depends on the last k)?"""
    tree = list(_sre.parse(pattern))
    return _plain(tree) and _ends_free(tree, k)


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
        elif op is _c.SUBPATTERN:  # a group (no flags: _plain): inline it
            items = items[:-1] + list(av[3])
        elif op is _c.BRANCH:
            return all(_ends_free(items[:-1] + list(branch), k) for branch in av[1])
        else:
            return False
    return True


def _is_digit(items: list[tuple[Any, Any]]) -> bool:
    return len(items) == 1 and items[0] in _DIGITS
