"""Found in review: `ivr run --dry-run` of campaign B named a number shared with campaign A
under A's list (`call +33… (adherents)`): the plan read the contact's first list, not B's own
binding of it, as the reports did before schema 19. On both backends."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from ivr.records.contacts import import_csv
from ivr.store import Store

NOW = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)


def test_the_plan_names_each_number_under_its_campaigns_own_list(store: Store,
                                                                 tmp_path: Path) -> None:
    for campaign, source in (("camp-a", "adherents"), ("camp-b", "fichier-b")):
        path = tmp_path / f"{campaign}.csv"
        path.write_text("number\n0612345601\n")
        import_csv(store, path, campaign=campaign, source=source, basis="consent",
                   acquired_on="2026-01-01", default_region="FR", now=NOW)
    for campaign, source in (("camp-a", "adherents"), ("camp-b", "fichier-b")):
        rows = [r for chunk in store.plan_contacts(
            campaign, attempts_since=NOW - timedelta(days=30),
            refusals_since=NOW - timedelta(days=60), now=NOW, chunk=100) for r in chunk]
        assert [(r["number"], r["source"]) for r in rows] == [("+33612345601", source)]
