"""The console's erasure: the leftover scan on SQLite reads only the rows holding the number's
text (fast over a big store), and still finds exactly the places a full read finds."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ivr.records.privacy import gdpr_erase
from ivr.store import Store
from ivr.errors import IvrError

from conftest import add_contact

T = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
N = "+33612345678"


def test_leftover_scan_finds_every_place_and_only_whole_numbers() -> None:
    s = Store.memory()
    add_contact(s, N, at=T)
    add_contact(s, N + "9", at=T)  # a longer number: not the same person
    s.add_user(f"leak {N}", "viewer", "h", T)  # a number where no erasure rule expects one
    assert s.places_holding(N) == ["contacts.number", "audit.detail", "users.name"]
    assert s.places_holding(N + "9") == ["contacts.number"]
    assert s.places_holding(N[:-1]) == []  # a prefix of both numbers is neither
    with pytest.raises(IvrError, match="users.name"):
        gdpr_erase(s, N, T)
    assert s.places_holding(N) == ["contacts.number", "audit.detail", "users.name"]  # kept
    assert gdpr_erase(s, N + "9", T)["contacts"] == 1
    assert s.places_holding(N + "9") == []
