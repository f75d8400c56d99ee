"""An overseas 09 box is one line, one E.164, whatever form it was written in.

A Guadeloupe box written 09 47 50 12 34 was stored as +33 9 47 50 12 34, but the same line
written +590 9 47 50 12 34 stayed +590 9 47 50 12 34: an objection given in one form (`ivr optout
add`, the console, the callback line's caller ID) missed the contact imported in the other (the
person was called after objecting), and both forms imported were two contacts (twice the
attempts). Now every form gives +33 9…, and rows an older release wrote in the regional form are
given it at open (store/box_lines.py), both backends."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import Backend, add_contact
from ivr.numbers import e164, parse_callee
from ivr.opposition_input import opposition_number
from ivr.records.contacts import import_csv
from ivr.records.privacy import gdpr_erase
from ivr.store import Store

NOW = datetime(2026, 12, 1, 9, 5, tzinfo=timezone.utc)
BOX, REGIONAL = "+33947501234", "+590947501234"


def test_an_objection_in_the_regional_form_matches_the_box_contact(store: Store) -> None:
    add_contact(store, parse_callee("09 47 50 12 34", "FR"), at=NOW)
    store.add_optout(opposition_number("+590 9 47 50 12 34", "FR"), "post", NOW)
    assert store.is_opted_out(BOX)
    # the callback line's caller ID, as a carrier may present it (without its '+')
    assert e164("+590947501234", "FR") == BOX == opposition_number("590947501234", "FR")


def test_both_forms_imported_are_one_contact(store: Store, tmp_path: Path) -> None:
    csv = tmp_path / "list.csv"
    csv.write_text("number\n09 47 50 12 34\n+590 9 47 50 12 34\n", encoding="utf-8")
    import_csv(store, csv, campaign="c1", source="a", basis="member_file", acquired_on=None,
               default_region="FR", now=NOW)
    assert [r["number"] for r in store.q("SELECT number FROM contacts")] == [BOX]


@pytest.fixture
def keyed(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """`backend` with a real opposition key (the key beside a store takes fiction numbers)."""
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    backend.key = b"k" * 32
    yield backend


def _old_optout(store: Any, number: str) -> None:
    """An opposition as an older release wrote it: the regional form, hashed as given."""
    store.db.execute("INSERT INTO optouts (number_hash, number, via, created_at) "
                     "VALUES (?, ?, 'post', ?)", (store.number_hash(number), number, "2026-11-01"))


def _rows(store: Any, table: str) -> list[str]:
    return sorted(str(r["number"]) for r in store.q(f"SELECT number FROM {table}")
                  if r["number"] is not None)


def test_old_rows_get_the_plus_33_form_at_open(keyed: Backend) -> None:
    """A contact, its calls and consents, and an opposition of a contact imported as +33:
    rewritten once, the opposition's hash with the store's key; a second open changes nothing."""
    old = keyed.open()
    c = add_contact(old, REGIONAL, at=NOW)
    old.db["calls"].insert({"contact_id": c["id"], "number": REGIONAL, "attempt": 1,
                            "campaign": "c1", "started_at": "2026-11-20T10:00:00+00:00"})
    old.db["consents"].insert({"contact_id": c["id"], "number": REGIONAL, "kind": "refusal",
                               "at": "2026-11-20T10:01:00+00:00"})
    add_contact(old, "+33976012345", at=NOW)  # imported as 09 76 01 23 45
    _old_optout(old, "+590976012345")  # objected as +590 9 76 01 23 45
    old.audit("gdpr_export", REGIONAL, {}, NOW)

    again = keyed.open()
    assert _rows(again, "contacts") == ["+33947501234", "+33976012345"]
    assert _rows(again, "calls") == _rows(again, "consents") == [BOX]
    assert _rows(again, "optouts") == ["+33976012345"]
    assert again.is_opted_out("+33976012345")
    assert again.q("SELECT count(*) AS n FROM audit WHERE subject_hash = ?",
                   (again.number_hash(BOX),))[0]["n"] == 1
    assert len(again.q("SELECT id FROM audit WHERE action = 'numbers_canonical'")) == 1
    third = keyed.open()
    assert len(third.q("SELECT id FROM audit WHERE action = 'numbers_canonical'")) == 1
    assert _rows(third, "optouts") == ["+33976012345"]


def test_both_forms_held_stay_apart_and_an_objection_of_either_matches_both(
        keyed: Backend) -> None:
    old = keyed.open()
    for number in (REGIONAL, BOX, "+590947501235", "+33947501235"):
        add_contact(old, number, at=NOW)
    _old_optout(old, REGIONAL)

    again = keyed.open()
    assert len(_rows(again, "contacts")) == 4  # nothing merged
    assert again.is_opted_out(REGIONAL) and again.is_opted_out(BOX)
    assert not again.is_opted_out("+33947501235")
    again.add_optout("+33947501235", "post", NOW)  # later, under one form
    assert again.is_opted_out("+590947501235")
    assert {r["status"] for r in again.q("SELECT status FROM contacts")} == {"opted_out"}
    # an alias holds no number: an erasure of the line leaves no copy of it
    assert _rows(again, "optouts") == ["+33947501235", REGIONAL]


def test_an_erasure_of_the_line_erases_both_forms_kept_apart(keyed: Backend) -> None:
    """Two contacts of one box kept apart (both forms held): erasing either form erases both;
    the opposition stays, as a hash under each form."""
    old = keyed.open()
    add_contact(old, REGIONAL, at=NOW, name="Old form")
    add_contact(old, BOX, at=NOW, name="New form")
    _old_optout(old, REGIONAL)
    again = keyed.open()
    counts = gdpr_erase(again, "+33947501234", NOW)
    assert counts["contacts"] == 2 and counts["opposition_kept"]
    assert _rows(again, "contacts") == _rows(again, "optouts") == []
    assert again.is_opted_out(REGIONAL) and again.is_opted_out(BOX)


def test_both_forms_held_are_not_reported_again_at_every_open(keyed: Backend) -> None:
    """Found in review: the pair kept apart was found again at each open, and each open wrote
    a numbers_canonical audit row and a warning (every CLI command, every console thread)."""
    old = keyed.open()
    for number in (REGIONAL, BOX):
        add_contact(old, number, at=NOW)
    _old_optout(old, REGIONAL)
    keyed.open()
    first = keyed.open().q("SELECT id FROM audit WHERE action = 'numbers_canonical'")
    for _ in range(3):
        later = keyed.open()
    assert later.q("SELECT id FROM audit WHERE action = 'numbers_canonical'") == first
    assert len(first) <= 1


def test_the_export_of_the_line_shows_both_forms_kept_apart(keyed: Backend) -> None:
    """Found in review: the erasure clears every form of the line, the access request showed
    one: the +590 contact and its call were in no export, by the CLI nor the console (both
    read the number as its +33 9 form)."""
    from conftest import TEST_CAMPAIGNS, attempt
    from ivr.records.privacy import campaigns_of, consent_proof, gdpr_export
    from ivr.store.base import CallResult
    old = keyed.open()
    add_contact(old, REGIONAL, at=NOW, name="Old form")
    add_contact(old, BOX, at=NOW, name="New form")
    _old_optout(old, REGIONAL)
    again = keyed.open()
    regional = again.one("SELECT * FROM contacts WHERE number = ?", (REGIONAL,))
    call = attempt(again, regional, "c1", "+33162000000", NOW)
    again.finish_answered(call["id"], CallResult(outcome="declined", stage="goodbye", keys="2",
                                                 heard={}, choice="refusal", choice_key="2"),
                          NOW)
    data = gdpr_export(again, BOX, NOW)
    assert sorted(r["number"] for r in data["contacts"]) == [BOX, REGIONAL]
    assert [r["id"] for r in data["calls"]] == [call["id"]]
    assert [r["kind"] for r in data["consents"]] == ["refusal"]
    assert [r["kind"] for r in consent_proof(again, BOX) if r["source"] == "call"] == ["refusal"]
    bound = [r["campaign"] for r in again.q("SELECT campaign FROM campaign_contacts")]
    assert sorted(r["campaign"] for r in campaigns_of(again, BOX)) == sorted(bound)
    assert len(bound) == 2 * len(TEST_CAMPAIGNS)  # each form's contact bound to each
