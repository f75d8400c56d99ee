"""Shared builders of the unit tests: configs, stores, contacts and a CLI config file.

Plain helpers are imported with `from conftest import ...`; `store` and `cfg_file` are fixtures.
(tests/integration has its own conftest for the sandbox PBX.)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from ivr import config
from ivr.store import Store, utc

REPO = Path(__file__).resolve().parents[1]
CALLER_ID = "+33162000000"  # in an ARCEP range for automated calls


def make_config(base_dir: Path = Path("."), **sections: Any) -> config.Config:
    """A Config from its sections, e.g. make_config(campaign={...}, schedule={...})."""
    return config.from_dict(sections, base_dir=base_dir)


def store_at(path: Path, busy_timeout_s: float = 0.05) -> Store:
    """A file store (WAL) with a fixed opposition key and a short lock wait."""
    return Store.open(path, optout_key=b"k", busy_timeout_s=busy_timeout_s)


# The campaign names the unit tests' configs use: a contact added by add_contact belongs to
# all of them unless the test names its campaigns (lists belong to campaigns, schema 5).
TEST_CAMPAIGNS = ("campaign", "c1", "demo", "utest", "demo-municipales-2026")


def add_contact(store: Store, number: str, *, at: datetime | str, source: str = "list",
                campaigns: tuple[str, ...] = TEST_CAMPAIGNS, **fields: Any) -> dict[str, Any]:
    """Insert one contact row as an import would leave it, bound to `campaigns`; `fields` sets
    any other column (name, timezone, basis, acquired_on, status, slot; extra as a dict)."""
    ts = at if isinstance(at, str) else utc(at)
    if isinstance(fields.get("extra"), dict):
        fields["extra"] = json.dumps(fields["extra"])
    row = {"number": number, "source": source, "created_at": ts, "updated_at": ts, **fields}
    store.db["contacts"].insert(row)  # sqlite-utils: columns from the dict, values bound
    found = contact(store, number)
    for name in campaigns:
        store.db["campaign_contacts"].insert({
            "contact_id": found["id"], "campaign": name, "source": source,
            "basis": fields.get("basis"), "acquired_on": fields.get("acquired_on"),
            "status": fields.get("status", "pending"), "bound_at": ts})
    return found


def contact(store: Store, number: str) -> dict[str, Any]:
    found = store.one("SELECT * FROM contacts WHERE number = ?", (number,))
    assert found is not None, number
    return found


@dataclass(frozen=True)
class _Allowed:
    allowed: bool = True


def attempt(store: Store, contact: dict[str, Any], campaign: str, caller_id: str,
            now: datetime, node: str = "node-test") -> dict[str, Any]:
    """An attempt written through claim_attempt with a judge that allows everything: for
    tests that build a history, not for the rules (planning.claim applies those)."""
    got = store.claim_attempt(contact, campaign=campaign, caller_id=caller_id, node=node,
                              now=now, attempts_since=now, refusals_since=now,
                              judge=lambda past: _Allowed())
    assert got.call is not None
    return got.call


def store_with(*numbers: str, at: datetime | str, **fields: Any) -> Store:
    """An in-memory store holding these contacts."""
    s = Store.memory()
    for n in numbers:
        add_contact(s, n, at=at, **fields)
    return s


@pytest.fixture
def store() -> Store:
    return Store.memory()


@pytest.fixture
def cfg_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped config.yaml with its store, prompts and key moved under tmp_path."""
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    data = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    data["store"] = {"path": str(tmp_path / "t.db")}
    data["prompts"]["sources_dir"] = str((REPO / "prompts").resolve())
    data["prompts"]["build_dir"] = str(tmp_path / "build")
    data["campaign"]["caller_id"] = CALLER_ID
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path
