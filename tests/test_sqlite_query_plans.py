"""Reads that must not walk a big table on SQLite, which has no statistics (no ANALYZE) to
steer its planner, checked on their plans:

- an import batch's read of the campaign's bindings starts from the batch's numbers (a join on
  campaign_contacts.campaign walked every binding of the campaign by the campaign's index: 75 ms
  a batch at 100,000 contacts; bench_web's 3-line upload answered in 106 ms at the median, a
  5,000-line one in 0.72 s; now ~1 ms and 0.30 s);
- the run's poll of new oppositions reads by primary key (`id > ? OR id IN (...)` scanned the
  whole opposition list, on the event loop at each tick: 6 ms at 100,000 rows; now 0.01 ms)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from conftest import sqlite_only
from test_contacts_import import run, write
from ivr.records.privacy import optout_add
from ivr.store.sqlite import Store

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)


def _answer_and_plan(store: Store, read: Callable[[], Any]) -> tuple[Any, list[str]]:
    """`read`'s answer, and the plan of the last statement it ran through the store's _rows."""
    seen: list[tuple[str, Any]] = []
    real = store._rows

    def spy(sql: str, params: Any = ()) -> Any:
        seen.append((sql, params))
        return real(sql, params)
    store._rows = spy  # type: ignore[method-assign]
    try:
        got = read()
    finally:
        del store._rows
    sql, params = seen[-1]
    return got, [r[-1] for r in store.db.conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


@sqlite_only  # PostgreSQL's planner reads the tables' statistics
def test_an_import_reads_the_bindings_by_number_not_by_campaign(store: Store,
                                                                tmp_path: Path) -> None:
    run(store, write(tmp_path, "number\n+33199000001\n+33199000002\n"), source="list-a")
    got, plan = _answer_and_plan(store, lambda: store.bindings_in(
        ["+33199000001", "+33199000003"], "c1"))
    assert [(r["number"], r["source"]) for r in got] == [("+33199000001", "list-a")]
    assert store.bindings_in(["+33199000001"], "c2") == []  # another campaign's: none
    assert any("contacts" in step and "(number=?)" in step for step in plan), plan
    assert not any("(campaign=?)" in step for step in plan), plan


@sqlite_only
def test_the_opposition_poll_reads_by_primary_key(store: Store) -> None:
    for i in range(4):
        optout_add(store, f"+3319900000{i}", "post", NOW, "FR")
    got, plan = _answer_and_plan(store, lambda: store.optouts_since(None, 2, [1]))
    assert [r["id"] for r in got] == [1, 3, 4]  # past 2, and the gap 1, once each, in order
    assert not any(step.startswith("SCAN optouts") for step in plan), plan
    assert any("optouts USING INTEGER PRIMARY KEY (rowid>?)" in step for step in plan), plan
