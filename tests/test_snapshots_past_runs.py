"""Past runs' rows and the console (both backends). Each `ivr run` leaves a `controllers` row and
its last snapshot in `run_snapshots`; the overview, recomputed about once a second while a
console is open, read and decoded every one of the campaign's (10,000 past runs: 382 ms, 50,000:
1.3 s). Now it reads only the snapshots fresh enough to show (the index run_snapshots_at), and
the retention purge (`ivr purge`) deletes past runs' rows older than the retention."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ivr.records import privacy
from ivr.store import Store
from ivr.web import service

from conftest import add_contact, make_config

CAMPAIGN = "c1"
PAST = 3000  # past runs of the campaign: stopped controllers, their final snapshots
OLD = "2026-01-05T08:00:00.000Z"  # when those runs ended


def _snapshot(controller: str, *, stopped: bool, in_flight: int = 0) -> dict[str, Any]:
    return {"campaign": CAMPAIGN, "status": "finished" if stopped else "running",
            "in_flight": in_flight, "max_concurrent": 20, "rate_per_min": 6.0 * in_flight,
            "stopped": stopped, "waiting": "", "holding": "", "paused": "", "console": "",
            "next_retry": None, "controller": controller,
            "nodes": [{"name": "pbx", "up": True, "in_flight": in_flight, "cap": 30,
                       "holding": ""}]}


def _add_past_runs(store: Store, n: int, ended: str = OLD, prefix: str = "past-") -> None:
    """n stopped controllers of the campaign, each with its final snapshot (as a run leaves
    them), in two statements that read the same on both backends."""
    snap = ('{"campaign": "c1", "status": "finished", "in_flight": 0, "stopped": true, '
            '"rate_per_min": 0.0, "nodes": [{"name": "pbx", "in_flight": 0, "cap": 30}]}')
    series = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :n) ")
    p = {"n": n, "c": CAMPAIGN, "at": ended, "s": snap, "pre": prefix}
    with store.transaction():
        store.db.execute(series + "INSERT INTO controllers (id, campaign, host, pid, started_at, "
                         "heartbeat_at, lease_s, stopped_at) SELECT :pre || i, :c, 'h', 1, "
                         ":at, :at, 15.0, :at FROM n", p)
        store.db.execute(series + "INSERT INTO run_snapshots (campaign, controller, at, "
                         "snapshot) SELECT :c, :pre || i, :at, :s FROM n", p)


def _count(store: Store, table: str) -> int:
    return int(store.one(f"SELECT COUNT(*) AS n FROM {table}")["n"])


def _without_ages(o: dict[str, Any]) -> dict[str, Any]:
    """The overview less the controllers' ages (PostgreSQL's age is its clock's at the read)."""
    return {**o, "controllers": [{k: v for k, v in c.items() if k != "age_s"}
                                 for c in o["controllers"]]}


def _counted(read_rows: Any, read: list[int]) -> Any:
    def counted(*args: Any, **kwargs: Any) -> Any:
        rows = read_rows(*args, **kwargs)
        read.append(len(rows))
        return rows
    return counted


def test_the_overview_reads_only_fresh_snapshots_and_shows_the_same(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config(campaign={"name": CAMPAIGN, "caller_id": "+33162000000"})
    now = datetime.now(timezone.utc)
    add_contact(store, "+33199000001", at=now, campaigns=(CAMPAIGN,))
    store.publish_snapshot(CAMPAIGN, "ctl-live", _snapshot("ctl-live", stopped=False,
                                                           in_flight=2), now)
    store.publish_snapshot(CAMPAIGN, "ctl-done", _snapshot("ctl-done", stopped=True), now)
    store.publish_snapshot("other", "ctl-x", _snapshot("ctl-x", stopped=False), now)
    read: list[int] = []  # rows of run_snapshots the overview's store read returned
    for name in ("snapshots", "fresh_snapshots"):
        if hasattr(store, name):
            monkeypatch.setattr(store, name, _counted(getattr(store, name), read))
    alone = service.overview(cfg, store, CAMPAIGN, now, service.PlanCache())
    assert [c["controller"] for c in alone["controllers"]] == ["ctl-live"]
    assert alone["in_flight"] == 2
    _add_past_runs(store, PAST)
    assert _count(store, "run_snapshots") == PAST + 3
    read.clear()
    crowded = service.overview(cfg, store, CAMPAIGN, now, service.PlanCache())
    assert sum(read) <= 2, f"the overview read {sum(read)} snapshots for 2 fresh ones"
    assert _without_ages(crowded) == _without_ages(alone)


def test_the_fresh_read_walks_an_index_not_the_past_runs(store: Store) -> None:
    """SQLite's plan: a range of run_snapshots_at (PostgreSQL's planner picks by its
    statistics; the index is the same migration there)."""
    now = datetime.now(timezone.utc)
    store.publish_snapshot(CAMPAIGN, "ctl-live", _snapshot("ctl-live", stopped=False), now)
    _add_past_runs(store, 200)
    rows = store.fresh_snapshots(CAMPAIGN, service.STALE_S, now)
    assert [r["controller"] for r in rows] == ["ctl-live"]
    assert rows[0]["snapshot"]["in_flight"] == 0
    if type(store) is Store:  # SQLite
        plan = " ".join(str(r[-1]) for r in store.db.execute(
            "EXPLAIN QUERY PLAN SELECT controller FROM run_snapshots WHERE campaign = ? "
            "AND at >= ?", (CAMPAIGN, "2026")))
        assert "run_snapshots_at" in plan, plan


def test_the_retention_purge_removes_past_runs_rows(store: Store) -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
    _add_past_runs(store, 500)  # ended 2026-01-05: older than a 90-day retention
    _add_past_runs(store, 3, ended="2026-11-30T08:00:00.000Z", prefix="recent-")
    # A live controller idle for months (no stopped_at): its row and snapshot stay
    store.db.execute("INSERT INTO controllers (id, campaign, host, pid, started_at, "
                     "heartbeat_at, lease_s) VALUES ('ctl-live', 'c1', 'h', 2, ?, ?, 15.0)",
                     (OLD, OLD))
    store.db.execute("INSERT INTO run_snapshots (campaign, controller, at, snapshot) "
                     "VALUES ('c1', 'ctl-live', ?, '{}')", (OLD,))
    counts = privacy.purge(store, timedelta(days=90), now, keep=timedelta(days=60))
    assert counts["cutoff"] == "2026-09-04T12:00:00.000Z"
    assert sorted(r["id"] for r in store.q("SELECT id FROM controllers")) == [
        "ctl-live", "recent-1", "recent-2", "recent-3"]
    assert sorted(r["controller"] for r in store.q("SELECT controller FROM run_snapshots")) \
        == ["ctl-live", "recent-1", "recent-2", "recent-3"]
