"""What a callee's country code alone decides, so that the calling rules need not parse the
number: its zone and whether it may fall in a French overseas holiday region.

Parsing a number (phonenumbers) costs ~50-100 µs: a plan over 100,000 contacts spent seconds
on it. Whatever phonenumbers makes of an E.164 number "+<code><rest>" (parse, type, prefix
look-up, or a failure), the zone `callee_zone` picks (the contact's own aside) is one listed
under a prefix of the code's numbers, or the default; the holiday region is that of one of the
code's regions, or none. When every candidate is the same (+33: Europe/Paris, with Europe/Paris
as the default, and no overseas region), that is the answer for every number of the code,
exactly; otherwise the caller parses the number as before. The one exception within +33:
Alsace-Moselle's landlines (ALSACE_MOSELLE), which keep two more public holidays.

Also here, from calling_rules.py (which imports them): the callee's zone (`callee_zone`: a
list's timezone column may not loosen the clock nor the holidays of a number whose place is
certain, `listed_zone`) and the zones a number may be in (`Zones`). Its public-holiday
calendar is holiday_place.py's.
"""
from __future__ import annotations

import functools
import re
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata
from phonenumbers.timezone import TIMEZONE_DATA, time_zones_for_number

from ivr.compliance.place_key import place_key
from ivr.errors import ComplianceError
from ivr.numbers import OVERSEAS_REGIONS, overseas_homes

_E164 = re.compile(r"\+[1-9][0-9]{1,15}")
# A geographic number is ported only within its own zone (below, ALSACE_MOSELLE): 01-05 are
# mainland lines, on Paris time. ARCEP's fiction range (01 99 00) is nobody's line: the
# sandbox's callees, whose list rows place them anywhere.
_MAINLAND_LANDLINE = re.compile(r"\+33[1-5][0-9]{8}")
_FICTION = re.compile(r"\+3319900[0-9]{4}")
e164 = _E164.fullmatch  # "+digits" as code_place and country_code accept it (else None)

# French overseas regions (phonenumbers region code) -> `holidays` FR subdivision, so that e.g.
# a Réunion number also gets 20 December (abolition of slavery).
FR_OVERSEAS_SUBDIV: dict[str, str] = {
    "GP": "971", "MQ": "972", "GF": "973", "RE": "974", "YT": "976",
    "BL": "BL", "MF": "MF", "PM": "PM", "NC": "NC", "PF": "PF", "WF": "WF"}

# Alsace-Moselle keeps Good Friday and 26 December as public holidays. A geographic number is
# ported only within its own numbering zone, so its range says where the line is; a mobile
# says nothing of where its owner lives. Per phonenumbers' geocoder: 03 87 is Moselle; 03 88,
# 03 89, 03 90 and 03 67/68/69 are Alsace (Strasbourg, Colmar, Mulhouse, Haguenau...). 03 54-57,
# 03 72 and 03 82 are Lorraine ranges that mix Moselle towns (Metz, Thionville, Forbach,
# Sarreguemines) with others: they keep the two days too, as calling on fewer days is lawful.
ALSACE_MOSELLE: dict[str, str] = {
    "33387": "57", "33388": "6AE", "33389": "6AE", "33390": "6AE",
    "33367": "6AE", "33368": "6AE", "33369": "6AE",
    "33354": "57", "33355": "57", "33356": "57", "33357": "57", "33372": "57", "33382": "57"}

# The region of each overseas time zone (tzdata's, one a place): a list row naming one brings
# that region's public holidays (a mainland mobile whose owner lives in Guadeloupe: 27 May).
OVERSEAS_ZONE_SUBDIV: dict[str, str] = {
    "America/Guadeloupe": "971", "America/Martinique": "972", "America/Cayenne": "973",
    "Indian/Reunion": "974", "Indian/Mayotte": "976", "America/St_Barthelemy": "BL",
    "America/Marigot": "MF", "America/Miquelon": "PM", "Pacific/Noumea": "NC",
    "Pacific/Tahiti": "PF", "Pacific/Marquesas": "PF", "Pacific/Gambier": "PF",
    "Pacific/Wallis": "WF"}


def country_code(number: str) -> int | None:
    """The code phonenumbers' parse takes from "+digits" (the first 1-3 digits that are one),
    or None for any other text."""
    return _code_of(number[1:4]) if _E164.fullmatch(number) else None


