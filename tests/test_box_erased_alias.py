"""An overseas 09 box's opposition given in its regional form (+590 9 47…, as releases before
box forms were unified kept it) and then erased keeps only its keyed hash: the open's rewrite
to +33 9… (store/box_lines.py) cannot recompute it, so the box's contact, stored +33 9 47…, was
called after objecting. Now the contact's own forms are hashed: migration 20 keeps such an
opposition under the +33 form too, and so does each contact written later (an import). Both
backends; a mainland 09 line and a kept opposition are left as they were."""
from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import Backend, add_contact, contact
from ivr.store.schema import MIGRATIONS
from ivr.records.contacts import import_csv
from ivr.store import Store
from ivr.store.box_lines import may_be_box

NOW = datetime(2026, 12, 1, 9, 5, tzinfo=timezone.utc)
BOX, REGIONAL = "+33947501234", "+590947501234"
MAINLAND = "+33912345678"  # a mainland 09 line: one form


@pytest.fixture
def keyed(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """`backend` with a real opposition key (the key beside a store takes fiction numbers)."""
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    backend.key = b"k" * 32
    yield backend


def erased_old_optout(store: Any, number: str) -> None:
    """What an older release left of an opposition given as `number` and then erased."""
    store.db.execute("INSERT INTO optouts (number_hash, number, via, created_at) "
                     "VALUES (?, NULL, 'post', ?)", (store.number_hash(number), "2026-11-01"))


def back_to_19(store: Any, backend: Backend) -> None:
    if backend.url is None:
        store.db.execute("PRAGMA user_version = 19")
        store.db.conn.close()
    else:
        store.db.execute("DELETE FROM schema_version WHERE version >= 20")


def test_the_upgrade_keeps_an_erased_regional_opposition_under_the_box_contact(
        keyed: Backend) -> None:
    s = keyed.open()
    add_contact(s, BOX, at=NOW)
    add_contact(s, MAINLAND, at=NOW)
    erased_old_optout(s, REGIONAL)
    erased_old_optout(s, "+33612345678")  # another erased opposition, no box
    assert not s.is_opted_out(BOX)  # what a store upgraded to 19 did: the box called
    back_to_19(s, keyed)
    again = keyed.open()
    assert again.version == len(MIGRATIONS)
    assert again.is_opted_out(BOX) and contact(again, BOX)["status"] == "opted_out"
    assert not again.is_opted_out(MAINLAND) and contact(again, MAINLAND)["status"] == "pending"
    alias = again.one("SELECT number, via, created_at FROM optouts WHERE number_hash = ?",
                      (again.number_hash(BOX),))
    assert alias == {"number": None, "via": "post", "created_at": "2026-11-01"}  # no number
    assert len(again.q("SELECT 1 FROM optouts")) == 3


def test_a_regional_contact_rewritten_at_the_upgrade_is_opposed_too(keyed: Backend) -> None:
    s = keyed.open()
    s.db.execute("INSERT INTO contacts (number, source, created_at, updated_at) VALUES "
                 "(?, 'list', '2026-11-01', '2026-11-01')", (REGIONAL,))  # an old release's
    erased_old_optout(s, REGIONAL)
    back_to_19(s, keyed)
    again = keyed.open()  # migration 20, then the open's rewrite to +33 9…
    assert [r["number"] for r in again.q("SELECT number FROM contacts")] == [BOX]
    assert again.is_opted_out(BOX)


def test_a_box_imported_after_the_upgrade_is_on_the_list(store: Store, tmp_path: Path) -> None:
    erased_old_optout(store, REGIONAL)
    csv = tmp_path / "list.csv"
    csv.write_text("number\n09 47 50 12 34\n09 12 34 56 78\n", encoding="utf-8")
    import_csv(store, csv, campaign="c1", source="a", basis="member_file", acquired_on=None,
               default_region="FR", now=NOW)
    assert store.is_opted_out(BOX) and contact(store, BOX)["status"] == "opted_out"
    assert store.one("SELECT b.status FROM campaign_contacts b JOIN contacts k ON "
                     "k.id = b.contact_id WHERE k.number = ?", (BOX,))["status"] == "opted_out"
    assert not store.is_opted_out(MAINLAND) and contact(store, MAINLAND)["status"] == "pending"


def test_the_box_test_is_cheap_and_misses_no_box() -> None:
    numbers = [f"+339{n:08d}" for n in range(0, 10**8, 9973)]
    started = time.perf_counter()
    boxes = [n for n in numbers if may_be_box(n)]
    assert time.perf_counter() - started < 0.5  # ~2 µs per number (box_forms: ~500 µs)
    assert may_be_box(BOX) and may_be_box(REGIONAL) and not may_be_box(MAINLAND)
    assert not may_be_box("+33612345678") and boxes
