"""Found in review: campaigns share one contact row per number, and a later list only fills its
blanks. Campaign B's list gave America/Guadeloupe for a number campaign A had stored with
Europe/Paris: B's import said "merged", kept Paris time, and B's run judged the calling hours
in Paris, so that person was due at 05:30 their time. A line whose time zone contradicts the
stored one is now rejected, naming both zones, and nothing of it is written or bound; the
same zone, or none, merges as before. On both backends."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from ivr.records.contacts import import_csv
from ivr.store import Store

NOW = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)


def _import(store: Store, tmp_path: Path, campaign: str, lines: list[str]):  # type: ignore[no-untyped-def]
    path = tmp_path / f"{campaign}.csv"
    path.write_text("number,name,timezone\n" + "".join(f"{ln}\n" for ln in lines))
    return import_csv(store, path, campaign=campaign, source=f"list-{campaign}",
                      basis="consent", acquired_on="2026-01-01", default_region="FR", now=NOW)


def _bound(store: Store, campaign: str) -> set[str]:
    return {r["number"] for r in store.q(
        "SELECT k.number FROM campaign_contacts b JOIN contacts k ON k.id = b.contact_id "
        "WHERE b.campaign = :c", {"c": campaign})}


def test_a_time_zone_contradicting_the_stored_one_is_rejected(store: Store,
                                                              tmp_path: Path) -> None:
    _import(store, tmp_path, "camp-a", ["0612345601,Alice,Europe/Paris", "0612345602,Bob,"])
    report = _import(store, tmp_path, "camp-b", [
        "0612345601,Alice B,America/Guadeloupe",  # contradicts A's
        "0612345602,Bob B,America/Martinique",    # fills A's blank, as before
        "0612345603,Carla,Europe/Paris"])
    assert report.rejected == [(2, (
        "+33612345601 is already stored with time zone Europe/Paris (an earlier list); this "
        "file says America/Guadeloupe: a person has one, so correct the file, or leave its "
        "timezone empty to keep Europe/Paris"))]
    assert (report.added, report.merged, report.rejected_total) == (1, 1, 1)
    assert _bound(store, "camp-b") == {"+33612345602", "+33612345603"}
    zones = {r["number"]: r["timezone"] for r in store.q("SELECT number, timezone FROM contacts")}
    assert zones == {"+33612345601": "Europe/Paris", "+33612345602": "America/Martinique",
                     "+33612345603": "Europe/Paris"}
    again = _import(store, tmp_path, "camp-b", ["0612345601,Alice B,Europe/Paris",
                                                "0612345602,Bob B,"])
    assert again.rejected == [] and _bound(store, "camp-b") >= {"+33612345601"}
