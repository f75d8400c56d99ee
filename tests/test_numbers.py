"""ivr.numbers: one E.164 per person whatever the written form; what may be called at all."""
from __future__ import annotations

import pytest

from ivr.compliance.calling_rules import callee_zone
from ivr.numbers import NumberRejected, e164, is_known_region, national_form, parse_callee
from ivr.opposition_input import opposition_number
from opposition_forms import ACCEPTED, REFUSED

# (national form, international form, E.164, IANA zone): one row per overseas numbering area.
OVERSEAS = [
    ("0262 16 12 34", "+262 262 16 12 34", "+262262161234", "Indian/Reunion"),      # Réunion fixed
    ("0263 10 12 34", "00262 263 10 12 34", "+262263101234", "Indian/Reunion"),     # Réunion fixed
    ("0692 12 34 56", "+262 692 12 34 56", "+262692123456", "Indian/Reunion"),      # Réunion mobile
    ("0693 01 23 45", "+262693012345", "+262693012345", "Indian/Reunion"),          # Réunion mobile
    ("0269 60 12 34", "+262 269 60 12 34", "+262269601234", "Indian/Mayotte"),      # Mayotte fixed
    ("0639 01 23 45", "+262 639 01 23 45", "+262639012345", "Indian/Mayotte"),      # Mayotte mobile
    ("0590 20 12 34", "+590 590 20 12 34", "+590590201234", "America/Guadeloupe"),  # Guadeloupe
    ("0690 00 12 34", "+590 690 00 12 34", "+590690001234", "America/Guadeloupe"),  # GP mobile
    ("0691 22 12 34", "00590691221234", "+590691221234", "America/Guadeloupe"),     # GP mobile
    ("0590 27 12 34", "+590 590 27 12 34", "+590590271234", "America/Guadeloupe"),  # St-Barth/St-Martin
    ("0590 87 12 34", "+590590871234", "+590590871234", "America/Guadeloupe"),      # St-Barth/St-Martin
    ("0596 30 12 34", "+596 596 30 12 34", "+596596301234", "America/Martinique"),  # Martinique
    ("0696 20 12 34", "+596 696 20 12 34", "+596696201234", "America/Martinique"),  # MQ mobile
    ("0697 00 12 34", "00596697001234", "+596697001234", "America/Martinique"),     # MQ mobile
    ("0594 10 12 34", "+594 594 10 12 34", "+594594101234", "America/Cayenne"),     # Guyane
    ("0694 20 12 34", "+594 694 20 12 34", "+594694201234", "America/Cayenne"),     # Guyane mobile
    ("0508 41 23 45", "+508 41 23 45", "+508412345", "America/Miquelon"),           # St-Pierre-et-M.
]


@pytest.mark.parametrize(("national", "international", "expected", "zone"), OVERSEAS)
def test_overseas_national_and_international_forms_give_one_e164(
        national: str, international: str, expected: str, zone: str) -> None:
    assert e164(national, "FR") == expected
    assert e164(international, "FR") == expected
    assert parse_callee(national, "FR") == expected == parse_callee(international, "FR")


@pytest.mark.parametrize(("national", "international", "expected", "zone"), OVERSEAS)
def test_overseas_numbers_get_their_own_time_zone(
        national: str, international: str, expected: str, zone: str) -> None:
    assert str(callee_zone(e164(national, "FR") or "", None, "Europe/Paris")) == zone


def test_the_plus_33_form_of_an_overseas_number_is_the_same_person() -> None:
    # Written +33 5 96… (a national number with +33 glued on) it is still Martinique.
    assert e164("+33 596 30 12 34", "FR") == "+596596301234"
    assert e164("+33 6 92 12 34 56", "FR") == "+262692123456"


@pytest.mark.parametrize(("raw", "expected"), [
    ("06 12 34 56 78", "+33612345678"), ("+33 6 12 34 56 78", "+33612345678"),
    ("07.81.23.45.67", "+33781234567"), ("01 42 00 00 00", "+33142000000"),
    ("0556 12 34 56", "+33556123456"), ("0199000010", "+33199000010"),   # Bordeaux; fiction
    ("09 51 12 34 56", "+33951123456"), ("+33 (0)1 42 00 00 00", "+33142000000")])
def test_mainland_mobiles_and_fixed_lines_are_unchanged(raw: str, expected: str) -> None:
    assert e164(raw, "FR") == expected
    assert parse_callee(raw, "FR") == expected


def test_national_form_of_each_french_number() -> None:
    assert national_form("+596596301234") == "0596301234"
    assert national_form("+508412345") == "0508412345"
    assert national_form("+33162000000") == "0162000000"
    assert national_form("+442079460000") is None


