"""Phone numbers: everything becomes E.164 through phonenumbers, in one place.

French overseas numbers: phonenumbers parses a national form with region FR as +33, so
`0596 30 12 34` would become a mainland +33 5 96 number (zone Europe/Paris) and `0262…`,
`0692…` would be invalid. ARCEP numbers the overseas departments and collectivities in the
same national plan, so a national form is first tried in each overseas region; the one where
phonenumbers' own metadata calls it a valid fixed or mobile number wins (see `_overseas`).
A 09 number keeps its +33 form; where the metadata calls it an overseas VoIP ("box") number
(09 39x, 09 47x, 09 76x) the calling rules judge it in that region (`overseas_homes`), and
the same box written with its region's code (+590 9 47 50 12 34) is given its +33 form too
(`box_line`).
The same happens to a `+33` form of an overseas number (a common mistake), so a person gives
one E.164 whatever form they were written in, and an opposition always matches.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from typing import Iterator

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberType, shortnumberinfo

from ivr.objection_words import says_objection

_E164_FORMAT = re.compile(r"\+[1-9][0-9]{5,14}")


def is_e164(text: str) -> bool:
    """Is `text` already in E.164 form (what the store holds and the dial string takes)?"""
    return bool(_E164_FORMAT.fullmatch(text))


# Regions numbered in the French plan (ARCEP): mainland and overseas departments/collectivities.
OVERSEAS_REGIONS: tuple[str, ...] = ("RE", "YT", "GP", "MQ", "GF", "PM", "BL", "MF")
FRENCH_REGIONS: frozenset[str] = frozenset({"FR", *OVERSEAS_REGIONS})
# Geographic and mobile numbers are mapped; 08 ranges are the mainland's services, never mapped.
_MAPPED_TYPES = frozenset({PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE,
                           PhoneNumberType.FIXED_LINE_OR_MOBILE})
# 09 is mostly the mainland's VoIP: only the blocks an overseas region's metadata calls its own
# VoIP are mapped, so that a Guadeloupe box is judged on Guadeloupe's time and holidays.
_VOIP_TYPES = frozenset({PhoneNumberType.VOIP})
_MAPPED_FORM = re.compile(r"0[1-79][0-9]{8}")
# Types that are services, not a person's line; an automated call must never reach them.
_REFUSED_TYPES: dict[int, str] = {
    PhoneNumberType.PREMIUM_RATE: "premium-rate number: remove it from the list",
    PhoneNumberType.SHARED_COST: "shared-cost service number (08): remove it from the list",
    PhoneNumberType.TOLL_FREE: "toll-free service number (080x): remove it from the list",
    PhoneNumberType.UAN: "special service number (08): remove it from the list",
    PhoneNumberType.VOICEMAIL: "voicemail access number: remove it from the list",
    PhoneNumberType.PAGER: "pager number: remove it from the list",
}
# The French plan's blocks that ARCEP gives the overseas territories (national form heads).
# phonenumbers moves a number there to its territory's code (`_overseas`) only where its data
# knows the block; one it does not know (0596 12.., 0263 17..) it reads as a valid mainland 05
# or 02 line, judged on Paris's clock: 5 or 6 hours off. Such a number is refused instead.
OVERSEAS_HEADS: dict[str, str] = {
    "0262": "Réunion", "0263": "Réunion", "0269": "Mayotte", "0590": "Guadeloupe",
    "0594": "Guyane", "0596": "Martinique", "0508": "Saint-Pierre-et-Miquelon",
    "0639": "Mayotte", "0690": "Guadeloupe", "0691": "Guadeloupe", "0692": "Réunion",
    "0693": "Réunion", "0694": "Guyane", "0696": "Martinique", "0697": "Martinique"}
# What a written number may contain besides digits: a leading +, spaces and separators.
_NUMBER_TEXT = re.compile(r"\+?[0-9\s().\-/]*[0-9][0-9\s().\-/]*")
_NUMBER_HEAD = re.compile(r"\+?[0-9\s().\-/]*[0-9]")
_LETTERS = re.compile(r"[^\W\d_]+")  # also ² and ½, which are \w but not \d: checked by isalpha
# Excel shows 33612345678 as 3.36123E+10 (3,36123E+10 in French) and exports it so.
SCIENTIFIC = re.compile(r"[0-9]+(?:[.,][0-9]+)?[eE]\+?[0-9]+")
SCIENTIFIC_REASON = ("a spreadsheet turned the number into scientific notation (its leading 0 "
                     "or + is lost, maybe digits too): format the column as text and export "
                     "the list again")
# A number column exported as a float (612345678.0): its leading 0 or + is lost too.
_DECIMAL = re.compile(r"\+?[0-9]{6,15}[.,]0+")
OPTOUT_ADD = "ivr optout add NUMBER --via post|email|phone|sms"
# An extension or dial suffix after the number: ",1", ";ext=12", "x12", "poste 3", "p1", "#".
_SUFFIX = re.compile(r"[,;/#]?\s*(?:(?:ext(?:ension)?|poste|p|x|int)\s*[.:=]?)?\s*[0-9]{0,6}"
                     r"\s*#?", re.IGNORECASE)


class NumberRejected(ValueError):
    """A number that must not be imported or called; `reason` is one line saying what to fix."""

    def __init__(self, reason: str, objection: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.objection = objection  # the text next to the number records an objection


def is_known_region(code: str) -> bool:
    """True for a two-letter ISO region code phonenumbers has metadata for (not ZZ)."""
    return isinstance(code, str) and code.upper() in phonenumbers.SUPPORTED_REGIONS


def _format(num: PhoneNumber) -> str:
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


@functools.lru_cache(maxsize=None)
def _general_patterns() -> tuple[tuple[str, str, re.Pattern[str]], ...]:
    """(region, country code, whole-plan pattern) per overseas region, from the metadata."""
    out = []
    for region in OVERSEAS_REGIONS:
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        out.append((region, str(meta.country_code),
                    re.compile(meta.general_desc.national_number_pattern)))
    return tuple(out)


@functools.lru_cache(maxsize=65536)
def _overseas(national: str) -> str | None:
    """E.164 of the overseas number a French national form (`0` + 9 digits) stands for, or None.

    Tried in each overseas region: its own national form (`0262…` in RE), and the
    `0` + country code + subscriber form (`0508 41 23 45` for Saint-Pierre-et-Miquelon, whose
    subscriber numbers have 6 digits). Metadata decides; no prefix is written here. The first
    region in OVERSEAS_REGIONS' order wins where the metadata overlaps (`overseas_homes`).
    A 09 box keeps its +33 form: stored numbers and oppositions (kept as HMACs of the E.164)
    have always had it, and a new form would not match them; its +590 9… form is moved back
    to it (`box_line`). The calling rules judge it in its region all the same
    (compliance/callee_place.stored_overseas).
    """
    if national.startswith("09"):
        return None
    return next(_homes(national), None)


def _homes(national: str) -> Iterator[str]:
    """The E.164 of each overseas region's number the national form may stand for, in order."""
    if not _MAPPED_FORM.fullmatch(national):
        return  # 08 are mainland service ranges, never re-homed
    types = _VOIP_TYPES if national.startswith("09") else _MAPPED_TYPES
    for region, cc, pattern in _general_patterns():
        forms = [national[1:]]
        if national[1:].startswith(cc):
            forms.append(national[1 + len(cc):])
        for nsn in forms:
            if not pattern.fullmatch(nsn):  # cheap filter before a full parse
                continue
            num = phonenumbers.parse(f"+{cc}{nsn}", None)
            if phonenumbers.is_valid_number_for_region(num, region) and \
                    phonenumbers.number_type(num) in types:
                yield _format(num)


