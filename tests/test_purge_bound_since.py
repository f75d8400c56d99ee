"""Found in review: a purge deleted a contact campaign B imported (or shared) the day before,
because campaign A had imported the same number years ago: a number already stored only gets
B's campaign_contacts row, and the purge aged contacts by contacts.updated_at alone. B's list
lost it without a word. A binding made since the cutoff now keeps the contact, on both
backends."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from ivr.records.contacts import import_csv
from ivr.records.privacy import purge
from ivr.store import Store

OLD = datetime(2024, 1, 10, tzinfo=timezone.utc)
NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


def _import(store: Store, path: Path, campaign: str, numbers: list[str], at: datetime) -> None:
    path.write_text("number,name\n" + "".join(f"{n},P\n" for n in numbers))
    import_csv(store, path, campaign=campaign, source=f"list{campaign}", basis="consent",
               acquired_on=None, default_region="FR", now=at)


def test_a_number_bound_by_another_campaign_since_the_cutoff_stays(
        store: Store, tmp_path: Path) -> None:
    _import(store, tmp_path / "a.csv", "A", ["+33162000002", "+33162000004"], OLD)
    _import(store, tmp_path / "b.csv", "B", ["+33162000002", "+33162000003"],
            NOW - timedelta(days=1))
    counts = purge(store, timedelta(days=730), NOW)
    assert counts["contacts"] == 1  # A's other number, bound by nobody since
    left = {r["number"] for r in store.q("SELECT number FROM contacts")}
    assert left == {"+33162000002", "+33162000003"}
    assert {r["source"]: r["n"] for r in store.lists_of("B")} == {"listB": 2}
    bound = {(r["campaign"], r["number"]) for r in store.q(
        "SELECT b.campaign, k.number FROM campaign_contacts b JOIN contacts k "
        "ON k.id = b.contact_id")}
    assert ("A", "+33162000002") in bound and ("B", "+33162000002") in bound
