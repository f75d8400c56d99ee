"""A controller whose heartbeat cannot be written (a DBA's open `SELECT ... FROM controllers
FOR UPDATE`, a hung connection) says so within half its lease, so that the run stops placing
calls before another controller sees the lease expire and settles its calls as orphaned."""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone

import psycopg

from ivr.store.base import RunOwner
from ivr.store.pg import PgStore
from ivr.store.pg_controllers import Heartbeat

LEASE_S = 3.0


def waited(cond: Callable[[], object], timeout_s: float) -> float | None:
    """Seconds until cond() held, or None if it did not within timeout_s."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def test_a_blocked_heartbeat_is_a_problem_within_half_the_lease_then_clears(
        pg_store_url: str) -> None:
    a = PgStore.open(pg_store_url, optout_key=b"test-key", lease_s=LEASE_S)
    try:
        with a.hold_run(RunOwner(111, "host-a", datetime.now(timezone.utc)), "camp"):
            beat = a._beat
            assert beat is not None
            assert waited(lambda: beat.beats >= 1, LEASE_S) is not None
            assert a.unreachable() == ""
            with psycopg.connect(pg_store_url) as dba:  # a DBA's psql, left open
                dba.execute("SELECT * FROM controllers FOR UPDATE")
                after = waited(a.unreachable, LEASE_S)
                assert after is not None, "the blocked heartbeat went unnoticed"
                assert after < LEASE_S  # before another controller sees the lease expire
                assert "controller heartbeat" in a.unreachable() or \
                    "lock timeout" in a.unreachable()
                assert waited(lambda: "lock timeout" in beat.problem, LEASE_S), beat.problem
                dba.rollback()
            assert waited(lambda: a.unreachable() == "", 2 * LEASE_S) is not None
    finally:
        a.close()


def test_a_beat_older_than_half_the_lease_is_a_problem_even_without_an_error() -> None:
    """A connection hung with no error yet (the thread blocked in the beat): its age alone."""
    beat = Heartbeat("postgresql://nobody@127.0.0.1:1/x", {}, "c1", 1.0)
    assert beat.stale(1.5) == ""
    beat.beat_at -= 2.0
    assert "controller heartbeat not written for 2 s" in beat.stale(1.5)


def test_a_slow_but_successful_fold_is_no_stale_heartbeat(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Before: the next beat waited a whole interval after the fold ended, so a fold of 3 s
    (under its own 4 s timeout, lease 15 s) had the run told 'controller heartbeat not written
    for 8 s' and pausing, on a healthy store. Here scaled down: beats every 1 s, a 0.7 s fold
    at each, the bound 1.5 s (lease / 2): 1.7 s between beats before, 1 s now."""
    import time as clock

    import ivr.store.pg_controllers as pc

    class SlowFold:
        closed = False

        def execute(self, sql: str, params: object = None) -> None:
            if sql is pc.FOLD_COUNTS:
                clock.sleep(0.7)

        def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(pc.psycopg, "connect", lambda *a, **k: SlowFold())
    monkeypatch.setattr(pc, "FOLD_EVERY_S", 0.0)
    beat = pc.Heartbeat("postgresql://x", {}, "c1", every_s=1.0)
    beat.start()
    said: list[str] = []
    try:
        end = clock.monotonic() + 5
        while clock.monotonic() < end:
            said += [beat.stale(1.5)] if beat.stale(1.5) else []
            clock.sleep(0.02)
    finally:
        beat.stopping.set()
    assert beat.beats >= 3 and said == []
