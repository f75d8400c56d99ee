"""Décret 2022-1313 limits are refusals; only schedule.override_reason turns them into warnings."""
from __future__ import annotations

from typing import Any

import pytest

from ivr import config
from ivr.compliance.preflight import (ERROR, OVERRIDE_KEY, WARNING, Violation, preflight,
                                      raise_on_errors)
from ivr.errors import ComplianceError

LOOSE: dict[str, Any] = {  # the configuration of issue 16
    "windows": [{"days": "mon-sun", "hours": ["08:00-22:00"]}], "skip_holidays": False,
    "max_attempts_per_30_days": 10, "refusal_cooldown_days": 5}
LOOSE_CODES = ["window_wider_than_decree", "holidays_not_skipped", "attempt_cap_above_decree",
               "refusal_cooldown_short"]
REASON = "Élection partielle : le préfet a autorisé les appels le samedi matin"


def make(**schedule: Any) -> config.Config:
    return config.from_dict({"campaign": {"caller_id": "+33162000000"}, "schedule": schedule})


def found(**schedule: Any) -> list[tuple[str, str]]:
    return [(v.code, v.severity) for v in preflight(make(**schedule))]


def test_the_override_key_is_schedule_override_reason() -> None:
    assert OVERRIDE_KEY == "schedule.override_reason"
    assert config.Schedule().override_reason == ""


def test_the_loose_config_of_issue_16_is_refused() -> None:
    violations = preflight(make(**LOOSE))
    assert [(v.code, v.severity) for v in violations] == [(c, ERROR) for c in LOOSE_CODES]
    with pytest.raises(ComplianceError) as info:
        raise_on_errors(violations)
    assert "\n" not in str(info.value) and OVERRIDE_KEY in str(info.value)


@pytest.mark.parametrize(("schedule", "code"), [
    ({"windows": [{"days": "mon-sat", "hours": ["10:00-13:00"]}]}, "window_wider_than_decree"),
    ({"windows": [{"days": "mon-fri", "hours": ["09:00-13:00"]}]}, "window_wider_than_decree"),
    ({"windows": [{"days": "mon-fri", "hours": ["14:00-20:30"]}]}, "window_wider_than_decree"),
    ({"windows": [{"days": "mon-fri", "hours": ["10:00-20:00"]}]}, "window_wider_than_decree"),
    ({"skip_holidays": False}, "holidays_not_skipped"),
    # another country's calendar: 14 July and 8 May were call days, and nothing said so
    ({"holidays_country": "BE"}, "holidays_not_french"),
    # a French region's own calendar (MQ, or its alpha-3 MTQ): the number's regions are lost
    ({"holidays_country": "MQ"}, "holidays_not_french"),
    ({"holidays_country": "MTQ"}, "holidays_not_french"),
    ({"max_attempts_per_30_days": 5}, "attempt_cap_above_decree"),
    ({"refusal_cooldown_days": 59}, "refusal_cooldown_short"),
])
def test_each_limit_alone_is_an_error_naming_its_key(schedule: dict[str, Any], code: str) -> None:
    violations = preflight(make(**schedule))
    assert [(v.code, v.severity) for v in violations] == [(code, ERROR)]
    key = next(iter(schedule))
    assert f"schedule.{key}" in violations[0].message


def test_a_french_calendar_however_written_is_clean_and_another_can_be_overridden() -> None:
    assert found(holidays_country="fr") == [] and found(holidays_country="FR") == []
    assert found(holidays_country="FRA") == []  # France's alpha-3: its regions follow
    assert found(holidays_country="DE", override_reason=REASON) == [
        ("holidays_not_french", WARNING)]


def test_windows_and_limits_inside_the_decree_are_clean() -> None:
    assert found(windows=[{"days": "tue", "hours": ["10:00-12:00", "17:00-20:00"]}],
                 max_attempts_per_30_days=4, refusal_cooldown_days=60) == []
    assert found(windows=[{"days": "mon-fri", "hours": ["10:00-13:00", "14:00-20:00"]}],
                 max_attempts_per_30_days=1, refusal_cooldown_days=365) == []


def test_a_stated_reason_turns_them_into_warnings_quoting_it() -> None:
    violations = preflight(make(override_reason=REASON, **LOOSE))
    assert [(v.code, v.severity) for v in violations] == [(c, WARNING) for c in LOOSE_CODES]
    assert all(REASON in v.message and OVERRIDE_KEY in v.message for v in violations)
    raise_on_errors(violations)  # warnings never raise


@pytest.mark.parametrize("reason", ["yes", "ok ok", "override", "   ", "because I can"])
def test_a_reason_of_a_word_or_two_is_an_error(reason: str) -> None:
    violations = preflight(make(override_reason=reason, **LOOSE))
    if not reason.strip():  # blank = no override at all
        assert all(v.severity == ERROR for v in violations) and len(violations) == 4
        return
    assert [(v.code, v.severity) for v in violations] == [("override_reason_too_short", ERROR)]
    assert OVERRIDE_KEY in violations[0].message


def test_a_reason_without_anything_to_override_is_warned() -> None:
    assert found(override_reason=REASON) == [("override_reason_unused", WARNING)]


def test_negative_limits_stay_errors_even_with_a_reason() -> None:
    codes = [(v.code, v.severity) for v in preflight(make(override_reason=REASON,
                                                          max_attempts_per_30_days=-1))]
    assert ("limits_negative", ERROR) in codes


def test_demo_any_hour_for_fiction_numbers_still_works() -> None:
    cfg = config.from_dict({"campaign": {"caller_id": "+33199000000"},
                            "schedule": {"demo_any_hour": True}})
    violations: list[Violation] = preflight(cfg, callees=["+33199000001"])
    assert [(v.code, v.severity) for v in violations] == [("demo_any_hour", WARNING)]