@functools.lru_cache(maxsize=4096)
def _code_of(first: str) -> int | None:
    """The code among a number's first three digits (codes are prefix-free: at most one)."""
    for i in (1, 2, 3):
        if int(first[:i]) in COUNTRY_CODE_TO_REGION_CODE:
            return int(first[:i])
    return None


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


@functools.lru_cache(maxsize=1024)
def _code_zone(code: int, default: ZoneInfo) -> ZoneInfo | None:
    """The one zone every number of `code` gets, or None when it depends on the number. The
    candidates: every zone listed under a prefix of the code's numbers (the geographic look-up)
    or under a prefix of the code itself (the country-level one), an unknown name or none
    at all giving the default."""
    text = str(code)
    names = {n for prefix, zones in TIMEZONE_DATA.items()
             if prefix.startswith(text) or text.startswith(prefix) for n in zones}
    candidates = {_zone(n) or default for n in names if n != "Etc/Unknown"} | {default}
    return candidates.pop() if len(candidates) == 1 else None


class Zones(tzinfo):
    """The zones a number may be in when their clocks differ (+34 6..: Madrid or the Canaries;
    +351 9..: Lisbon or the Azores; an overseas number and the zone its list row names): a
    call is allowed only when each allows it. As a tzinfo (what callee_zone gave before), it
    keeps the first one's clock, which names times in messages."""

    def __init__(self, zones: tuple[ZoneInfo, ...], subdivs: tuple[str, ...] = (),
                 note: str = "") -> None:
        self.zones, self.key = zones, " or ".join(z.key for z in zones)
        # the holiday regions a list's time zone adds, and why the zones are several (if not
        # that the number may be in each): `listed_zone`
        self.subdivs, self.note = subdivs, note

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Zones) and (other.zones, other.subdivs, other.note) == \
            (self.zones, self.subdivs, self.note)

    def __hash__(self) -> int:
        return hash((self.zones, self.subdivs, self.note))

    def __repr__(self) -> str:
        return f"Zones({self.key!r})"

    def __str__(self) -> str:
        return self.key

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return self.zones[0].utcoffset(dt)

    def dst(self, dt: datetime | None) -> timedelta | None:
        return self.zones[0].dst(dt)

    def tzname(self, dt: datetime | None) -> str | None:
        return self.zones[0].tzname(dt)

    def fromutc(self, dt: datetime) -> datetime:
        return self.zones[0].fromutc(dt.replace(tzinfo=self.zones[0])).replace(tzinfo=self)


def zones_of(zone: ZoneInfo | Zones) -> tuple[ZoneInfo, ...]:
    return zone.zones if isinstance(zone, Zones) else (zone,)


def distinct_zones(zones: Iterable[ZoneInfo], first: tuple[ZoneInfo | None, ...]
                   ) -> tuple[ZoneInfo, ...]:
    """One zone per clock among `zones` (London, Jersey and Guernsey are one), those named in
    `first` first (in its order), then by name."""
    def rank(z: ZoneInfo) -> tuple[int, str]:
        return (first.index(z) if z in first else len(first), z.key)
    out: list[ZoneInfo] = []
    for z in sorted(set(zones), key=rank):
        if not any(_same_clock(z, o) for o in out):
            out.append(z)
    return tuple(out)


@functools.lru_cache(maxsize=1024)
def _same_clock(a: ZoneInfo, b: ZoneInfo) -> bool:
    """Do `a` and `b` give the same UTC offset every six hours of 2026-2029 (tzdata's rules)?"""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return all((t := start + timedelta(hours=6 * i)).astimezone(a).utcoffset() ==
               t.astimezone(b).utcoffset() for i in range(4 * 365 * 4))


def region_zone(num: phonenumbers.PhoneNumber, names: list[str]) -> str | None:
    """Among several zone `names`, that of the region the number is attributed to (that of
    the region's fixed-line example number), if it is one of them."""
    region = phonenumbers.region_code_for_number(num) if len(names) > 1 else None
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.FIXED_LINE) \
        if region else None
    guess = time_zones_for_number(example) if example is not None else ()
    return guess[0] if len(guess) == 1 and guess[0] in names else None


