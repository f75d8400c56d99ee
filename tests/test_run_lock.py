"""One `ivr run` per campaign and SQLite store (issues 17, 18): a second is refused at once with one line naming
the first (pid, host, start time); the lock dies with its process, even SIGKILLed."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ivr import app
from ivr.errors import StoreError
from ivr.store.base import RunOwner
from ivr.store.sqlite import Store

STARTED = datetime(2026, 12, 1, 12, 0, 3, 456000, tzinfo=timezone.utc)


def test_a_second_holder_is_refused_with_the_first_ones_pid_host_and_start(
        tmp_path: Path) -> None:
    first, second = Store.open(tmp_path / "ivr.db"), Store.open(tmp_path / "ivr.db")
    with first.hold_run(RunOwner(4242, "hostA", STARTED), "c1"):
        with pytest.raises(StoreError) as err:
            with second.hold_run(RunOwner.this_process(STARTED), "c1"):
                pytest.fail("held twice")
    msg = str(err.value)
    assert msg == (f"the store {tmp_path / 'ivr.db'} is in use by ivr run pid 4242 on host "
                   "hostA since 2026-12-01 12:00:03Z for campaign 'c1': wait for it to end or "
                   "stop it (Ctrl-C)")
    with second.hold_run(RunOwner.this_process(STARTED), "c1"):  # released at the run's end
        pass


def test_a_store_opened_through_a_symlink_shares_the_lock(tmp_path: Path) -> None:
    """Found in review: the lock sat beside the path as given, so a second run of the campaign
    through a symlink to the file was not refused, and each took the other's calls for its
    own to reconcile."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "ivr.db").symlink_to(tmp_path / "a" / "ivr.db")
    first = Store.open(tmp_path / "a" / "ivr.db")
    second = Store.open(tmp_path / "b" / "ivr.db")
    with first.hold_run(RunOwner(4242, "hostA", STARTED), "c1"):
        with pytest.raises(StoreError, match="is in use by ivr run pid 4242"):
            with second.hold_run(RunOwner.this_process(STARTED), "c1"):
                pytest.fail("held twice")


@pytest.mark.parametrize("other", ["c2", "c1 ", "c1/..", "C1"])
def test_another_campaign_runs_beside_it_on_the_same_store(tmp_path: Path, other: str) -> None:
    first, second = Store.open(tmp_path / "ivr.db"), Store.open(tmp_path / "ivr.db")
    with first.hold_run(RunOwner(4242, "hostA", STARTED), "c1"):
        with second.hold_run(RunOwner.this_process(STARTED), other):
            with pytest.raises(StoreError, match="pid 4242 on host hostA"):
                with Store.open(tmp_path / "ivr.db").hold_run(
                        RunOwner.this_process(STARTED), "c1"):
                    pytest.fail("c1 held twice")
    assert sorted(p.parent for p in tmp_path.glob("*.run-lock")) == [tmp_path, tmp_path]


def test_the_lock_dies_with_a_killed_process(tmp_path: Path) -> None:
    db = tmp_path / "ivr.db"
    Store.open(db)
    code = ("import sys, time; from datetime import datetime, timezone;"
            "from ivr.store.sqlite import Store; from ivr.store.base import RunOwner;"
            f"s = Store.open({str(db)!r});"
            "cm = s.hold_run(RunOwner.this_process(datetime.now(timezone.utc)), 'c1');"
            "cm.__enter__();"
            "print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        if proc.stdout.readline().strip() != "held":
            proc.wait(5)
            pytest.fail(f"the holder did not start: {proc.stderr.read()}")
        with pytest.raises(StoreError, match=f"pid {proc.pid} on host {socket.gethostname()}"):
            with Store.open(db).hold_run(RunOwner.this_process(STARTED), "c1"):
                pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with Store.open(db).hold_run(RunOwner.this_process(STARTED), "c1"):  # no stale lock
        pass


def test_a_store_in_memory_holds_nothing() -> None:
    store = Store.memory()
    entered = []
    with store.hold_run(RunOwner.this_process(STARTED), "c1"):
        with store.hold_run(RunOwner.this_process(STARTED), "c1"):
            entered.append("second")  # a second hold of the campaign is not refused
    assert entered == ["second"]


class UntouchedNode:
    name = "pbx"

    async def connect(self) -> None:
        pytest.fail("a refused run must not touch the PBX (it would adopt the other's calls)")


def test_run_campaign_is_refused_before_it_touches_the_pbx(tmp_path: Path) -> None:
    from test_dialer import make_cfg
    cfg = make_cfg(tmp_path)
    store = Store.open(tmp_path / "ivr.db")
    with Store.open(tmp_path / "ivr.db").hold_run(RunOwner(7, "other", STARTED),
                                                  cfg.campaign.name):
        with pytest.raises(StoreError, match="in use by ivr run pid 7 on host other"):
            asyncio.run(app.run_campaign(cfg, store, node=UntouchedNode()))  # type: ignore


def test_a_write_lock_held_at_the_runs_end_does_not_fail_a_clean_stop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Found in review: another command (an import, the other campaign's run) writing while a
    run ended made `hold_run` raise "database is locked", so a stopped run exited 1 and its
    service unit started it again over the console's stop. The end now waits for the lock
    (the row marked once it is free), and past STOP_MARK_S says so and returns."""
    import sqlite3
    import threading

    from ivr.store import sqlite_controllers
    store = Store.open(tmp_path / "ivr.db", busy_timeout_s=0.1)
    other = sqlite3.connect(str(tmp_path / "ivr.db"), isolation_level=None,
                            check_same_thread=False)
    with store.hold_run(RunOwner.this_process(STARTED), "c1"):
        other.execute("BEGIN IMMEDIATE")  # held as the run ends, then let go 0.6 s later
        threading.Timer(0.6, lambda: other.execute("ROLLBACK")).start()
    assert [r["stopped_at"] is not None for r in store.controllers()] == [True]

    monkeypatch.setattr(sqlite_controllers, "STOP_MARK_S", 0.3)
    other = sqlite3.connect(str(tmp_path / "ivr.db"), isolation_level=None)
    with store.hold_run(RunOwner.this_process(STARTED), "c1"):
        other.execute("BEGIN IMMEDIATE")  # held past STOP_MARK_S
    other.execute("ROLLBACK")
    assert sorted(r["stopped_at"] is None for r in store.controllers()) == [False, True]
    assert "not marked stopped (database is locked): the next run on this host marks it" \
        in caplog.text
