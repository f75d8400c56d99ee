"""Found in review: campaigns share one contact row per number, and a later list only fills its
blanks. Campaign B's list gave America/Guadeloupe for a number campaign A had stored with
Europe/Paris: B's import said "merged", kept Paris time, and B's run judged the calling hours
in Paris, so that person was due at 05:30 their time. A line whose time zone contradicts the
one stored for a contact another campaign shares is now rejected, naming both zones, and
nothing of it is written or bound; the same zone, or none, merges as before. A contact of the
importing campaign alone takes the file's zone: re-importing a corrected list corrects it. Two
zones for one number within a file: the later line is rejected. A shared contact stored with
no zone is judged in its number's zone or the campaign's: another zone for it is as much a
contradiction (found in a later review: B's list filled A's blank with America/Martinique,
and A's calls to that mobile moved to Martinique hours). On both backends."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

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
    _import(store, tmp_path, "camp-a", ["0612345601,Alice,Europe/Paris", "0612345602,Bob,",
                                        "0612345604,Dan,"])
    report = _import(store, tmp_path, "camp-b", [
        "0612345601,Alice B,America/Guadeloupe",  # contradicts A's
        "0612345602,Bob B,America/Martinique",    # A's blank: judged in Paris, the default
        "0612345603,Carla,Europe/Paris",
        "0612345604,Dan B,Europe/Paris"])         # what A's blank means: filled, as before
    assert report.rejected == [(2, (
        "+33612345601 is stored with time zone Europe/Paris, which another campaign's list "
        "shares; this file says America/Guadeloupe: a person has one, so correct whichever "
        "list is wrong, or leave this file's timezone empty to keep Europe/Paris")), (3, (
        "+33612345602 is stored with no time zone (its calls judged in Europe/Paris), which "
        "another campaign's list shares; this file says America/Martinique: a person has one, "
        "so correct whichever list is wrong, or leave this file's timezone empty"))]
    # 03 new, 04 new to camp-b (camp-a's contact, its blank zone filled): both added
    assert (report.added, report.merged, report.rejected_total) == (2, 0, 2)
    assert _bound(store, "camp-b") == {"+33612345603", "+33612345604"}
    zones = {r["number"]: r["timezone"] for r in store.q("SELECT number, timezone FROM contacts")}
    assert zones == {"+33612345601": "Europe/Paris", "+33612345602": None,
                     "+33612345603": "Europe/Paris", "+33612345604": "Europe/Paris"}
    again = _import(store, tmp_path, "camp-b", ["0612345601,Alice B,Europe/Paris",
                                                "0612345602,Bob B,"])
    assert again.rejected == [] and _bound(store, "camp-b") >= {"+33612345601", "+33612345602"}
    # A contact of the importing campaign alone still takes the zone its list gives.
    _import(store, tmp_path, "camp-c", ["0612345605,Eve,"])
    assert _import(store, tmp_path, "camp-c", ["0612345605,Eve,America/Martinique"]).rejected \
        == []
    assert store.q("SELECT timezone FROM contacts WHERE number = '+33612345605'")[0][
        "timezone"] == "America/Martinique"


def test_a_campaigns_own_contact_takes_its_corrected_zone(store: Store, tmp_path: Path) -> None:
    """Found in the diff's review: a campaign re-importing its own corrected list had every
    corrected line rejected, and no other way to correct a stored zone."""
    _import(store, tmp_path, "camp-a", ["0612345601,Alice,Europe/Paris"])
    report = _import(store, tmp_path, "camp-a", ["0612345601,Alice,America/Guadeloupe"])
    assert report.rejected == [] and report.merged == 1
    (row,) = store.q("SELECT timezone FROM contacts")
    assert row["timezone"] == "America/Guadeloupe"
    # then the other campaign's list, which says the same, merges
    assert _import(store, tmp_path, "camp-b", ["0612345601,A,America/Guadeloupe"]).rejected == []


@pytest.mark.parametrize("batch, lines, where", [
    (1000, ["0612345601,A,", "0612345601,A,Europe/Paris", "0612345601,A,America/Guadeloupe"],
     "on line 3"),
    # found in the last review: past a batch (1,000 numbers), the earlier line's zone was
    # stored, and the later line's, the importing campaign's own, replaced it without a word
    (2, ["0612345601,A,Europe/Paris", "0612345602,B,", "0612345601,A,America/Guadeloupe"],
     "on an earlier line")])
def test_two_zones_for_one_number_in_a_file_reject_the_later_line(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int,
        lines: list[str], where: str) -> None:
    from ivr.records import contacts
    monkeypatch.setattr(contacts, "BATCH", batch)
    report = _import(store, tmp_path, "camp-a", lines)
    assert report.rejected == [(4, "+33612345601 has two time zones in this file: Europe/Paris "
                                   f"{where}, America/Guadeloupe here: a person has one; "
                                   "correct the file")]
    zones = {r["number"]: r["timezone"] for r in store.q("SELECT number, timezone FROM contacts")}
    assert zones["+33612345601"] == "Europe/Paris"
    assert len(zones) == len({ln.split(",")[0] for ln in lines})  # one row per number
