"""A call's list is its own campaign's binding's (schema 19): campaign A's report never names
campaign B's list, though the number's contact row keeps B's (the first importer's)."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from conftest import attempt
from ivr.records import report
from ivr.records.contacts import import_csv

NOW = datetime(2026, 3, 4, 9, 30, tzinfo=timezone.utc)
A, B = "campaign-a", "campaign-b"
NUMBER = "+33199000010"


def imported(store: Any, tmp_path: Path, campaign: str, source: str, text: str) -> None:
    path = tmp_path / f"{source}.csv"
    path.write_text(text, encoding="utf-8")
    import_csv(store, path, campaign=campaign, source=source, basis="consent",
               acquired_on="2026-01-10", default_region="FR", now=NOW)


def csv_sources(store: Any, campaign: str | None) -> list[str]:
    out = io.StringIO()
    report.calls_csv(store, out, campaign=campaign)
    return [row["source"] for row in csv.DictReader(io.StringIO(out.getvalue()))]


def kept_download(store: Any, campaign: str, kept: dict[int, Any]) -> bytes:
    """The console's download from its kept blocks (refreshed in place)."""
    out, fresh = io.BytesIO(), {}  # type: io.BytesIO, dict[int, Any]
    report.calls_csv_kept(store, out, campaign, kept, fresh)
    kept.clear()
    kept.update(fresh)
    return out.getvalue()


def plain_download(store: Any, campaign: str) -> bytes:
    out = io.BytesIO()
    report.calls_csv(store, out, campaign=campaign)
    return out.getvalue()


def test_a_report_names_its_own_list_not_the_first_importers(store: Any,
                                                            tmp_path: Path) -> None:
    imported(store, tmp_path, B, "b-donors-secret", f"number,name\n{NUMBER},Jean B\n")
    imported(store, tmp_path, A, "a-list", f"number\n{NUMBER}\n")
    contact = store.pending_contacts(A)[0]
    call = attempt(store, contact, A, "+33162000000", NOW)
    store.finish_unanswered(call["id"], "no_answer", "19", NOW, None)
    kept: dict[int, Any] = {}
    assert kept_download(store, A, kept) == plain_download(store, A)

    per_source = report.summary(store, A)["per_source"]
    assert "b-donors-secret" not in per_source
    assert per_source["a-list"]["outcomes"] == {"no_answer": 1}
    assert csv_sources(store, A) == ["a-list"] == csv_sources(store, None)
    assert "b-donors-secret" in report.summary(store, B)["per_source"]  # B's own, no call

    # A's list renamed: the counts and the CSV (its kept blocks too) follow.
    store.db.execute("UPDATE campaign_contacts SET source = 'a-renamed' WHERE campaign = ?",
                     (A,))
    per_source = report.summary(store, A)["per_source"]
    assert per_source["a-renamed"]["outcomes"] == {"no_answer": 1}
    assert "a-list" not in per_source and csv_sources(store, A) == ["a-renamed"]
    assert kept_download(store, A, kept) == plain_download(store, A)

    # A's binding gone: the call falls back on the contact's list, as before schema 19.
    store.db.execute("DELETE FROM campaign_contacts WHERE campaign = ?", (A,))
    assert report.summary(store, A)["per_source"]["b-donors-secret"]["outcomes"] == {
        "no_answer": 1}
    assert csv_sources(store, A) == ["b-donors-secret"]
    assert kept_download(store, A, kept) == plain_download(store, A)
    # ... and follows a renamed contact list then; bound again, the binding's list.
    store.db.execute("UPDATE contacts SET source = 'b-renamed'")
    assert report.summary(store, A)["per_source"]["b-renamed"]["outcomes"] == {
        "no_answer": 1}
    store.db.execute("INSERT INTO campaign_contacts (contact_id, campaign, source, status, "
                     "bound_at) VALUES (?, ?, 'a-again', 'done', '2026-03-04')",
                     (contact["id"], A))
    assert report.summary(store, A)["per_source"]["a-again"]["outcomes"] == {"no_answer": 1}
    assert "b-renamed" not in report.summary(store, A)["per_source"]
    assert csv_sources(store, A) == ["a-again"]
    assert kept_download(store, A, kept) == plain_download(store, A)