# One region, several clocks, none of which the number tells apart: French Polynesia's
# Tahiti, Marquesas (+30 min) and Gambier (+1 h). It was judged on Tahiti's alone, so a call at
# 19:45 there reached the Gambier at 20:45. Each clock of the region, whatever zones
# phonenumbers lists for the number: it gives a landline (+689 40 9x, "Remote Archipelago")
# Tahiti's alone. Tahiti's first: it names times in messages.
SPREAD_ZONES: dict[str, tuple[str, ...]] = {
    "PF": ("Pacific/Tahiti", "Pacific/Marquesas", "Pacific/Gambier")}


def overseas_zone(number: str, default: ZoneInfo) -> ZoneInfo | Zones:
    """A French overseas number's zone: its region's (one zone a region), and that of every
    other region its national form may stand for (overseas_homes) when their clocks differ."""
    own = stored_overseas(number) or number  # its own region's zone first, in messages
    homes = sorted(overseas_homes(number) or (number,), key=lambda home: home != own)
    found = []
    for num in filter(None, map(_parsed, homes)):
        spread = SPREAD_ZONES.get(phonenumbers.region_code_for_number(num) or "")
        if spread:
            found += [z for z in map(_zone, spread) if z]
            continue
        names = [n for n in time_zones_for_number(num) if n != "Etc/Unknown"]
        name = names[0] if len(names) == 1 else region_zone(num, names)
        found.append((_zone(name) if name else None) or default)
    zones = distinct_zones(found or [default], first=(found or [default])[0:1])
    return zones[0] if len(zones) == 1 else Zones(zones)


def _zone_or_none(name: str | None) -> ZoneInfo | None:
    if not name or not isinstance(name, str):
        return None
    return _zone(name.strip())


def callee_zone(number_e164: str, contact_tz: str | None, default_tz: str) -> ZoneInfo | Zones:
    """The callee's zone: the number's (Zones when it may be in several with different clocks),
    else `default_tz`. A valid zone of the contact's own (the list's timezone column) replaces
    it, unless the number alone says where the line is (`place_certain`): then each must allow
    a call (`listed_zone`). The number is parsed only when its country code leaves a doubt."""
    listed = _zone_or_none(contact_tz)
    if listed is not None and not place_certain(number_e164):
        return listed_zone(None, listed)
    default = _zone_or_none(default_tz)
    if default is None:
        raise ComplianceError(
            f"time zone {default_tz!r} is unknown: use an IANA name such as Europe/Paris")
    own = code_zone(number_e164, default) or _number_zone(place_key(number_e164), default_tz)
    return own if listed is None else listed_zone(own, listed)


def is_fiction_number(e164: str) -> bool:
    """True for +33 1 99 00 00 00 .. +33 1 99 00 99 99, the range ARCEP reserves for fiction."""
    return bool(_FICTION.fullmatch(e164.strip()))


def place_certain(number: str) -> bool:
    """Does the number alone say where its line is: an overseas number, an overseas 09 box, a
    mainland geographic landline (01-05, Alsace-Moselle's among them)? A list's time zone
    (often a CRM's default) may then not loosen its clock nor its holidays; a mobile or a 09
    box may be anywhere its list row says."""
    if _MAINLAND_LANDLINE.fullmatch(number) and not is_fiction_number(number):
        return True
    regions = code_regions(number) or ()
    return any(r in FR_OVERSEAS_SUBDIV for r in regions) or stored_overseas(number) is not None


def listed_zone(own: ZoneInfo | Zones | None, listed: ZoneInfo) -> ZoneInfo | Zones:
    """The zone of a callee whose list row names `listed`, with `own` the number's when certain
    (else None): each clock must allow a call, the number's first (it names times in
    messages); an overseas `listed` brings its region's holidays (Zones.subdivs)."""
    subdivs = (OVERSEAS_ZONE_SUBDIV[listed.key],) if listed.key in OVERSEAS_ZONE_SUBDIV else ()
    mine = zones_of(own) if own is not None else ()
    zones = distinct_zones(mine + (listed,), first=mine)
    if len(zones) == 1 and not subdivs:
        return zones[0]
    note = f"its number says {own.key}, its list row {listed.key}" \
        if own is not None and len(zones) > len(mine) else ""
    return Zones(zones, subdivs, note)


