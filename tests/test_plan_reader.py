"""On SQLite a run's plans read over a connection of their own, in a worker thread
(Store.plan_reader): a plan reads every pending contact (100,000: ~1 s; 1,000,000: ~10 s),
and on the event loop it held every call in progress that long."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from ivr import app
from ivr.campaign import run as run_module
from ivr.campaign.why import why_nobody
from ivr.errors import StoreError
from ivr.store import Store
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import FakePbx, answer, no_answer

from test_dialer import HASHES, SECRET, fiction, make_cfg
from test_run_pg_writes import seeded


REAL_PLAN = run_module.plan


def _store(path: Path, numbers: list[str]) -> Store:
    return seeded(Store.open(path, optout_key=b"test-key"), numbers)


def _watched_plans(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, Any]]:
    """The run's plans from now on, each as (the thread it ran in, the store it read)."""
    plans: list[tuple[int, Any]] = []

    def watched(cfg: Any, plan_store: Any, now: Any) -> Any:
        plans.append((threading.get_ident(), plan_store))
        return REAL_PLAN(cfg, plan_store, now)
    monkeypatch.setattr(run_module, "plan", watched)
    return plans


def test_the_reader_sees_what_is_committed_and_writes_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path / "ivr.db", [fiction(1)])
    reader = store.plan_reader()
    assert reader is not None and reader.store.path == store.path
    assert [c["number"] for c in reader.store.pending_contacts("utest")] == [fiction(1)]
    _more = _store(tmp_path / "ivr.db", [fiction(2)])  # another writer, committed
    assert sorted(c["number"] for c in reader.call(reader.store.pending_contacts, "utest")) \
        == [fiction(1), fiction(2)]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.store.db.execute("DELETE FROM contacts")
    assert len(store.pending_contacts("utest")) == 2
    reader.close()
    with pytest.raises(sqlite3.ProgrammingError):
        reader.store.db.execute("SELECT 1")
    with pytest.raises(StoreError, match="closed"):
        reader.call(lambda: None)
    _more.close()
    assert Store.memory().plan_reader() is None


LONG_READ = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
             "WHERE i < 300000000) SELECT count(*) FROM n")


def test_closing_the_reader_under_a_running_plan_interrupts_it_then_closes(
        tmp_path: Path) -> None:
    """A forced stop cancels the run's await, not the thread: run() then closes the reader
    while the plan reads. Closed under a running statement, the process crashed (SIGSEGV)."""
    store = _store(tmp_path / "ivr.db", [fiction(1)])
    reader = store.plan_reader()
    assert reader is not None
    started, outcome = threading.Event(), []

    def long_plan() -> None:
        started.set()
        reader.store.db.execute(LONG_READ).fetchone()

    def in_thread() -> None:
        try:
            reader.call(long_plan)
            outcome.append("finished")
        except sqlite3.OperationalError as exc:
            outcome.append(str(exc))
    thread = threading.Thread(target=in_thread)
    thread.start()
    assert started.wait(10)
    time.sleep(0.05)  # the statement runs
    reader.close()  # from another thread, as run()'s finally does: interrupts, does not close
    thread.join(30)
    assert not thread.is_alive() and outcome == ["interrupted"], outcome
    with pytest.raises(sqlite3.ProgrammingError):  # closed by the plan's thread as it let go
        reader.store.db.execute("SELECT 1")
    assert store.pending_contacts("utest")  # the run's own connection is untouched
    store.close()


def test_a_run_plans_off_the_loop_over_its_own_connection(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    numbers = [fiction(20 + i) for i in range(3)]
    store = _store(tmp_path / "ivr.db", numbers)
    cfg = make_cfg(tmp_path, {"busy": 0.2, "no_answer": 0.2, "congestion": 0.2})
    plans = _watched_plans(monkeypatch)
    callees = {numbers[0]: answer(["1"]), numbers[1]: no_answer(), numbers[2]: answer([])}
    loop_thread: list[int] = []

    async def scenario() -> Any:
        loop_thread.append(threading.get_ident())
        async with FakePbx(callees, user="ivr", secret=SECRET) as pbx:
            node = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", SECRET)
            report, _ = await asyncio.wait_for(
                app.run_campaign(cfg, store, node=node, hashes=HASHES), 60)
            return report
    report = asyncio.run(scenario())
    assert report.originated == 4, report  # the no_answer retried once: plans saw its retry
    run_plans = [(thread, s) for thread, s in plans if s is not store]
    assert len(run_plans) >= 2, plans  # the first plan, and the retry's
    assert all(thread != loop_thread[0] for thread, _ in run_plans), plans
    # none on the loop: the final plan (why nobody is left) reads over the reader too
    assert [s for thread, s in plans if thread == loop_thread[0]] == [], plans
    readers = {id(s) for _, s in run_plans}
    assert len(readers) == 1  # one connection for the run's plans
    with pytest.raises(sqlite3.ProgrammingError):  # closed with the run
        run_plans[0][1].db.execute("SELECT 1")
    outcomes = [row[0] for row in store.db.execute("SELECT outcome FROM calls").fetchall()]
    assert outcomes.count("no_answer") == 2, outcomes
    # the last plan's line, read over the reader, is the one the store itself gives now
    assert report.why and report.why == why_nobody(
        store, REAL_PLAN(cfg, store, datetime.now(timezone.utc)), cfg.campaign.name), report.why
    store.close()


def test_a_reader_that_cannot_open_leaves_the_plans_on_the_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
        ) -> None:
    store = _store(tmp_path / "ivr.db", [fiction(1)])

    def refused() -> None:
        raise StoreError(f"cannot open the store {store.path} for planning: disk I/O error")
    monkeypatch.setattr(store, "plan_reader", refused)
    with caplog.at_level("WARNING"):
        assert run_module._plan_reader(store) is None
    assert "plans run on the event loop" in caplog.text and "disk I/O error" in caplog.text
    store.close()


def test_a_stopped_runs_last_plan_is_read_over_the_reader_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped by the operator, a run ends on one more plan (why nobody is called now, for
    the report): it too reads over the reader's connection, off the loop."""
    numbers = [fiction(40 + i) for i in range(3)]
    store = _store(tmp_path / "ivr.db", numbers)
    cfg = make_cfg(tmp_path, {})
    plans = _watched_plans(monkeypatch)
    loop_thread: list[int] = []

    async def scenario() -> Any:
        loop_thread.append(threading.get_ident())
        stop = asyncio.Event()
        stop.set()  # the operator's stop, before any call
        async with FakePbx({n: answer(["1"]) for n in numbers}, user="ivr",
                           secret=SECRET) as pbx:
            node = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", SECRET)
            report, _ = await asyncio.wait_for(
                app.run_campaign(cfg, store, node=node, hashes=HASHES, stop=stop), 60)
            return report
    report = asyncio.run(scenario())
    assert report.stopped_by == "operator" and report.originated == 0, report
    last_thread, last_store = plans[-1]
    assert last_thread != loop_thread[0] and last_store is not store, plans
    assert report.why and report.why == why_nobody(
        store, REAL_PLAN(cfg, store, datetime.now(timezone.utc)), cfg.campaign.name), report.why
    store.close()
