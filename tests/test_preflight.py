"""Preflight: every rule has a test that fails when the rule is broken."""
from __future__ import annotations

from typing import Any

import pytest

from conftest import make_config
from ivr import config
from ivr.errors import ComplianceError
from ivr.compliance.preflight import (ERROR, WARNING, Violation, check_caller_id, check_sources,
                                      preflight, raise_on_errors)

GOOD_SOURCE = {"source": "adhérents 2025", "basis": "member_file", "acquired_on": "2025-11-02"}


def make(caller_id: str = "+33162000000", **schedule: Any) -> config.Config:
    return make_config(campaign={"caller_id": caller_id}, schedule=schedule)


def codes(violations: list[Violation], severity: str | None = None) -> list[str]:
    return [v.code for v in violations if severity is None or v.severity == severity]


def test_real_campaign_defaults_are_clean() -> None:
    assert preflight(make(), sources=[GOOD_SOURCE]) == []


def test_demo_like_config_has_no_error_only_the_demo_warning() -> None:
    cfg = config.from_dict({
        "campaign": {"name": "demo", "caller_id": "+33199000000", "caller_name": "Marie Dupont 2026"},
        "schedule": {"demo_any_hour": True}})
    found = preflight(cfg, sources=[{"source": "fiction", "basis": "consent", "acquired_on": "2026-01-01"}])
    assert codes(found, ERROR) == []
    assert codes(found) == ["demo_any_hour"]
    assert "fiction" in found[0].message and found[0].severity == WARNING
    raise_on_errors(found)  # warnings never raise


# --- caller ID -----------------------------------------------------------------------------

@pytest.mark.parametrize(("caller_id", "code"), [
    ("", "caller_id_missing"),
    ("   ", "caller_id_missing"),
    ("anonymous", "caller_id_masked"),
    ("Masqué", "caller_id_masked"),
    ("private number", "caller_id_masked"),
    ("+33 anonymous 1", "caller_id_masked"),
    ("12345", "caller_id_invalid"),
    ("+3312", "caller_id_invalid"),
    ("+33 1 99", "caller_id_invalid"),
])
def test_caller_id_missing_masked_or_invalid_is_an_error(caller_id: str, code: str) -> None:
    found = preflight(make(caller_id))
    assert [(v.code, v.severity) for v in found] == [(code, ERROR)]
    assert "campaign.caller_id" in found[0].message


@pytest.mark.parametrize("caller_id", [
    "+33612345678", "+33 7 81 23 45 67", "06 12 34 56 78", "0712345678",  # 07 12 is unassigned
    "+262692123456", "+590690123456"])  # overseas 06 9x mobiles are ARCEP mobiles too
def test_mobile_caller_id_is_an_arcep_error(caller_id: str) -> None:
    found = check_caller_id(caller_id)
    assert [(v.code, v.severity) for v in found] == [("caller_id_mobile", ERROR)]
    assert "ARCEP" in found[0].message and "06/07" in found[0].message


@pytest.mark.parametrize("caller_id", ["+33142000000", "+33937000000", "+33899000000", "+12125551234",
                                       "+442079460000"])
def test_caller_id_outside_automated_ranges_is_an_error(caller_id: str) -> None:
    # An error since ARCEP 2022-1583 is enforced (tests/test_caller_id.py).
    found = check_caller_id(caller_id)
    assert [(v.code, v.severity) for v in found] == [("caller_id_range", ERROR)]
    assert "01 62" in found[0].message


@pytest.mark.parametrize("caller_id", ["+33162000000", "+33569123456", "+33948123456", "+33947812345",
                                       "+33199000000", "0162000000"])
def test_caller_id_in_automated_ranges_or_fiction_is_clean(caller_id: str) -> None:
    assert check_caller_id(caller_id) == []


# --- schedule ------------------------------------------------------------------------------

def test_no_window_is_an_error() -> None:
    found = preflight(make(windows=[]))
    assert codes(found) == ["no_window"] and found[0].severity == ERROR


