"""Reconciliation with several controllers on one node (issue 14): a controller settles only
its own open attempts, those no controller recorded, and those of a controller no longer alive
(stopped, lease expired, unregistered; on SQLite any other while it holds the run lock). Another
live controller's Async Originate has no channel yet either: settled `error` + retry, the number
would be called twice.

The store on both backends (`store` fixture), then the real dialer and AmiNode against the fake
PBX over sockets, SQLite store. A controller restarted on the same machine takes over its dead
predecessor's attempts at once (same_host), not after its lease: both backends, then a whole
run over sockets on PostgreSQL."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import Backend
from conftest import add_contact, attempt
from ivr.store import Store, same_host, utc
from ivr.store.base import RunOwner
from ivr.telephony.fake_pbx import answer
from store_sql import PgTestStore

from test_dialer import _open_attempt, add_contacts, fiction, make_cfg, rig
from test_run_pg_writes import run_on

NOW = datetime.now(timezone.utc)  # an attempt's times (not the leases)


def register(s: Store, controller: str, campaign: str, *, beat_age_s: float = 0.0,
             stopped: bool = False) -> None:
    """A controllers row as hold_run writes it (lease 15 s), its heartbeat `beat_age_s` old
    on the real clock the store compares leases with."""
    beat = datetime.now(timezone.utc) - timedelta(seconds=beat_age_s)
    s.db.execute("INSERT INTO controllers (id, campaign, host, pid, started_at, heartbeat_at, "
                 "lease_s, stopped_at) VALUES (?, ?, 'h', 1, ?, ?, 15, ?)",
                 (controller, campaign, utc(beat), utc(beat), utc(NOW) if stopped else None))


def placed_by(s: Store, controller: str | None, number: str, node: str = "n1") -> int:
    """An open attempt of campaign c1 on `node`, placed by `controller` (None: none recorded)."""
    s.controller_id = controller
    try:
        return int(attempt(s, add_contact(s, number, at=NOW), "c1", "+33162000000", NOW,
                           node=node)["id"])
    finally:
        s.controller_id = None


def test_open_calls_of_one_controller_leave_another_live_ones(store: Store) -> None:
    s = store
    register(s, "ctl-a", "c1")
    register(s, "ctl-b", "c1")                                       # alive
    register(s, "ctl-c", "c1", stopped=True)                         # stopped
    register(s, "ctl-d", "c1", beat_age_s=60)     # lease expired
    mine = placed_by(s, "ctl-a", "+33162000001")
    theirs = placed_by(s, "ctl-b", "+33162000002")
    stopped = placed_by(s, "ctl-c", "+33162000003")
    expired = placed_by(s, "ctl-d", "+33162000004")
    legacy = placed_by(s, None, "+33162000005")
    unknown = placed_by(s, "ctl-x", "+33162000006")                  # never registered
    elsewhere = placed_by(s, "ctl-a", "+33162000007", node="n2")
    assert [r["id"] for r in s.open_calls("n1", "c1", "ctl-a")] == \
        [mine, stopped, expired, legacy, unknown]
    assert [r["id"] for r in s.open_calls("n1", "c1", "ctl-b")] == \
        [theirs, stopped, expired, legacy, unknown]
    # No controller given: every open attempt of the node and campaign, as before.
    assert [r["id"] for r in s.open_calls("n1", "c1")] == \
        [mine, theirs, stopped, expired, legacy, unknown]
    assert [r["id"] for r in s.open_calls("n2", "c1", "ctl-b")] == []
    assert [r["id"] for r in s.open_calls("n2", "c1", "ctl-a")] == [elsewhere]


def test_a_restarted_sqlite_run_holding_the_lock_reconciles_its_crashed_predecessors(
        tmp_path: Path) -> None:
    """SQLite: one run per campaign, so the lock proves the previous run (new id, heartbeat
    still fresh after a SIGKILL) is gone: its attempts are the restarted run's to settle."""
    s = Store.open(tmp_path / "ivr.db")
    register(s, "crashed", "c1")
    left = placed_by(s, "crashed", "+33162000001")
    assert s.open_calls("n1", "c1", "someone") == []  # lock not held: its lease runs
    with s.hold_run(RunOwner(4242, "h", NOW), "c1"):
        me = s.controller_id
        assert me is not None
        assert [r["id"] for r in s.open_calls("n1", "c1", me)] == [left]


def test_a_reconnect_leaves_another_live_controllers_queued_call_open(backend: Backend) -> None:
    """Controller A's link drops and comes back; CoreShowChannels lists none of these calls.
    B's (alive, its Originate queued) stays open; A's own, a stopped controller's and one with
    no controller recorded are settled `error` / reconciled."""
    own_n, b_n, stopped_n, legacy_n = fiction(10), fiction(11), fiction(12), fiction(13)
    callees = {n: answer() for n in (own_n, b_n, stopped_n, legacy_n)}

    async def scenario() -> dict[str, dict[str, Any]]:
        async with rig(backend, callees) as r:
            register(r.store, "ctl-a", "utest")
            register(r.store, "ctl-b", "utest")
            register(r.store, "ctl-c", "utest", stopped=True)
            ids = {}
            for who, n in (("ctl-b", b_n), ("ctl-c", stopped_n), (None, legacy_n),
                           ("ctl-a", own_n)):
                r.store.controller_id = who
                ids[n] = _open_attempt(r.store, r.cfg, n, "pbx")
            r.store.controller_id = "ctl-a"  # this run: controller A
            try:
                logins = r.pbx.logins
                r.pbx.drop()
                # A's own attempt comes last in id order: once it is settled, all were judged.
                await r.until(lambda: r.pbx.logins > logins and
                              bool(r.store.call(ids[own_n])["outcome"]))
                return {c["number"]: c for c in r.calls()}
            finally:
                r.store.controller_id = None
    by_number = asyncio.run(scenario())
    assert by_number[b_n]["outcome"] is None  # B's call: untouched, B's events settle it
    assert by_number[b_n]["controller"] == "ctl-b"
    for n in (own_n, stopped_n, legacy_n):
        assert (by_number[n]["outcome"], by_number[n]["stage"]) == ("error", "reconciled"), n


