"""Issue 16 item 5: an erased number cannot be recovered. The opposition key is not kept beside
a store of real numbers; no keyed hash of a person who never objected; after an erasure the
number's bytes are in neither the store file nor its WAL."""
from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import make_config
from ivr.app import open_store
from ivr.errors import StoreError
from ivr.records.privacy import gdpr_erase, optout_add
from ivr.store import CallResult, Store

T0 = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
REAL, OTHER, FICTION = "+33612345678", "+33612345679", "+33199000010"


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IVR_OPTOUT_KEY", raising=False)


def seed(store: Store, number: str) -> None:
    store.add_contact(number, name="Alice", timezone=None, source="s", basis="consent",
                      acquired_on="2026-01-01", extra="{}", status="pending", now=T0)


def test_the_key_beside_the_store_is_for_fiction_numbers_only(tmp_path: Path) -> None:
    db = tmp_path / "ivr.db"
    store = Store.open(db)
    seed(store, FICTION)  # the demo and the tests
    with pytest.raises(StoreError, match="IVR_OPTOUT_KEY or store.optout_key_file"):
        seed(store, REAL)
    with pytest.raises(StoreError, match="IVR_OPTOUT_KEY"):
        store.add_optout(REAL, "post", T0)
    store.db.conn.close()
    # A store that holds a real number (written before this rule) refuses to open with it.
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE contacts SET number = ?", (REAL,))
    with pytest.raises(StoreError) as exc:
        Store.open(db)
    message = str(exc.value)
    assert "IVR_OPTOUT_KEY" in message and "store.optout_key_file" in message
    assert "ivr.db.optout-key" in message and "\n" not in message


def test_the_env_key_or_a_key_file_outside_the_folder_opens_real_numbers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "secrets").mkdir()
    cfg = make_config(tmp_path, store={"path": "data/ivr.db",
                                       "optout_key_file": "secrets/optout.key"})
    store = open_store(cfg)
    seed(store, REAL)
    assert (tmp_path / "secrets/optout.key").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "data/ivr.db.optout-key").exists()
    inside = make_config(tmp_path, store={"path": "data/ivr.db",
                                          "optout_key_file": "data/optout.key"})
    with pytest.raises(StoreError, match="is in the store's folder"):
        open_store(inside)
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    seed(Store.open(tmp_path / "other.db"), REAL)


def test_no_hash_of_someone_who_never_objected(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "ivr.db", optout_key=b"k")
    seed(store, REAL)
    store.audit("gdpr_export", REAL, {"contacts": 1}, T0)  # an access request before
    optout_add(store, OTHER, "post", T0, "FR")
    gdpr_erase(store, REAL, T0)
    gdpr_erase(store, OTHER, T0)
    hashes = {r["action"]: r["subject_hash"] for r in store.q(
        "SELECT action, subject_hash FROM audit WHERE action != 'gdpr_erase'")}
    assert hashes["gdpr_export"] is None
    erasures = store.q("SELECT subject_hash FROM audit WHERE action = 'gdpr_erase' ORDER BY id")
    assert [r["subject_hash"] for r in erasures] == [None, store.number_hash(OTHER)]
    store.db.conn.close()
    blob = (tmp_path / "ivr.db").read_bytes()
    assert store.number_hash(REAL).encode() not in blob
    assert store.number_hash(OTHER).encode() in blob  # the objection survives


def _forms(number: str) -> list[bytes]:
    return [number.encode(), number[1:].encode(), number.encode("utf-16-le")]


def test_after_erasure_the_number_is_in_neither_the_file_nor_its_wal(tmp_path: Path) -> None:
    db = tmp_path / "ivr.db"
    store = Store.open(db, optout_key=b"k")
    seed(store, REAL)
    seed(store, OTHER)
    row = store.contacts_by_number([REAL])[REAL]
    call = store.claim_attempt(row, campaign="c", caller_id="+33162000000", node="n", now=T0,
                               attempts_since=T0, refusals_since=T0,
                               judge=lambda h: type("D", (), {"allowed": True})()).call
    assert call is not None
    store.finish_answered(call["id"], CallResult(outcome="declined", stage="legal", keys="2",
                                                 heard={"intro": "a" * 64}, choice="refusal",
                                                 choice_key="2"), T0)
    wal = Path(f"{db}-wal")
    assert any(f in db.read_bytes() + wal.read_bytes() for f in _forms(REAL))
    counts = gdpr_erase(store, REAL, T0)
    assert counts["wal_checkpointed"] is True
    for path in (db, wal):
        data = path.read_bytes() if path.exists() else b""
        assert not any(f in data for f in _forms(REAL)), path
    assert OTHER.encode() in db.read_bytes()  # the scan can find what is there


def test_an_erasure_says_when_another_process_keeps_the_wal(tmp_path: Path) -> None:
    db = tmp_path / "ivr.db"
    store = Store.open(db, optout_key=b"k", busy_timeout_s=0.05)
    seed(store, REAL)
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM contacts").fetchone()  # an open read, as a run's
    try:
        assert gdpr_erase(store, REAL, T0)["wal_checkpointed"] is False
    finally:
        reader.execute("COMMIT")
        reader.close()
    assert store.checkpoint_wal() is True
