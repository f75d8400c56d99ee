"""An import batch's reads of the campaign's bindings start from the batch's numbers: SQLite
has no statistics (no ANALYZE), and a join on campaign_contacts.campaign led its planner to
walk every binding of the campaign by the campaign's index and look each contact up (75 ms a
batch at 100,000 contacts: bench_web's 3-line upload answered in 106 ms at the median, a
5,000-line one in 0.72 s; now ~1 ms and 0.30 s)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import sqlite_only
from test_contacts_import import run, write
from ivr.store.sqlite import Store


@sqlite_only  # PostgreSQL's planner reads the tables' statistics
def test_an_import_reads_the_bindings_by_number_not_by_campaign(store: Store,
                                                                tmp_path: Path) -> None:
    run(store, write(tmp_path, "number\n+33199000001\n+33199000002\n"), source="list-a")
    seen: list[tuple[str, Any]] = []
    real = store._rows

    def spy(sql: str, params: Any = ()) -> Any:
        seen.append((sql, params))
        return real(sql, params)
    store._rows = spy  # type: ignore[method-assign]
    try:
        got = store.bound_otherwise(["+33199000001", "+33199000003"], campaign="c1",
                                    source="list-b", basis="consent")
    finally:
        del store._rows
    assert [(r["number"], r["source"]) for r in got] == [("+33199000001", "list-a")]
    sql, params = seen[-1]
    plan = [r[-1] for r in store.db.conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
    assert any("contacts" in step and "(number=?)" in step for step in plan), plan
    assert not any("(campaign=?)" in step for step in plan), plan
