"""Checks run before any campaign starts. Pure: takes the config (and list provenance), returns
violations; `raise_on_errors` turns the errors into one ComplianceError.

Legal mentions and the intro text are checked elsewhere (ivr/prompt_legal.py); the caller
combines both lists.

Caller ID (ARCEP décision 2022-1583, in force since 2023-01-01; Conseil d'État, 6 June 2024:
not limited to sales calls, so political calls too): an automated calling system presents only a
verified multi-purpose number from the tranches listed in SAAM_PREFIXES. Geographic (other
01-05), other 09, 08 and 06/07 mobile numbers are errors. Fiction numbers (+33 1 99 00 xx xx)
are allowed as caller ID for a campaign that calls fiction numbers only (the demo).

Décret 2022-1313 limits (hours, holidays, 4 attempts per 30 days, 60 days after a refusal) are
errors; `schedule.override_reason` (OVERRIDE_KEY), a sentence stating why, turns them into
warnings that quote it, so every `ivr check` and run prints it.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from ivr.compliance.holiday_place import has_calendar, holiday_country
from ivr.compliance.calling_rules import is_fiction_number, parse_blackout_dates, parse_windows
from ivr.compliance.list_sources import check_sources, scraped_origin
from ivr.compliance.violations import ERROR, WARNING, Violation
from ivr.compliance.violations import err as _err, fold as _fold, warn as _warn
from ivr.config import Config
from ivr.config_checks import demo_retry_delays, external_pbx_settings
from ivr.errors import ComplianceError
from ivr.numbers import e164, national_form


# Country codes numbered by ARCEP (metropolitan France and overseas departments/collectivities).
ARCEP_COUNTRY_CODES = frozenset({33, 262, 508, 590, 594, 596})
# National-form prefixes of the tranches ARCEP dedicates to automated calling systems (SAAM):
# 01 62, 01 63, 02 70, 02 71, 03 77, 03 78, 04 24, 04 25, 05 68, 05 69, 09 48, 09 49, and
# overseas 09 475 (Guadeloupe, Saint-Martin, Saint-Barthélemy), 09 476 (Guyane), 09 477
# (Martinique), 09 478 / 09 479 (La Réunion, Mayotte). National form, because phonenumbers
# writes the overseas ones under +590/+594/+596/+262 as well as +33.
SAAM_PREFIXES: tuple[str, ...] = (
    "0162", "0163", "0270", "0271", "0377", "0378", "0424", "0425", "0568", "0569",
    "0948", "0949", "09475", "09476", "09477", "09478", "09479")
SAAM_HUMAN = "01 62/63, 02 70/71, 03 77/78, 04 24/25, 05 68/69, 09 48/49 (overseas 09 475-09 479)"

MASKED_WORDS = frozenset({"anonymous", "anonyme", "private", "prive", "masque", "masked", "hidden",
                          "withheld", "restricted", "unknown", "inconnu", "unavailable", "none"})
# Décret 2022-1313 limits: windows must fit inside them unless the override key states why.
DECREE_DAYS = frozenset(range(5))
DECREE_SPANS = ((10 * 3600, 13 * 3600), (14 * 3600, 20 * 3600))
DECREE_MAX_ATTEMPTS_30_DAYS = 4
DECREE_REFUSAL_COOLDOWN_DAYS = 60
OVERRIDE_KEY = "schedule.override_reason"
OVERRIDE_MIN_WORDS = 4  # a reason, not "yes" or "ok"


def check_caller_id(caller_id: str, default_region: str = "FR",
                    callees: Iterable[str] | None = None) -> list[Violation]:
    """ARCEP rules for the presented number; `callees` (E.164), when given, are the numbers
    about to be called: a fiction caller ID may only call fiction numbers."""
    raw = (caller_id or "").strip()
    where = "campaign.caller_id"
    if not raw:
        return [_err("caller_id_missing", f"{where} is empty: present a number your carrier "
                     f"assigned to you in the ARCEP ranges for automated calls ({SAAM_HUMAN})")]
    words = set(re.split(r"[^a-z]+", _fold(raw))) - {""}
    if words & MASKED_WORDS or not any(c.isdigit() for c in raw):
        return [_err("caller_id_masked", f"{where} {raw!r} is masked: automated political calls must "
                     "present a number the callee can call back")]
    try:
        num = phonenumbers.parse(raw, default_region or "FR")
    except phonenumbers.NumberParseException:
        num = None
    mapped = e164(raw, default_region or "FR")  # overseas national forms get their own code
    number = mapped or (phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
                        if num else raw)
    # Mobile first: even an unassigned 06/07 number must be reported as the ARCEP problem it is.
    mobile_type = num is not None and num.country_code in ARCEP_COUNTRY_CODES and \
        phonenumbers.number_type(num) == phonenumbers.PhoneNumberType.MOBILE
    if number.startswith(("+336", "+337")) or mobile_type or _is_overseas_mobile(mapped):
        return [_err("caller_id_mobile", f"{where} {number} is a mobile (06/07) number: ARCEP forbids "
                     f"automated callers from presenting it; use a number from {SAAM_HUMAN}")]
    if mapped is None:
        return [_err("caller_id_invalid", f"{where} {raw!r} is not a valid phone number: use E.164, "
                     "e.g. +33162000000")]
    if is_fiction_number(number):
        return _check_fiction_callees(number, callees)
    if (national_form(number) or "").startswith(SAAM_PREFIXES):
        return []
    return [_err("caller_id_range", f"{where} {number} is not a number for automated calls (ARCEP "
                 "décision 2022-1583: no geographic, other 09, 08 or mobile number): present only a "
                 f"number your carrier assigned to you in {SAAM_HUMAN}")]


# What breaks the Originate's CallerID, `"name" <number>` on one AMI line: the quote that
# closes the name, the brackets of the number, the escape character, and control characters
# (CR/LF end the AMI line). An apostrophe, a comma or an accent is plain text inside the quotes.
_NAME_BREAKERS = frozenset('"<>\\')
_LINE_BREAKERS = frozenset({"Cc", "Zl", "Zp"})  # control characters, line/paragraph separators


# Asterisk copies the Originate's CallerID, name and number, into a 255-byte buffer: from
# ~238 bytes the number loses digits (a number presented that is not ours), past ~1 KB every
# Originate is refused. Carriers show 15-32 characters anyway: 64 bytes is ample.
CALLER_NAME_MAX_BYTES = 64


def caller_name_problem(name: str) -> str | None:
    """The one-line reason campaign.caller_name cannot go into the caller ID, None when it
    can: shared by `ivr check` (check_caller_name) and the dialer (nodes.safe_caller_name)."""
    size = len((name or "").encode("utf-8"))
    if size > CALLER_NAME_MAX_BYTES:
        return (f"campaign.caller_name is {size} bytes long (UTF-8): shorten it to at most "
                f"{CALLER_NAME_MAX_BYTES} (carriers show 15 to 32 characters; a longer name "
                "cuts the caller ID's number in Asterisk's Originate)")
    bad = next((c for c in name or "" if c in _NAME_BREAKERS or
                unicodedata.category(c) in _LINE_BREAKERS), None)
    if bad is None:
        return _misleading_name(name or "")
    return (f"campaign.caller_name {name!r} contains {bad!r}, which breaks the caller ID sent "
            "to the PBX: remove it (\", <, >, \\ and control characters such as line breaks "
            "are not allowed; apostrophes and commas are)")


def _misleading_name(name: str) -> str | None:
    """A handset shows the name beside or in place of the number: a word for a hidden caller
    or a phone number there would hide who calls, as a masked caller ID does."""
    if set(re.split(r"[^a-z]+", _fold(name))) & MASKED_WORDS:
        return (f"campaign.caller_name {name!r} reads as a hidden caller on the callee's "
                "phone: give the candidate's or the list's name")
    if sum(c.isdigit() for c in name) >= 6:
        return (f"campaign.caller_name {name!r} reads as a phone number on the callee's "
                "phone: give a name (the number presented is campaign.caller_id)")
    return None


def check_caller_name(name: str) -> list[Violation]:
    problem = caller_name_problem(name)
    return [_err("caller_name_unsafe", problem)] if problem else []


def _is_overseas_mobile(mapped: str | None) -> bool:
    """An overseas 06 9x / 07 0x mobile written in national form (valid once re-homed)."""
    if mapped is None:
        return False
    parsed = phonenumbers.parse(mapped, None)  # a valid E.164 from e164(): parses
    return parsed.country_code in ARCEP_COUNTRY_CODES and \
        phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE


def _check_fiction_callees(caller: str, callees: Iterable[str] | None) -> list[Violation]:
    real = next((n for n in callees or () if not is_fiction_number(n)), None)
    if real is None:
        return []
    return [_err("caller_id_fiction", f"campaign.caller_id {caller} is a fiction number, yet the "
                 f"campaign would call real numbers (e.g. {real}): present a number your carrier "
                 f"assigned to you in {SAAM_HUMAN}")]


def _decree_violations(cfg: Config) -> list[tuple[str, str]]:
    """(code, message) for each Décret 2022-1313 limit the schedule goes beyond."""
    sch = cfg.schedule
    out: list[tuple[str, str]] = []
    wide = False
    for w in sch.windows:
        try:
            (spec,) = parse_windows([w])
        except ComplianceError:
            continue  # reported as window_syntax
        outside_hours = any(not any(ds <= s and e <= de for ds, de in DECREE_SPANS) for s, e in spec.spans)
        wide = wide or bool(spec.days - DECREE_DAYS) or outside_hours
    if wide:
        out.append(("window_wider_than_decree", "schedule.windows go beyond Décret 2022-1313 "
                    "(mon-fri 10:00-13:00 and 14:00-20:00): keep the windows inside them"))
    if not sch.skip_holidays:
        out.append(("holidays_not_skipped", "schedule.skip_holidays is false: Décret 2022-1313 "
                    "forbids calls on public holidays; set it to true"))
    elif holiday_country(sch.holidays_country) != "FR" and has_calendar(sch.holidays_country):
        # (an unknown code is holidays_country_invalid's; any other, alpha-3 or a French
        # region's own code such as MQ, is not the French calendar with its regions)
        # Another country's calendar replaces France's: 14 July and 8 May became call days.
        out.append(("holidays_not_french", f"schedule.holidays_country is "
                    f"{sch.holidays_country!r}: Décret 2022-1313 forbids calls on French public "
                    "holidays; set it to FR (overseas and Alsace-Moselle holidays follow the "
                    "number)"))
    if sch.max_attempts_per_30_days > DECREE_MAX_ATTEMPTS_30_DAYS:
        out.append(("attempt_cap_above_decree", f"schedule.max_attempts_per_30_days is "
                    f"{sch.max_attempts_per_30_days}: Décret 2022-1313 allows at most "
                    f"{DECREE_MAX_ATTEMPTS_30_DAYS}; lower it"))
    if 0 <= sch.refusal_cooldown_days < DECREE_REFUSAL_COOLDOWN_DAYS:
        out.append(("refusal_cooldown_short", f"schedule.refusal_cooldown_days is "
                    f"{sch.refusal_cooldown_days}: Décret 2022-1313 requires "
                    f"{DECREE_REFUSAL_COOLDOWN_DAYS} days after a refusal; raise it"))
    return out


def check_decree_limits(cfg: Config) -> list[Violation]:
    """Décret limits are errors; a stated override reason turns them into warnings quoting it."""
    found = _decree_violations(cfg)
    reason = " ".join((cfg.schedule.override_reason or "").split())
    if not reason:
        return [_err(code, f"{message} (or state why in {OVERRIDE_KEY})") for code, message in found]
    if len(re.findall(r"\w+", reason)) < OVERRIDE_MIN_WORDS:
        return [_err("override_reason_too_short", f"{OVERRIDE_KEY} {reason!r} does not state a "
                     f"reason: write at least {OVERRIDE_MIN_WORDS} words saying why the campaign "
                     "departs from Décret 2022-1313, or remove it")]
    if not found:
        return [_warn("override_reason_unused", f"{OVERRIDE_KEY} is set but the schedule keeps "
                      "Décret 2022-1313: remove it")]
    return [_warn(code, f"{message}; overridden by {OVERRIDE_KEY}: {reason!r}")
            for code, message in found]


def _check_schedule(cfg: Config) -> list[Violation]:
    sch = cfg.schedule
    out: list[Violation] = []
    if not sch.windows:
        out.append(_err("no_window", "schedule.windows is empty: configure at least one window, "
                        "e.g. days: mon-fri, hours: ['10:00-13:00', '14:00-20:00']"))
    for i, w in enumerate(sch.windows):
        try:
            parse_windows([w])
        except ComplianceError as exc:
            out.append(_err("window_syntax", f"schedule.windows[{i}]: {exc}"))
    try:
        ZoneInfo(sch.timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        out.append(_err("timezone_invalid", f"schedule.timezone {sch.timezone!r} is unknown: "
                        "use an IANA name such as Europe/Paris"))
    if not has_calendar(sch.holidays_country):
        out.append(_err("holidays_country_invalid", f"schedule.holidays_country {sch.holidays_country!r} "
                        "is not supported: use an ISO country code such as FR"))
    try:
        parse_blackout_dates(sch.blackout_dates)
    except ComplianceError as exc:
        out.append(_err("blackout_invalid", str(exc)))
    for key in ("max_attempts_per_30_days", "refusal_cooldown_days"):
        if getattr(sch, key) < 0:
            out.append(_err("limits_negative", f"schedule.{key} is {getattr(sch, key)}: it must be "
                            ">= 0"))
    if sch.max_attempts_per_30_days == 0:
        out.append(_warn("attempts_zero", "schedule.max_attempts_per_30_days is 0: nobody will be "
                         "called; give the cap (4 by default)"))
    out += check_decree_limits(cfg)
    if sch.demo_any_hour:
        out.append(_warn("demo_any_hour", "schedule.demo_any_hour is true: it lifts the hour, holiday and "
                         "blackout rules only for fiction numbers (+33 1 99 00 xx xx); remove it for a "
                         "real campaign"))
    return out


def preflight(cfg: Config, *, sources: list[dict[str, Any]] | None = None,
              callees: Iterable[str] | None = None) -> list[Violation]:
    """All violations for this config and, when given, the contact lists about to be called
    (`sources`, their provenance; `callees`, their E.164 numbers)."""
    out = check_caller_id(cfg.campaign.caller_id, cfg.default_region, callees)
    out += check_caller_name(cfg.campaign.caller_name)
    out += _check_schedule(cfg)
    out += check_amd(cfg)
    # Counted with the other warnings of `ivr check` and `ivr run`, not logged at each load
    out += [_warn("retry_delay_demo", m) for m in demo_retry_delays(cfg)]
    out += [_warn(code, m) for code, m in external_pbx_settings(cfg)]
    if sources is not None:
        out += check_sources(sources)
    return out


def check_amd(cfg: Config) -> list[Violation]:
    """AMD on costs the callee seconds of silence and loses the keys pressed meanwhile
    (README, "The first seconds of a call"): allowed, but said on every check and run."""
    if not cfg.dialer.amd:
        return []
    return [_warn("amd_on", "dialer.amd is true: a callee who answers hears up to 5 s of "
                  "silence while AMD listens, and a key pressed then is lost; set it to false "
                  "(the consent gate already keeps the message from machines)")]


def raise_on_errors(violations: Iterable[Violation]) -> None:
    """Raise ComplianceError with every error message on one line; warnings never raise."""
    errors = [v.message for v in violations if v.severity == ERROR]
    if errors:
        raise ComplianceError("; ".join(errors))


__all__ = ["ERROR", "OVERRIDE_KEY", "WARNING", "Violation", "caller_name_problem", "check_amd",
           "check_caller_id", "check_caller_name", "check_decree_limits", "check_sources",
           "preflight", "raise_on_errors", "scraped_origin"]