@pytest.mark.parametrize(("window", "bad"), [
    ({"days": "monday-friday", "hours": ["10:00-13:00"]}, "monday-friday"),
    ({"days": "mon-fri", "hours": ["10h-13h"]}, "10h-13h"),
    ({"days": "mon-fri", "hours": ["14:00-13:00"]}, "14:00-13:00"),
    ({"days": "mon-fri", "hours": []}, "[]"),
])
def test_bad_window_syntax_is_an_error(window: dict[str, Any], bad: str) -> None:
    found = preflight(make(windows=[{"days": "mon-fri", "hours": ["10:00-13:00"]}, window]))
    assert codes(found, ERROR) == ["window_syntax"]
    assert "schedule.windows[1]" in found[0].message and bad in found[0].message


def test_every_bad_window_is_reported() -> None:
    found = preflight(make(windows=[{"days": "x", "hours": ["10:00-13:00"]}, {"days": "y"}]))
    assert codes(found, ERROR) == ["window_syntax", "window_syntax"]


def test_window_wider_than_the_decree_is_an_error_unless_a_reason_is_given() -> None:
    # Décret 2022-1313 limits are errors; override_reason makes them warnings
    # (tests/test_decret_limits.py).
    reason = "Élection partielle : le préfet a autorisé les appels le samedi matin"
    for window in ({"days": "mon-sat", "hours": ["10:00-13:00"]},
                   {"days": "mon-fri", "hours": ["09:00-13:00"]},
                   {"days": "mon-fri", "hours": ["10:00-20:00"]}):  # covers the lunch gap
        found = preflight(make(windows=[window]))
        assert codes(found) == ["window_wider_than_decree"] and found[0].severity == ERROR
        found = preflight(make(windows=[window], override_reason=reason))
        assert codes(found) == ["window_wider_than_decree"] and found[0].severity == WARNING
    assert preflight(make(windows=[{"days": "tue", "hours": ["10:00-12:00", "17:00-20:00"]}])) == []


def test_schedule_values_the_rules_cannot_use_are_errors() -> None:
    assert codes(preflight(make(timezone="Paris/Nowhere")), ERROR) == ["timezone_invalid"]
    assert codes(preflight(make(holidays_country="XX")), ERROR) == ["holidays_country_invalid"]
    found = preflight(make(blackout_dates=["2026-03-15", "15/03/2026"]))
    assert codes(found, ERROR) == ["blackout_invalid"] and "15/03/2026" in found[0].message


def test_schedule_looser_than_the_decree_is_warned() -> None:
    assert codes(preflight(make(skip_holidays=False))) == ["holidays_not_skipped"]
    assert codes(preflight(make(max_attempts_per_30_days=5))) == ["attempt_cap_above_decree"]
    assert codes(preflight(make(refusal_cooldown_days=30))) == ["refusal_cooldown_short"]
    assert codes(preflight(make(max_attempts_per_30_days=-1)), ERROR) == ["limits_negative"]


def test_demo_any_hour_is_a_warning_naming_fiction_numbers() -> None:
    found = preflight(make(demo_any_hour=True))
    assert [(v.code, v.severity) for v in found] == [("demo_any_hour", WARNING)]
    assert "+33 1 99 00" in found[0].message


# --- list provenance -----------------------------------------------------------------------

def test_sources_none_skips_provenance_checks() -> None:
    assert preflight(make(), sources=None) == []


@pytest.mark.parametrize(("source", "code"), [
    ({"basis": "consent", "acquired_on": "2026-01-01"}, "source_missing"),
    ({"source": "  ", "basis": "consent", "acquired_on": "2026-01-01"}, "source_missing"),
    ({"source": "fichier loué", "acquired_on": "2026-01-01"}, "basis_missing"),
    ({"source": "fichier loué", "basis": "", "acquired_on": "2026-01-01"}, "basis_missing"),
    ({"source": "x", "basis": "consent", "acquired_on": "01/02/2026"}, "acquired_on_invalid"),
])
def test_list_without_provenance_is_an_error(source: dict[str, Any], code: str) -> None:
    found = preflight(make(), sources=[GOOD_SOURCE, source])
    assert codes(found, ERROR) == [code]
    assert "contact list" in found[0].message


def test_non_mapping_source_is_an_error() -> None:
    assert codes(preflight(make(), sources=["list.csv"]), ERROR) == ["source_missing"]  # type: ignore[list-item]