@functools.lru_cache(maxsize=4096)
def overseas_homes(number_e164: str) -> tuple[str, ...]:
    """Every overseas number (E.164) the French national form of `number_e164` may stand for.
    The metadata overlaps in places (09 76 22..: Réunion's VoIP and French Guiana's, 09 39 70..:
    Guadeloupe's and Martinique's): the calling rules judge a callee in each (fail closed)."""
    national = national_form(number_e164)
    return tuple(dict.fromkeys(_homes(national))) if national else ()


def _parse(raw: str, default_region: str) -> PhoneNumber | None:
    """phonenumbers.parse, with French national and +33 forms of overseas numbers re-homed.
    With an overseas default_region (RE, GP…), a national form that is not that region's is
    read in the French plan they share: 06 12 34 56 78 or the caller ID 01 62 00 00 00 is a
    mainland number seen from Réunion (phonenumbers reads it as an invalid Réunion one)."""
    num = _parse_in(raw, default_region)
    if default_region in OVERSEAS_REGIONS and (num is None or not phonenumbers.is_valid_number(
            num)):
        mainland = _parse_in(raw, "FR")
        if mainland is not None and phonenumbers.is_valid_number(mainland):
            return mainland
    return num


def _parse_in(raw: str, region: str) -> PhoneNumber | None:
    try:
        num = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    return _rehome(num)


def _rehome(num: PhoneNumber) -> PhoneNumber:
    """A +33 number that is an overseas one (module docstring) moved to its own code; an
    overseas box written with its region's code (+590 9…) moved to +33 (`box_line`)."""
    if num.country_code == 33:
        moved_to = _overseas("0" + phonenumbers.national_significant_number(num))
    else:
        moved_to = box_line(_format(num))
    if moved_to is None:
        return num
    moved = phonenumbers.parse(moved_to, None)
    moved.extension = num.extension
    return moved


