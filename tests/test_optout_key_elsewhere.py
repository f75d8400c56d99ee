"""A store that has its opposition key never gets a new one, beside it or at a named path.

Found in review (a data-loss trap): the operator moved the key out of the store's folder and
named it in prod.yaml; one command run with the default config.yaml made a NEW random key beside
the store, then said to move "ivr.db.optout-key" out and name it: doing so over the real key
left a store that refused every key, and the only way on was a new key forgetting every
opposition. Likewise a named key file that did not exist was made for a store with its key.
Now such a store is refused, nothing is written, and "move it" is said only of its own key.
"""
from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from conftest import Backend, make_config, shipped_config
from ivr.app import open_store
from ivr.cli import cli
from ivr.errors import StoreError
from ivr.store import Store

FICTION, OPPOSED, REAL = "+33199000010", "+33199000020", "0612345678"
T0 = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
NEW_KEY_WOULD_FORGET = "(a new key would forget every opposition)"


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IVR_OPTOUT_KEY", raising=False)


def ivr(cfg: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--config", str(cfg), *args])
    return result.exit_code, result.output


def fingerprints(db: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, fingerprint FROM optout_key").fetchall()


def demo_store(tmp_path: Path) -> tuple[Path, Path]:
    """The shipped config (no optout_key_file) and a store holding one fiction contact, keyed
    beside it; real.csv ready to import. (config.yaml, its store file)"""
    db = tmp_path / "data" / "ivr.db"
    cfg = shipped_config(tmp_path, {"path": str(db)})
    (tmp_path / "demo.csv").write_text(f"number\n{FICTION}\n")
    (tmp_path / "real.csv").write_text(f"number\n{REAL}\n")
    assert ivr(cfg, "contacts", "import", str(tmp_path / "demo.csv"), "--source", "a",
               "--basis", "consent")[0] == 0
    return cfg, db


@pytest.fixture
def demo(tmp_path: Path) -> tuple[Path, Path]:
    """The repro's start: the shipped config (no optout_key_file), a fiction contact and an
    opposition written with the key beside the store. (config.yaml, its store file)"""
    cfg, db = demo_store(tmp_path)
    assert ivr(cfg, "optout", "add", OPPOSED, "--via", "post")[0] == 0
    assert (db.parent / "ivr.db.optout-key").exists()
    return cfg, db


def prod(cfg: Path, key: Path) -> Path:
    """The operator's prod.yaml: config.yaml naming the key file."""
    data = yaml.safe_load(cfg.read_text())
    data["store"]["optout_key_file"] = str(key)
    out = cfg.with_name("prod.yaml")
    out.write_text(yaml.safe_dump(data, allow_unicode=True))
    return out


def test_the_repro_sequence_never_makes_a_key_for_a_store_that_has_one(
        demo: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, db = demo
    side, secrets = db.parent / "ivr.db.optout-key", tmp_path / "secrets"
    secrets.mkdir()
    key = secrets / "optout.key"
    real_csv = str(tmp_path / "real.csv")
    # 1. a real number, the key beside the store: refused, naming the store's key to move.
    code, out = ivr(cfg, "contacts", "import", real_csv, "--source", "r", "--basis", "consent")
    assert code != 0
    assert ("set IVR_OPTOUT_KEY or store.optout_key_file first, to this store's key: move "
            "ivr.db.optout-key outside the store's folder") in out
    # 2. the operator moves it out and names it in prod.yaml: the real number comes in.
    side.rename(key)
    saved, recorded = key.read_text(), fingerprints(db)
    code, out = ivr(prod(cfg, key), "contacts", "import", real_csv, "--source", "r",
                    "--basis", "consent")
    assert code == 0 and "1 added" in out, out
    # 3. one command with the default config.yaml: refused; no key made, nothing to move.
    code, out = ivr(cfg, "report")
    assert code != 0
    assert (f"was written with an opposition key that is not where this config looks "
            f"({side}: no such file, no store.optout_key_file): name that key's file in "
            "store.optout_key_file, or set IVR_OPTOUT_KEY") in out
    assert "move" not in out and NEW_KEY_WOULD_FORGET in out
    assert not side.exists()
    assert key.read_text() == saved and fingerprints(db) == recorded
    # 4. the store's key is where it was: prod.yaml still opens the store, opposition kept.
    code, out = ivr(prod(cfg, key), "report")
    assert code == 0, out
    assert Store.open(db, optout_key_file=key).is_opted_out(OPPOSED)


def test_a_stray_key_beside_a_store_whose_key_is_elsewhere_is_not_its_key(
        demo: tuple[Path, Path], tmp_path: Path) -> None:
    """A key file beside the store that is not its key (left by an older version's step 3)
    is neither taken nor named as the key to move out."""
    _, db = demo
    side = db.parent / "ivr.db.optout-key"
    key = tmp_path / "optout.key"
    side.rename(key)
    side.write_text("a" * 64)
    recorded = fingerprints(db)
    with pytest.raises(StoreError) as exc:
        Store.open(db)
    message = str(exc.value)
    assert f"({side}: another key, no store.optout_key_file)" in message
    assert "move" not in message and "\n" not in message
    assert side.read_text() == "a" * 64 and fingerprints(db) == recorded
    assert Store.open(db, optout_key_file=key).is_opted_out(OPPOSED)


def test_a_named_key_file_that_does_not_exist_is_not_made_for_a_store_with_its_key(
        demo: tuple[Path, Path], tmp_path: Path) -> None:
    """Step 1's refusal followed by naming a new path (not moving the key): refused, nothing
    made, and the way given is to move the store's own key (beside it) there."""
    _, db = demo
    side, named = db.parent / "ivr.db.optout-key", tmp_path / "secrets" / "optout.key"
    named.parent.mkdir()
    recorded = fingerprints(db)
    with pytest.raises(StoreError) as exc:
        Store.open(db, optout_key_file=named)
    assert (f"({named}: no such file): its key is ivr.db.optout-key beside it: move that "
            f"file to {named}, or set IVR_OPTOUT_KEY to its content") in str(exc.value)
    assert not named.exists() and fingerprints(db) == recorded
    side.rename(named)  # as told
    store = Store.open(db, optout_key_file=named)
    assert store.is_opted_out(OPPOSED)
    store.db.conn.close()
    # Its key elsewhere now, another missing path: refused, nothing beside it to move.
    other = tmp_path / "secrets" / "other.key"
    with pytest.raises(StoreError) as exc:
        Store.open(db, optout_key_file=other)
    assert f"({other}: no such file): name that key's file" in str(exc.value)
    assert "move" not in str(exc.value)
    assert not other.exists() and not side.exists() and fingerprints(db) == recorded


def test_a_store_with_oppositions_and_no_fingerprint_gets_no_new_key(tmp_path: Path) -> None:
    """A store from before the fingerprint (schema 15) that holds oppositions has its key."""
    db = tmp_path / "data" / "ivr.db"
    store = Store.open(db, optout_key=b"k" * 32)
    store.add_optout(OPPOSED, "post", T0)
    store.db.execute("DELETE FROM optout_key")
    store.db.conn.close()
    named = tmp_path / "keys" / "optout.key"
    named.parent.mkdir()
    with pytest.raises(StoreError, match="no such file"):
        Store.open(db, optout_key_file=named)
    with pytest.raises(StoreError, match="no such file"):
        Store.open(db)
    assert not named.exists() and not (db.parent / "ivr.db.optout-key").exists()
    assert fingerprints(db) == []


def test_a_new_store_still_gets_its_key_file(tmp_path: Path) -> None:
    """No fingerprint, no opposition: the key file is made (0600), beside or named."""
    Store.open(tmp_path / "a" / "ivr.db").db.conn.close()
    assert (tmp_path / "a" / "ivr.db.optout-key").stat().st_mode & 0o777 == 0o600
    named = tmp_path / "keys" / "optout.key"
    named.parent.mkdir()
    Store.open(tmp_path / "b" / "ivr.db", optout_key_file=named).db.conn.close()
    assert named.stat().st_mode & 0o777 == 0o600
    assert len(fingerprints(tmp_path / "b" / "ivr.db")) == 1


def test_either_backend_makes_no_key_file_for_a_store_that_has_its_key(
        backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> None:
    """PostgreSQL refused this already (pg.py _key_for); both are held to it."""
    first = backend.open()
    first.add_optout(OPPOSED, "post", T0)
    before = first.one("SELECT fingerprint FROM optout_key WHERE id = 1")
    missing = tmp_path_factory.mktemp("secrets") / "optout.key"  # outside the store's folder
    cfg = make_config(backend.home, store={**backend.section(), "optout_key_file": str(missing)})
    with pytest.raises(StoreError) as exc:
        open_store(cfg)
    assert NEW_KEY_WOULD_FORGET in str(exc.value) and "\n" not in str(exc.value)
    assert not missing.exists()
    assert first.one("SELECT fingerprint FROM optout_key WHERE id = 1") == before
    assert first.is_opted_out(OPPOSED)


def test_a_demo_store_with_no_opposition_gets_its_new_named_key_file(
        tmp_path: Path) -> None:
    """Found in review: a demo store (fingerprint: the key beside it, no opposition yet) named
    a new store.optout_key_file was refused, asked to move the demo key there, while
    IVR_OPTOUT_KEY set to a fresh key was taken. The README: the file is "created 0600 if
    absent" and a demo store takes the real key while it holds no opposition."""
    cfg, db = demo_store(tmp_path)
    demo_print = fingerprints(db)
    code, out = ivr(cfg, "contacts", "import", str(tmp_path / "real.csv"), "--source", "r",
                    "--basis", "consent")
    assert code != 0 and "is a real number" in out
    key = tmp_path / "secrets" / "optout.key"
    key.parent.mkdir()
    code, out = ivr(prod(cfg, key), "contacts", "import", str(tmp_path / "real.csv"),
                    "--source", "r", "--basis", "consent")
    assert code == 0 and "1 added" in out, out
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_text().strip()) == 64
    assert fingerprints(db) != demo_print and len(fingerprints(db)) == 1
    store = Store.open(db, optout_key_file=key)  # the store's key now
    store.add_optout(REAL, "post", T0)
    assert store.is_opted_out(REAL)