@functools.lru_cache(maxsize=65536)  # pure, and asked again at every re-plan and dial
def _number_zone(number_e164: str, default_tz: str) -> ZoneInfo | Zones:
    """The number's zone from phonenumbers, else `default_tz` (a valid name). Candidates
    with different clocks give Zones (each must allow a call); a French overseas number gets
    its regions' (one zone each: +262 692 is Réunion's, not Mayotte's; overseas_zone)."""
    default = ZoneInfo(default_tz.strip())
    num = _parsed(number_e164)
    if num is None:
        return default
    names = [n for n in time_zones_for_number(num) if n != "Etc/Unknown"]
    if phonenumbers.region_code_for_number(num) in FR_OVERSEAS_SUBDIV:
        return overseas_zone(number_e164, default)
    guess = region_zone(num, names)
    zones = distinct_zones([_zone_or_none(n) or default for n in names] or [default],
                           first=(default, _zone_or_none(guess)))
    return zones[0] if len(zones) == 1 else Zones(zones)


def code_zone(number: str, default: ZoneInfo) -> ZoneInfo | None:
    """callee_zone's answer for `number` without a valid zone of its own, when its code alone
    decides it; None otherwise."""
    code = country_code(number)
    if code is None or stored_overseas(number) is not None or \
            any(r in FR_OVERSEAS_SUBDIV for r in COUNTRY_CODE_TO_REGION_CODE.get(code, ())):
        return None  # an overseas number may be another region's too (overseas_zone)
    return _code_zone(code, default)


def stored_overseas(number: str) -> str | None:
    """The overseas number a +33 9 form of an overseas VoIP ("box") number stands for (+33 9 47
    50.. is +590 9 47 50.., Guadeloupe): ivr.numbers keeps boxes in the +33 form, which is
    judged in its region all the same. None for any other number."""
    if not number.startswith("+339") or not _voip_head(number[1:6]):
        return None
    homes = overseas_homes(number)
    return homes[0] if homes else None


@functools.lru_cache(maxsize=1)
def _overseas_voip() -> re.Pattern[str]:
    """Any overseas region's VoIP significant numbers, from phonenumbers' metadata."""
    metas = (PhoneMetadata.metadata_for_region(r) for r in OVERSEAS_REGIONS)
    found = sorted({m.voip.national_number_pattern for m in metas
                    if m is not None and m.voip is not None and m.voip.national_number_pattern})
    return re.compile("|".join(f"(?:{p})" for p in found) or "(?!)")


@functools.lru_cache(maxsize=128)
def _voip_head(head: str) -> bool:
    """May a +<head>.. number (five digits, as the plan keys its verdicts) be an overseas VoIP
    one? Tried for each fourth and fifth digit: the metadata's VoIP blocks are set by the
    first five digits of the significant number, the last four are free."""
    return head.startswith("339") and any(
        _overseas_voip().fullmatch(f"{head[2:]}{i:02d}0000") for i in range(100))


def code_place(number: str, default_tz: str) -> tuple[ZoneInfo, None] | None:
    """(zone, holiday subdivision) of `number` without a zone of its own, when its country
    code decides both: callee_zone's zone, and no overseas subdivision. None otherwise (the
    caller asks calling_rules, which parses). Memoised per first three digits: a plan asks
    it for every contact. An Alsace-Moselle landline and a +33 9 head that may hold an overseas
    VoIP number (stored_overseas) are not decided by their code."""
    if not _E164.fullmatch(number) or number[1:6] in ALSACE_MOSELLE or _voip_head(number[1:6]):
        return None
    return _head_place(number[1:4], default_tz)


@functools.lru_cache(maxsize=4096)
def _head_place(first: str, default_tz: str) -> tuple[ZoneInfo, None] | None:
    code, default = _code_of(first), _zone(default_tz.strip()) if default_tz else None
    if code is None or default is None:  # callee_zone refuses an unknown default itself
        return None
    zone = _code_zone(code, default)
    regions = COUNTRY_CODE_TO_REGION_CODE.get(code, ())
    if zone is None or any(r in FR_OVERSEAS_SUBDIV for r in regions):
        return None
    return zone, None


def code_regions(number: str) -> tuple[str, ...] | None:
    """The regions phonenumbers may place `number` in (its code's), or None if not E.164."""
    code = country_code(number)
    return None if code is None else tuple(COUNTRY_CODE_TO_REGION_CODE.get(code, ()))


@functools.lru_cache(maxsize=1024)  # the zone and the subdivision of one number: one parse
def _parsed(number: str) -> phonenumbers.PhoneNumber | None:
    try:  # a +33 form of an overseas VoIP number stored before ivr.numbers re-homed it: its own
        return phonenumbers.parse(stored_overseas(number) or number, None)
    except phonenumbers.NumberParseException:
        return None
