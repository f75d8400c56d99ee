"""Caller ID: ARCEP décision 2022-1583 ranges for automated calls, errors everywhere else."""
from __future__ import annotations

import pytest

from ivr import config
from ivr.compliance.preflight import ERROR, SAAM_PREFIXES, check_caller_id, preflight, raise_on_errors
from ivr.errors import ComplianceError

MAINLAND = ["0162", "0163", "0270", "0271", "0377", "0378", "0424", "0425", "0568", "0569",
            "0948", "0949"]
OVERSEAS = ["09475", "09476", "09477", "09478", "09479"]


def pad(prefix: str) -> str:
    """A 10-digit national number starting with prefix."""
    return prefix + "1234567890"[: 10 - len(prefix)]


def test_saam_prefixes_are_exactly_the_arcep_ranges() -> None:
    assert sorted(SAAM_PREFIXES) == sorted(MAINLAND + OVERSEAS)


@pytest.mark.parametrize("prefix", MAINLAND + OVERSEAS)
def test_every_range_is_allowed_national_and_international(prefix: str) -> None:
    national = pad(prefix)
    assert check_caller_id(national) == []
    assert check_caller_id("+33" + national[1:]) == []


@pytest.mark.parametrize("caller_id", ["+590947501234", "+594947601234", "+596947701234",
                                       "+262947801234", "+262947901234"])
def test_overseas_ranges_written_with_their_own_country_code_are_allowed(caller_id: str) -> None:
    assert check_caller_id(caller_id) == []


@pytest.mark.parametrize("caller_id", [
    "0161234567", "0164234567", "0269123456", "0272123456", "0376123456", "0379123456",
    "0423123456", "0426123456", "0567123456", "0570123456",   # neighbours of each range
    "0947412345", "0947012345", "0950123456", "0937000000", "0947123456",  # other 09
    "0142000000", "0556123456", "0596301234", "0262161234",   # geographic, mainland and overseas
    "0891123456", "0800123456", "0806123456", "0884012345",   # 08
    "+12125551234", "+442079460000"])                          # foreign
def test_neighbours_geographic_09_08_and_foreign_are_errors(caller_id: str) -> None:
    found = check_caller_id(caller_id)
    assert [(v.code, v.severity) for v in found] == [("caller_id_range", ERROR)]
    message = found[0].message
    assert "campaign.caller_id" in message and "carrier assigned" in message and "01 62" in message
    assert "\n" not in message


@pytest.mark.parametrize("caller_id", ["0612345678", "0712345678", "0692123456", "0696201234",
                                       "+262692123456"])
def test_mobiles_are_errors(caller_id: str) -> None:
    found = check_caller_id(caller_id)
    assert [(v.code, v.severity) for v in found] == [("caller_id_mobile", ERROR)]


def test_an_out_of_range_caller_id_refuses_the_run() -> None:
    cfg = config.from_dict({"campaign": {"caller_id": "+33142000000"}})
    with pytest.raises(ComplianceError, match="campaign.caller_id"):
        raise_on_errors(preflight(cfg))
    raise_on_errors(preflight(config.from_dict({"campaign": {"caller_id": "+33162000000"}})))


def test_fiction_caller_id_is_allowed_for_fiction_numbers_only() -> None:
    assert check_caller_id("+33199000000") == []
    assert check_caller_id("01 99 00 00 00", callees=["+33199000010", "+33199009999"]) == []
    found = check_caller_id("+33199000000", callees=["+33199000010", "+33612345678"])
    assert [(v.code, v.severity) for v in found] == [("caller_id_fiction", ERROR)]
    assert "+33612345678" in found[0].message and "campaign.caller_id" in found[0].message
    # Only the fiction block: its neighbours are plain geographic numbers.
    assert [v.code for v in check_caller_id("+33199010000")] == ["caller_id_range"]


def test_preflight_passes_callees_to_the_caller_id_check() -> None:
    cfg = config.from_dict({"campaign": {"caller_id": "+33199000000"}})
    assert preflight(cfg, callees=["+33199000001"]) == []
    assert [v.code for v in preflight(cfg, callees=["+33612345678"])] == ["caller_id_fiction"]


@pytest.mark.parametrize("caller_id, region, codes", [
    ("0162000000", "RE", []), ("0947512345", "GP", []), ("0947512345", "RE", []),
    ("0612345678", "RE", ["caller_id_mobile"]), ("0147000000", "GP", ["caller_id_range"])])
def test_an_overseas_default_region_reads_the_caller_id_in_the_french_plan(
        caller_id: str, region: str, codes: list[str]) -> None:
    """Found in review: with default_region RE the ARCEP number 01 62 00 00 00 was refused as
    invalid, and with GP Guadeloupe's own 09 475 range too."""
    assert [v.code for v in check_caller_id(caller_id, region)] == codes
