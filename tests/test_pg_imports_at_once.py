"""Two imports at once on one PostgreSQL store (two consoles, a console and the CLI) that hold
one new number. Found in review: each batch read "absent" then inserted it, and the second
died on the contacts' unique index with a raw UniqueViolation traceback. Each batch's read and
inserts now hold one advisory lock (pg_schema.IMPORT_LOCK): the second merges, as on SQLite."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ivr.records.contacts import import_csv
from ivr.store.pg import PgStore

T0 = datetime(2026, 9, 7, 10, tzinfo=timezone.utc)
NUMBER = "+33162000010"


def test_an_import_waits_for_the_other_and_merges_its_number(pg_store_url: str,
                                                              tmp_path: Path) -> None:
    a = PgStore.open(pg_store_url, optout_key=b"test-key")
    b = PgStore.open(pg_store_url, optout_key=b"test-key")
    path = tmp_path / "list.csv"
    path.write_text("number;name\n01 62 00 00 10;Jean\n", encoding="utf-8")
    done: dict[str, Any] = {}

    def other_import() -> None:
        try:
            done["report"] = import_csv(b, path, campaign="c1", source="list-b",
                                        basis="consent", acquired_on="2026-01-01",
                                        default_region="FR", now=T0)
        except Exception as exc:  # noqa: BLE001 - the test reports it
            done["error"] = exc
    try:
        with a.transaction():  # A's batch: read, then insert
            assert a.contacts_by_number([NUMBER]) == {}
            thread = threading.Thread(target=other_import)
            thread.start()
            time.sleep(1.0)  # B reads its batch meanwhile: it must wait for A's
            assert thread.is_alive()
            a.add_contact(NUMBER, name="Jeanne", timezone=None, source="list-a",
                          basis="consent", acquired_on="2026-01-01", extra="{}",
                          status="pending", now=T0)
            a.bind_contacts([NUMBER], campaign="c1", source="list-a", basis="consent",
                            acquired_on="2026-01-01", now=T0)
        thread.join(30)
        assert "error" not in done, done.get("error")
        report = done["report"]  # the number was there once A committed: not added again
        assert report.rejected == [] and report.added == 0
        assert report.merged + report.unchanged == 1
        assert [r["number"] for r in a.q("SELECT number FROM contacts")] == [NUMBER]
    finally:
        a.close()
        b.close()
