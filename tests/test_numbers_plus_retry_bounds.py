"""The '+' retry of a number written without it is for international numbers (11 digits and
more): a 10-digit string without its leading 0 is still refused, and a headerless opposition
line's extra cell of bare digits (a customer id) is an opposition only when it reads as a
number of the French plan (33612345683, whose '+' a spreadsheet dropped), not a foreign one."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from ivr.numbers import NumberRejected, parse_callee
from ivr.opposition_input import opposition_number
from ivr.records.contacts import import_csv, import_optouts
from ivr.store import Store

from conftest import sqlite_only

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text", ["6618403320", "661 840 33 20", "6587864975"])
def test_ten_digits_without_a_leading_0_are_refused(text: str) -> None:
    with pytest.raises(NumberRejected, match="check the digits"):
        opposition_number(text, "FR")
    with pytest.raises(NumberRejected):
        parse_callee(text, "FR")


@pytest.mark.parametrize("text", ["262692123456", "33612345680", "12025550123"])
def test_eleven_digits_and_more_are_still_read_with_a_plus(text: str) -> None:
    assert opposition_number(text, "FR") == "+" + text


@sqlite_only
def test_a_customer_id_beside_a_number_is_not_an_opposition(
        store: Store, tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text("0612345678,12025550123,Dupont\n0612345679,1 202 555 0124\n"
                    "0612345680,+12025550125\n0612345681,0033612345682\n"
                    "0612345683,33612345684\n", encoding="utf-8")
    added, rejected = import_optouts(store, path, via="post", default_region="FR", now=NOW)
    assert rejected == []
    assert sorted(r["number"] for r in store.q("SELECT number FROM optouts")) == [
        "+12025550125", "+33612345678", "+33612345679", "+33612345680", "+33612345681",
        "+33612345682", "+33612345683", "+33612345684"]
    assert added == 8


@sqlite_only
def test_the_imports_refuse_ten_digits_without_a_leading_0(
        store: Store, tmp_path: Path) -> None:
    optouts = tmp_path / "o.csv"
    optouts.write_text("number\n6618403320\n0612345678\n", encoding="utf-8")
    added, rejected = import_optouts(store, optouts, via="post", default_region="FR", now=NOW)
    assert added == 1
    assert rejected == [(2, "'6618403320' is not a valid phone number: check the digits and the "
                            "country code")]
    contacts = tmp_path / "list.csv"
    contacts.write_text("number,name\n6618403320,X\n0612345678,Y\n", encoding="utf-8")
    report = import_csv(store, contacts, campaign="c1", source="L", basis="consent",
                        acquired_on="2026-01-01", default_region="FR", now=NOW)
    assert report.added == 1
    assert [line for line, _ in report.rejected] == [2]