@pytest.mark.parametrize("basis", ["scraped", "web", "Internet", "scraping", "web_scraping",
                                   "aspiration de sites", "collected online", "crawler",
                                   "web sans consentement", "collected online without consent",
                                   "en ligne, pas de consentement",
                                   "collected online without any prior consent",
                                   "collecte en ligne, absence de consentement",
                                   "online, consent refused", "web, non-consent",
                                   "collected online without their consent",
                                   "inscrits en ligne sans leur consentement"])
def test_numbers_from_the_internet_are_refused_citing_cnil(basis: str) -> None:
    found = preflight(make(), sources=[{"source": "x", "basis": basis, "acquired_on": "2026-01-01"}])
    assert codes(found, ERROR) == ["basis_scraped"]
    assert "CNIL" in found[0].message and "internet" in found[0].message


@pytest.mark.parametrize("basis", ["annuaire pages jaunes", "leboncoin", "linkedin", "facebook",
                                   "extrait annuaire", "Pages Blanches"])
def test_a_basis_naming_a_harvesting_origin_is_refused(basis: str) -> None:
    """As a list named after one is: before, such a basis was only `basis_unknown`, a
    warning, and the list was called."""
    found = preflight(make(), sources=[{"source": "x", "basis": basis, "acquired_on": "2026-01-01"}])
    assert codes(found, ERROR) == ["basis_scraped"] and "CNIL" in found[0].message


@pytest.mark.parametrize("basis, code", [
    ("internet, consent never obtained", "basis_scraped"),
    ("trouvés sur Google Maps", "basis_scraped"), ("publicly available numbers", "basis_scraped"),
    ("numéros publics", "basis_scraped"), ("Instagram", "basis_scraped"),
    ("twitter bios, consent", "basis_scraped"), ("Mappy", "basis_scraped"),
    ("consent: unknown", "basis_no_consent"), ("consent never obtained", "basis_no_consent"),
    ("jamais consenti", "basis_no_consent"), ("consentement jamais recueilli", "basis_no_consent"),
    ("consent not asked", "basis_no_consent")])
def test_a_basis_a_probe_got_past_as_a_warning_is_refused(basis: str, code: str) -> None:
    """Found by a probe: each was `basis_unknown`, a warning, and the list was called ("never
    obtained" read as a consent, which let "internet" through; no word for Google Maps, a
    public directory, Instagram, Twitter or Mappy)."""
    found = preflight(make(), sources=[{"source": "x", "basis": basis, "acquired_on": "2026-01-01"}])
    assert codes(found, ERROR) == [code], found


@pytest.mark.parametrize("basis", ["none", "None", "aucune", "n/a", "N/A", "-", "?", "...",
                                   "no basis", "sans base légale", "aucune base", "unknown",
                                   "without legal basis"])
def test_a_basis_saying_there_is_none_is_missing(basis: str) -> None:
    found = preflight(make(), sources=[{"source": "x", "basis": basis, "acquired_on": "2026-01-01"}])
    assert codes(found, ERROR) == ["basis_missing"] and "says there is none" in found[0].message


@pytest.mark.parametrize("basis", ["consent", "adhérents, base militante", "fichier des membres",
                                   "rented_file", "recueil en réunion publique, consentement écrit"])
def test_a_real_basis_is_never_taken_for_none(basis: str) -> None:
    found = preflight(make(), sources=[{"source": "x", "basis": basis, "acquired_on": "2026-01-01"}])
    assert codes(found, ERROR) == [], found


@pytest.mark.parametrize("basis", ["web form, data not shared, consent given",
                                   "formulaire en ligne, donnees non cedees, consentement explicite",
                                   "site web, opt-in; no resale, opt-in confirmed"])
def test_a_web_basis_that_states_consent_is_not_refused(basis: str) -> None:
    """A negation that bears on something else (data not shared) is not a denied consent."""
    found = preflight(make(), sources=[{"source": "x", "basis": basis, "acquired_on": "2026-01-01"}])
    assert codes(found, ERROR) == []


