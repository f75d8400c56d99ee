"""The callee's public-holiday calendar (the calling rules' `skip_holidays`): the country's,
with the French subdivisions a number may keep (Alsace-Moselle's landlines, every overseas
region a number is valid in), made once per (country, subdivisions) and read one thread at a
time."""
from __future__ import annotations

import functools
import threading
from datetime import date

import holidays
import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from ivr.compliance.callee_place import (ALSACE_MOSELLE, FR_OVERSEAS_SUBDIV, _parsed,
                                         code_regions, stored_overseas)
from ivr.compliance.holiday_load import preload
from ivr.compliance.place_key import place_key
from ivr.errors import ComplianceError
from ivr.numbers import overseas_homes


def holiday_country(code: str) -> str:
    """schedule.holidays_country as the calendar takes it: upper case, and France's alpha-3
    (FRA, which the holidays package takes too) as FR. Before, FRA passed every check and
    kept the national calendar alone: no overseas nor Alsace-Moselle holiday."""
    code = code.strip().upper()
    return "FR" if code == "FRA" else code


def has_calendar(code: str) -> bool:
    """Whether the holidays package has a calendar for schedule.holidays_country (the one
    the calling rules will use, made once: _country_calendar's cache)."""
    try:
        _country_calendar(holiday_country(code))
    except ComplianceError:
        return False
    return True


def _holiday_calendar(country: str, number: str, listed: tuple[str, ...] = ()
                      ) -> holidays.HolidayBase:
    """`listed`: the regions a list row's time zone adds (Zones.subdivs), kept with the number's."""
    country = holiday_country(country)
    subdivs = tuple(sorted({*fr_subdivisions(number), *listed})) if country == "FR" else ()
    return _country_calendar(country, subdivs)


def fr_subdivisions(number: str) -> tuple[str, ...]:
    """The `holidays` FR subdivisions whose public holidays a callee may keep: Alsace-Moselle's
    for its landlines, an overseas region's for its numbers (every region the number is valid
    in: fail closed), else none. Parsed only when a region of the number's code is overseas."""
    local = ALSACE_MOSELLE.get(number[1:6]) if number.startswith("+333") else None
    if local is not None:
        return (local,)
    regions = code_regions(number)
    if regions is not None and not any(r in FR_OVERSEAS_SUBDIV for r in regions) and \
            stored_overseas(number) is None:
        return ()
    return _number_subdivs(place_key(number))


@functools.lru_cache(maxsize=65536)
def _number_subdivs(number: str) -> tuple[str, ...]:
    # phonenumbers' region_code_for_number takes the first region a number is valid in: a 0690
    # mobile is valid in Guadeloupe, Saint-Barthélemy and Saint-Martin, each with its own
    # abolition day, and a 09 76 22.. box is Réunion's or French Guiana's (overseas_homes).
    # Keep every one's holidays rather than guess the island.
    regions = []
    for num in filter(None, map(_parsed, overseas_homes(number) or (number,))):
        regions += [r for r in COUNTRY_CODE_TO_REGION_CODE.get(num.country_code, ())
                    if phonenumbers.is_valid_number_for_region(num, r)]
    return tuple(sorted({FR_OVERSEAS_SUBDIV[r] for r in regions if r in FR_OVERSEAS_SUBDIV}))


# holidays fills a calendar's year on its first look at it, adding the year to `years` before
# its holidays: a second thread looking meanwhile took the year as filled and missed them. The
# calendars are shared (_country_calendar) by the loop's dial checks and the store threads'
# plans and claims.
_FILLING = threading.Lock()


def on_holiday(calendar: holidays.HolidayBase, day: date) -> bool:
    """`day in calendar`, one thread at a time (_FILLING)."""
    with _FILLING:
        return day in calendar


def holiday_name(calendar: holidays.HolidayBase, day: date) -> str:
    """The holiday's name on `day` ("" if none), one thread at a time (_FILLING)."""
    with _FILLING:
        return calendar.get(day) or ""


@functools.lru_cache(maxsize=64)  # one calendar per (country, subdivisions), not one per call
def _country_calendar(country: str, subdivs: tuple[str, ...] = ()) -> holidays.HolidayBase:
    preload(country)  # that country's module alone, not all 250 (holiday_load.py)
    try:
        if not subdivs:
            return holidays.country_holidays(country)
        calendars = [holidays.country_holidays(country, subdiv=s) for s in subdivs]
    except NotImplementedError:
        raise ComplianceError(
            f"schedule.holidays_country {country!r} is not supported: use an ISO code such as FR") from None
    return calendars[0] if len(calendars) == 1 else sum(calendars[1:], calendars[0])