# Overseas codes (+262, +590…) followed by 9: where a box written with its region's code starts.
BOX_PREFIXES: tuple[str, ...] = tuple(sorted(
    {f"+{phonenumbers.country_code_for_region(r)}9" for r in OVERSEAS_REGIONS}))


@functools.lru_cache(maxsize=4096)
def box_line(number_e164: str) -> str | None:
    """The +33 9… E.164 of an overseas box written with its region's code (+590 9 47 50 12 34
    -> +33 9 47 50 12 34), None for any other number. One line, one E.164: the +33 form is
    the one stored numbers and oppositions have always had (`_overseas`), so an opposition
    given in either form matches a contact imported in the other."""
    if not number_e164.startswith(BOX_PREFIXES):
        return None
    try:
        num = phonenumbers.parse(number_e164, None)
    except phonenumbers.NumberParseException:
        return None
    plus33 = "+33" + phonenumbers.national_significant_number(num)
    return plus33 if _format(num) in _homes("0" + plus33[3:]) else None


def box_forms(number_e164: str) -> tuple[str, ...]:
    """Every E.164 form of a 09 line's number: its +33 9… form first, then the overseas
    regions' (+590 9…) it may stand for (`overseas_homes`); () for any other number. What the
    store keeps an opposition under (store/box_lines.py) and an erasure clears
    (records/privacy.line_forms)."""
    line = box_line(number_e164) or number_e164
    return (line, *overseas_homes(line)) if line.startswith("+339") else ()


def _parse_valid(text: str, default_region: str) -> PhoneNumber | None:
    """_parse; when that gives no valid number and `text` is 11 to 15 digits without a leading
    0 (an international number written without its '+': 262692123456 for Réunion, as some
    carriers present a caller ID), the same digits with a '+'. None when neither parses.
    Shorter runs are not retried: 1 in 10 random 10-digit strings (a mistyped 0612345678 without
    its 0 and one digit more) is some country's valid number, and an international number
    from France's usual partners (33…, 262…, 1…, 44…) has at least 11 digits."""
    num = _parse(text, default_region)
    if num is not None and phonenumbers.is_valid_number(num):
        return num
    digits = re.sub(r"[\s.\-/]", "", text)
    if re.fullmatch(r"[1-9][0-9]{10,14}", digits):
        plus = _parse("+" + digits, default_region)
        if plus is not None and phonenumbers.is_valid_number(plus):
            return plus
    return num


def e164(raw: str, default_region: str) -> str | None:
    """The number in E.164, or None if phonenumbers does not call it valid.

    Permissive (an extension is dropped): used to look numbers up, e.g. in the opposition list.
    """
    num = _parse(raw, default_region)
    if num is None or not phonenumbers.is_valid_number(num):
        return None
    return _format(num)


def national_form(number_e164: str) -> str | None:
    """The French national form (`0` + significant number) of a number in the French plan."""
    num = _parse(number_e164, "FR")
    if num is None or phonenumbers.region_code_for_number(num) not in FRENCH_REGIONS:
        return None
    if num.country_code == 508:  # 6-digit subscriber numbers: 0508 + subscriber
        return "0508" + phonenumbers.national_significant_number(num)
    return "0" + phonenumbers.national_significant_number(num)


def _visible(raw: str) -> str:
    """`raw` without invisible format characters (Unicode Cf: U+200B, U+200E/F, U+FEFF...),
    which copy-paste leaves in a cell: they are not part of a different number."""
    return "".join(ch for ch in raw if unicodedata.category(ch) != "Cf")


def _check_text(raw: str) -> str:
    """The text stripped, or NumberRejected when anything follows the number's digits."""
    text = _visible(raw).replace("\u00a0", " ").replace("\u202f", " ").strip()
    if _DECIMAL.fullmatch(text):
        raise NumberRejected("the number was exported as a decimal (its leading 0 or + is "
                             "lost): format the column as text and export the list again")
    if _NUMBER_TEXT.fullmatch(text):
        return text
    if SCIENTIFIC.fullmatch(text):
        raise NumberRejected(SCIENTIFIC_REASON)
    head = _NUMBER_HEAD.match(text)
    tail = text[head.end():].strip() if head else " ".join(_LETTERS.findall(text))
    digits = len(re.sub(r"\D", "", text))
    if digits >= 6 and says_objection(text):  # "STOP", "(ne pas appeler)"...
        raise NumberRejected(f"text {'after' if head else 'with'} the number ({tail!r}) looks "
                             f"like an objection: record it with `{OPTOUT_ADD}` (or the "
                             "console's rights page), do not remove the word",
                             objection=True)
    if head and len(re.sub(r"\D", "", head.group())) >= 6:  # a number, then e.g. ",1" or "x12"
        if _LETTERS.search(tail) and not _SUFFIX.fullmatch(tail):
            raise NumberRejected(f"text after the number ({tail!r}): if it records an "
                                 f"objection, record the number with `{OPTOUT_ADD}`; "
                                 "otherwise remove the text")
        raise NumberRejected(f"trailing characters after the number ({tail!r}): "
                             "remove the extension or suffix")
    raise NumberRejected("not a valid phone number: write it in national (06 12 34 56 78) or "
                         "international (+33 6 12 34 56 78) form")


