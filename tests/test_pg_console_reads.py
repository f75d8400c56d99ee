"""The console's contacts pages and campaign names on both backends: the unfiltered page is
counted in the bindings' index alone and joined afterwards on PostgreSQL, the names walked
through the campaign indexes; both give what the plain listing gives."""
from __future__ import annotations

from datetime import datetime, timezone

from conftest import add_contact, attempt, CALLER_ID
from ivr.store import Store

T = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)


def test_unfiltered_pages_walk_one_campaigns_bindings_in_contact_order(store: Store) -> None:
    for i in range(30):  # two campaigns interleaved, one opposed number, two lists
        add_contact(store, f"+331990000{i:02d}", at=T, source=f"l{i % 2}",
                    campaigns=("a", "b") if i % 3 else ("b",),
                    status="opted_out" if i == 4 else "pending")
    whole = store.contacts_page("a", limit=1000)
    assert [r["number"][-2:] for r in whole] == [f"{i:02d}" for i in range(30) if i % 3]
    assert [r["status"] for r in whole].count("opted_out") == 1
    pages = [r for offset in range(0, 25, 7) for r in store.contacts_page("a", limit=7,
                                                                         offset=offset)]
    assert pages == whole
    assert len(whole) == 20 and store.contacts_page("a", limit=5, offset=20) == []
    assert store.contacts_page("b", limit=3, offset=28) == store.contacts_page("b")[28:]
    assert store.contacts_page("a", source="l0") == [r for r in whole if r["source"] == "l0"]


def test_campaign_names_come_from_bindings_calls_and_run_control(store: Store) -> None:
    assert store.campaigns() == []
    k = add_contact(store, "+33199000001", at=T, campaigns=("Zed", "alpha", "Alpha"))
    for name in ("called-b", "called-a", "called-b", "alpha"):
        attempt(store, k, name, CALLER_ID, T)
    store.set_run_control("run-only", by=None, now=T)
    assert store.campaigns() == ["Alpha", "Zed", "alpha", "called-a", "called-b", "run-only"]