# -- a controller restarted on the same machine (same_host): no wait for the lease ----------

def dead_pid() -> int:
    """The pid of a process that ran here and is gone (reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def put_controller(s: Store, controller: str, host: str, pid: int, started: datetime) -> None:
    """A controllers row as hold_run writes it: heartbeat fresh (its lease runs 15 s more)."""
    s.db.execute("INSERT INTO controllers (id, campaign, host, pid, started_at, heartbeat_at, "
                 "lease_s) VALUES (?, 'c1', ?, ?, ?, ?, 15)",
                 (controller, host, pid, utc(started), utc(datetime.now(timezone.utc))))


def zombie_pid() -> tuple[subprocess.Popen[bytes], int]:
    """A child that has ended and is not reaped yet (a zombie): keep the Popen until the end."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    for _ in range(200):
        if Path(f"/proc/{proc.pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            break
        time.sleep(0.02)
    return proc, proc.pid


def test_a_restart_takes_over_this_hosts_gone_controllers_only(store: Store) -> None:
    """Registration marks stopped this machine's rows whose process is dead or a zombie; a
    pid in use is left to its lease whatever its row's start says (a live run after a clock
    step, or another program on a reused pid: start times rest on the wall clock), and so are
    another host's and another pid namespace's (same host name, other tag)."""
    s, tag, now = store, same_host.machine_tag(), datetime.now(timezone.utc)
    assert len(tag) == 8
    gone_pid = dead_pid()
    zombie, z_pid = zombie_pid()
    rows = {"dead": ("0000000a" + tag, "h", gone_pid, now - timedelta(seconds=5)),
            "zombie": ("0000000f" + tag, "h", z_pid, now - timedelta(seconds=5)),
            "clock_or_reused": ("0000000b" + tag, "h", os.getpid(), now - timedelta(hours=1)),
            "live": ("0000000c" + tag, "h", os.getpid(), now),
            "elsewhere": ("0000000d" + tag, "other-host", gone_pid, now),
            "other_ns": ("0000000e" + ("1" if tag[0] != "1" else "2") + tag[1:], "h",
                         gone_pid, now)}
    for controller, host, pid, started in rows.values():
        put_controller(s, controller, host, pid, started)
    left = {k: placed_by(s, rows[k][0], f"+3316200001{i}") for i, k in enumerate(rows)}
    with s.hold_run(RunOwner(os.getpid(), "h", now), "c1"):
        me = s.controller_id
        assert me is not None and me[8:] == tag
        stopped = {r["id"] for r in s.controllers("c1") if r["stopped_at"] is not None}
        assert stopped == {rows["dead"][0], rows["zombie"][0]}
        zombie.wait()
        if not s.shares_work:  # SQLite: the run lock already made every other row's ours
            return
        # PostgreSQL: the taken-over attempts are this run's to reconcile now; the others wait.
        assert [r["id"] for r in s.open_calls("n1", "c1", me)] == [left["dead"], left["zombie"]]


def test_another_users_process_is_never_judged_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    """kill(pid, 0) refused (another user's process) with its /proc hidden (hidepid): it
    exists, so its run is left to the lease."""
    def refused(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(same_host.os, "kill", refused)
    assert same_host.process_gone(4_000_000) is False
    assert same_host.is_gone({"pid": 4_000_000}) is False


def test_a_restarted_controller_settles_its_predecessors_attempts_at_start(
        tmp_path: Path, pg_store_url: str) -> None:
    """PostgreSQL, the whole `ivr run` over sockets: the predecessor (this host, its process
    SIGKILLed, heartbeat still fresh: 15 s of lease left) left an open attempt whose channel is
    gone. The restarted run settles it `error` / `reconciled` at start and redials it, well
    before the lease would have let the orphan sweep (stage `orphaned`) do it."""
    number = fiction(21)
    store = PgTestStore.open(pg_store_url, optout_key=b"test-key")
    try:
        add_contacts(store, [number])  # type: ignore[arg-type]
        cfg = make_cfg(tmp_path, {"busy": 0.2, "no_answer": 0.2, "congestion": 0.2})
        predecessor = "0000dead" + same_host.machine_tag()
        put_controller(store, predecessor, socket.gethostname(), dead_pid(),
                       datetime.now(timezone.utc) - timedelta(seconds=30))
        store.controller_id = predecessor
        left = _open_attempt(store, cfg, number, "pbx")  # type: ignore[arg-type]
        store.controller_id = None
        started = time.monotonic()
        report = run_on(cfg, store, {number: answer(["1"])})
        took = time.monotonic() - started
        calls = store.q("SELECT id, attempt, outcome, stage, controller FROM calls ORDER BY id")
    finally:
        store.close()
    assert [(c["id"], c["outcome"], c["stage"]) for c in calls[:1]] == \
        [(left, "error", "reconciled")], calls
    assert [(c["attempt"], c["outcome"]) for c in calls[1:]] == [(2, "message_played")], calls
    assert calls[1]["controller"] not in (None, predecessor)
    assert report.originated == 1
    assert took < 10.0, f"{took:.1f} s: the predecessor's lease (15 s) was waited for"