def parse_callee(raw: str, default_region: str,
                 allow_countries: frozenset[str] = frozenset()) -> str:
    """E.164 of a number that may be called, or NumberRejected(reason) saying what to fix.

    Strict where `e164` is permissive: no suffix or extension, no premium-rate/special or short
    number, and no number outside the French plan unless `allow_countries` names its region.
    """
    text = _check_text(raw if isinstance(raw, str) else "")
    num = _parse_valid(text, default_region)
    if num is None:
        raise NumberRejected("not a valid phone number: write it in national (06 12 34 56 78) or "
                             "international (+33 6 12 34 56 78) form")
    if not phonenumbers.is_valid_number(num):
        if len(re.sub(r"\D", "", text)) <= 6 and shortnumberinfo.is_valid_short_number(num):
            raise NumberRejected("short number (service code): remove it from the list")
        raise NumberRejected("not a valid phone number: check the digits and the country code")
    refused = _REFUSED_TYPES.get(phonenumbers.number_type(num))
    if refused:
        raise NumberRejected(refused)
    _not_unknown_overseas(num)
    region = phonenumbers.region_code_for_number(num) or "?"
    home = FRENCH_REGIONS | {default_region.upper()} | {c.upper() for c in allow_countries}
    if region not in home:
        raise NumberRejected(f"foreign number (+{num.country_code}): add {region} to "
                             "contacts.allow_countries to call it")
    return _format(num)


def _not_unknown_overseas(num: PhoneNumber) -> None:
    """NumberRejected for a +33 number left in an overseas territory's block (OVERSEAS_HEADS)."""
    if num.country_code != 33:
        return
    head = "0" + phonenumbers.national_significant_number(num)[:3]
    if head in OVERSEAS_HEADS:
        raise NumberRejected(
            f"{OVERSEAS_HEADS[head]} number ({head}) in a block phonenumbers "
            f"{phonenumbers.__version__} does not know: its local time cannot be told, so it "
            "is not called; update phonenumbers or remove it from the list")


@functools.lru_cache(maxsize=64)
def _home(number_e164: str) -> tuple[str | None, str]:
    """(region, national significant number) of an E.164 number; ("", "") if unparsable."""
    try:
        num = phonenumbers.parse(number_e164, None)
    except phonenumbers.NumberParseException:
        return "", ""
    return phonenumbers.region_code_for_number(num), phonenumbers.national_significant_number(num)


def in_home_plan(number_e164: str, default_region: str) -> bool:
    """Is the number in the French plan or the default region's own country?"""
    region = _home(number_e164)[0]
    return region in FRENCH_REGIONS or region == default_region.upper()


def names_number(text: str, number_e164: str) -> bool:
    """Does `text` (a spreadsheet cell: "06 12 34 56 78", "Jean, +33 6 12…") write the number
    `number_e164` in any common form? A national form is read in the number's own region, as
    the list that wrote it would have been."""
    return bool(number_spans(text, number_e164))


def number_spans(text: str, number_e164: str) -> list[tuple[int, int]]:
    """The (start, end) of each place `text` writes `number_e164` (names_number's rule), so a
    cell naming two people ("Jean 06 12 34 56 78, Marie 06 98…") gives up only this one's."""
    region, nsn = _home(number_e164)
    # Every such form holds the significant digits in a row once separators are dropped: a
    # cheap test before phonenumbers' matcher (~0.2 ms a cell).
    if not nsn or nsn not in re.sub(r"[^0-9]", "", unicodedata.normalize("NFKC", text)):
        return []
    spans = [(m.start, m.end) for m in phonenumbers.PhoneNumberMatcher(
        text, region, leniency=phonenumbers.Leniency.POSSIBLE)
        if _format(_rehome(m.number)) == number_e164]
    bare = text.strip()
    if not spans and _NUMBER_TEXT.fullmatch(bare):
        whole = _parse_valid(bare, region)
        if whole is not None and _format(whole) == number_e164:
            start = text.index(bare)
            spans = [(start, start + len(bare))]
    return spans


__all__ = ["FRENCH_REGIONS", "OVERSEAS_REGIONS", "NumberRejected", "e164", "in_home_plan",
           "is_known_region", "names_number", "national_form", "number_spans",
           "overseas_homes", "parse_callee", "box_forms", "box_line",
           "BOX_PREFIXES"]