def test_consent_given_on_a_web_form_is_not_scraping() -> None:
    found = preflight(make(), sources=[{"source": "x", "basis": "web form consent", "acquired_on": "2026-01-01"}])
    assert codes(found, ERROR) == [] and codes(found) == ["basis_unknown"]


@pytest.mark.parametrize("basis", ["consent", "rented_file", "member_file", "Consent"])
def test_known_bases_are_clean(basis: str) -> None:
    assert preflight(make(), sources=[{"source": "x", "basis": basis, "acquired_on": "2026-01-01"}]) == []


def test_missing_acquisition_date_is_a_warning() -> None:
    found = preflight(make(), sources=[{"source": "x", "basis": "consent"}])
    assert [(v.code, v.severity) for v in found] == [("acquired_on_missing", WARNING)]


# --- raising -------------------------------------------------------------------------------

def test_raise_on_errors_joins_every_error_on_one_line() -> None:
    found = preflight(make("+33612345678", windows=[], demo_any_hour=True),
                      sources=[{"source": "", "basis": "scraped", "acquired_on": "2026-01-01"}])
    errors = [v.message for v in found if v.severity == ERROR]
    assert len(errors) == 4  # mobile, no window, no source, scraped
    with pytest.raises(ComplianceError) as info:
        raise_on_errors(found)
    text = str(info.value)
    assert text == "; ".join(errors) and "\n" not in text
    assert "demo_any_hour" not in text  # the warning is not raised


def test_raise_on_errors_is_silent_without_errors() -> None:
    assert raise_on_errors([]) is None
    assert raise_on_errors([Violation("demo_any_hour", "w", WARNING)]) is None


def test_every_message_is_one_line() -> None:
    found = preflight(make("anon\nymous", windows=[{"days": "mon\nfri", "hours": ["1\n0"]}]),
                      sources=[{"source": "a\nb", "basis": "web\nscraped"}])
    assert found and all("\n" not in v.message for v in found)


@pytest.mark.parametrize("name", ["scraped from leboncoin", "Pages Jaunes", "annuaire 2024",
                                  "crawl-municipales", "harvested numbers", "Google Maps export",
                                  "118 218", "infobel", "Instagram 2026"])
def test_a_list_named_after_a_scraping_origin_is_refused_at_run(name: str) -> None:
    out = check_sources([{"source": name, "basis": "member_file", "acquired_on": "2026-01-01"}])
    assert [v.code for v in out if v.is_error] == ["source_scraped"]
    assert name in out[0].message and "CNIL" in out[0].message


def test_a_list_name_without_a_scraping_origin_is_clean() -> None:
    assert check_sources([{"source": "adherents 2026", "basis": "member_file",
                           "acquired_on": "2026-01-01"}]) == []
    assert check_sources([{"source": "Google Forms, réunion publique", "basis": "consent",
                           "acquired_on": "2026-01-01"}]) == []  # a form is no harvest
    for source, basis in (("Member directory 2024", "member_file"),  # found in review
                          ("x", "Inscriptions en réunion publique, 2024"),
                          ("x", "rented_file (Société publique locale)")):
        assert [v for v in check_sources([{"source": source, "basis": basis,
                                           "acquired_on": "2026-01-01"}])
                if v.is_error] == [], (source, basis)


def test_amd_on_is_warned_every_check_and_off_is_silent() -> None:
    from ivr.compliance.preflight import WARNING, check_amd
    on = config.from_dict({"dialer": {"amd": True}})
    off = config.from_dict({"dialer": {"amd": False}})
    warned = check_amd(on)
    assert [(v.code, v.severity) for v in warned] == [("amd_on", WARNING)]
    assert "dialer.amd" in warned[0].message and "lost" in warned[0].message
    assert check_amd(off) == []
    assert any(v.code == "amd_on" for v in preflight(on))
    assert not any(v.code == "amd_on" for v in preflight(off))


def test_a_cap_of_zero_attempts_is_warned() -> None:
    """Accepted without a word before: a campaign whose every contact stays uncalled."""
    assert codes(preflight(make(max_attempts_per_30_days=0)), WARNING) == ["attempts_zero"]
    assert "attempts_zero" not in codes(preflight(make(max_attempts_per_30_days=1)))