@pytest.mark.parametrize(("raw", "reason"), [
    ("08 91 12 34 56", "premium-rate"), ("0899 12 34 56", "premium-rate"),
    ("0884 01 23 45", "shared-cost"), ("0806 12 34 56", "special service"),
    ("0800 12 34 56", "toll-free"), ("3644", "short number"), ("112", "short number")])
def test_premium_rate_special_and_short_numbers_are_rejected(raw: str, reason: str) -> None:
    with pytest.raises(NumberRejected, match=reason) as info:
        parse_callee(raw, "FR")
    assert "\n" not in str(info.value) and info.value.reason == str(info.value)


@pytest.mark.parametrize(("raw", "territory"), [
    ("0596 12 34 56", "Martinique"), ("+33 5 96 12 34 56", "Martinique"),
    ("0263 17 12 34", "Réunion"), ("0269 05 12 34", "Mayotte"),
    ("0508 01 23 45", "Saint-Pierre-et-Miquelon")])
def test_an_overseas_block_the_data_does_not_know_is_refused_not_read_as_mainland(
        raw: str, territory: str) -> None:
    """phonenumbers read these as mainland 05/02 lines, called on Paris's clock: 04:00-05:00
    in Martinique; the same territory's known blocks still move to its own code."""
    with pytest.raises(NumberRejected, match=f"^{territory} number .* its local time cannot be "
                       "told, so it is not called") as info:
        parse_callee(raw, "FR")
    assert "\n" not in str(info.value)
    assert parse_callee("0596 30 12 34", "FR") == "+596596301234"


@pytest.mark.parametrize(("raw", "country"), [
    ("+44 20 7946 0000", "GB"), ("+1 415 555 2671", "US"), ("0032 2 555 12 12", "BE")])
def test_foreign_numbers_are_rejected_unless_their_country_is_allowed(raw: str, country: str) -> None:
    with pytest.raises(NumberRejected, match=f"add {country} to contacts.allow_countries"):
        parse_callee(raw, "FR")
    assert parse_callee(raw, "FR", frozenset({country})).startswith("+")
    with pytest.raises(NumberRejected, match="foreign number"):
        parse_callee(raw, "FR", frozenset({"DE"}))  # another country does not open this one


@pytest.mark.parametrize("raw", [
    "0612345678,1", "0612345678;ext=12", "06 12 34 56 78 x12", "0612345678#", "0612345678;",
    "+33612345678 ext. 5", "0612345678p1"])
def test_a_suffix_or_extension_is_rejected_not_dropped(raw: str) -> None:
    with pytest.raises(NumberRejected, match="trailing characters after the number"):
        parse_callee(raw, "FR")


@pytest.mark.parametrize("raw", ["hello", "", "06 12", "+33 1 99", "++33612345678"])
def test_what_is_not_a_number_is_rejected(raw: str) -> None:
    with pytest.raises(NumberRejected, match="not a valid phone number"):
        parse_callee(raw, "FR")


def test_number_rejected_is_a_value_error() -> None:
    assert issubclass(NumberRejected, ValueError)


def test_e164_stays_permissive_for_lookups() -> None:
    assert e164("0612345678,1", "FR") == "+33612345678"  # lookups accept what imports refuse
    assert e164("hello", "FR") is None and e164("0594 70 00 00", "FR") is None


def test_known_regions() -> None:
    assert is_known_region("FR") and is_known_region("gb") and is_known_region("RE")
    assert not is_known_region("ZZ") and not is_known_region("XX") and not is_known_region("001")


@pytest.mark.parametrize(("raw", "expected"), ACCEPTED)
def test_an_opposition_is_read_from_any_unambiguous_writing(raw: str, expected: str) -> None:
    assert opposition_number(raw, "FR") == expected


@pytest.mark.parametrize(("raw", "reason"), REFUSED)
def test_an_opposition_is_refused_with_why_when_the_number_is_not_one(raw: str,
                                                                       reason: str) -> None:
    with pytest.raises(NumberRejected) as info:
        opposition_number(raw, "FR")
    assert reason in info.value.reason and "\n" not in info.value.reason


@pytest.mark.parametrize("raw", ["+33612345678\u200b", "\u200e+33 6 12 34 56 78",
                                 "06 12 34 56 78\u200f", "\ufeff06 12 34 56 78",
                                 "06\u00ad12 34 56 78"])  # soft hyphen, also Cf
def test_a_contact_number_loses_copy_pastes_invisible_characters(raw: str) -> None:
    assert parse_callee(raw, "FR") == "+33612345678"


@pytest.mark.parametrize("raw", ["(+33) 6 12 34 56 78", "tel:+33612345678",
                                 "Tél. 06 12 34 56 78", "'0612345678"])
def test_a_contact_number_keeps_the_strict_rule(raw: str) -> None:
    with pytest.raises(NumberRejected):  # a list to call is not read leniently
        parse_callee(raw, "FR")
