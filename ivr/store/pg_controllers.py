"""Several controllers on one PostgreSQL store: registration, heartbeats, orphaned attempts.

Each `ivr run` registers itself in `controllers` (hold_run) and heartbeats every lease/3 from a
daemon thread with its own connection, so a busy or blocked event loop never makes it look
dead. It does not refuse a second controller: on PostgreSQL they share the campaign's work
(claim_attempt locks the number's contact row). When one dies, its open attempts are found by
orphaned_calls once its lease has expired, and settled by another controller (the dialer).
Restarted on the same machine, it need not wait for that lease: registration marks stopped the
rows of this machine whose process is gone (same_host), and its reconciliation settles them.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import psycopg

from ivr.errors import StoreError
from ivr.store import same_host
from ivr.store.base import Row, RunOwner, utc
from ivr.store.pg_core import STORE_ERRORS, PgCore

log = logging.getLogger(__name__)

MAX_LEASE_S = 30.0  # issue 14: a dead controller's attempts wait at most this long
FOLD_EVERY_S = 600.0  # how often a controller folds the report counts of gone connections
# The report's call_counts hold a row per key and writing connection (pg_schema 10: writers
# never share a row). The pool replaces its connections (hourly, or idle), so the rows of
# connections that are gone are summed into slot 0: the count stays bounded by the keys and
# the live connections. A gone pid cannot write again; a reused one is live, so left alone.
# report.csv's block versions (call_chunks, pg_schema 11) likewise: each block's sum is kept.
FOLD_COUNTS = (
    "WITH gone_chunks AS (DELETE FROM call_chunks WHERE slot = 0 OR slot NOT IN "
    "(SELECT pid FROM pg_stat_activity) RETURNING campaign, block, version), "
    "folded_chunks AS (INSERT INTO call_chunks (campaign, block, slot, version) "
    "SELECT campaign, block, 0, SUM(version) FROM gone_chunks GROUP BY campaign, block), "
    "gone AS (DELETE FROM call_counts WHERE slot = 0 OR slot NOT IN "
    "(SELECT pid FROM pg_stat_activity) RETURNING campaign, attempt, source, outcome, n) "
    "INSERT INTO call_counts (campaign, attempt, source, outcome, slot, n) "
    "SELECT campaign, attempt, source, outcome, 0, SUM(n) FROM gone "
    "GROUP BY campaign, attempt, source, outcome HAVING SUM(n) != 0")


# Leases are written and judged on the server's clock (clock_timestamp()): controllers on
# several machines need not agree on the time (a host a lease ahead of another would see it
# dead while it runs, and settle its calls as orphaned). Written in base.utc's text form, so
# the console reads it as any other instant.
# When a controller's lease ends (LEASE_END, written out in each query: SQL is literal here,
# tests/test_security.py): GREATEST(its last beat, now - %(back_s)s seconds) + its lease, where
# %(back_s)s is how long ago this controller's own beat was written again after failing (0
# while it fails; NULL if it never failed, which GREATEST skips). So this controller's return
# after an outage counts as a beat of every other one. Nobody could beat while the server was
# away (a restart, the network): the first controller back would otherwise take the others,
# whose heartbeats reconnect a second or two later, for dead and settle their live calls as
# orphaned. A lease outlives any outage that could end it by two beats (every lease/3), so
# our own beat has failed by the time the server is back.


def check_lease(lease_s: float) -> float:
    if not 0 < lease_s <= MAX_LEASE_S:
        raise StoreError(f"controller lease {lease_s!r} s: use more than 0 and at most "
                         f"{MAX_LEASE_S:g} s")
    return float(lease_s)


def beat_kwargs(kwargs: dict[str, Any], every_s: float) -> dict[str, Any]:
    """The heartbeat connection's keyword arguments: TCP keepalives and a user timeout, so a
    connection hung after a failover (no RST ever comes) fails within a beat or two instead
    of blocking the thread for the kernel's two hours."""
    return {**kwargs, "keepalives": 1, "keepalives_idle": max(1, round(every_s)),
            "keepalives_interval": 1, "keepalives_count": 3,
            "tcp_user_timeout": max(1000, round(every_s * 2000))}


class Heartbeat(threading.Thread):
    """Writes controllers.heartbeat_at every lease/3 on its own connection; reconnects after
    a failure (PostgreSQL restarted) and says so once. Its statements give up before the next
    beat is due (statement_timeout, lock_timeout): a DBA's `SELECT ... FOR UPDATE` on the
    controllers, or a hung server, is a failed beat the run hears of, not a silent wait."""

    def __init__(self, url: str, kwargs: dict[str, Any], controller: str, every_s: float):
        super().__init__(name=f"ivr-heartbeat-{controller}", daemon=True)
        self._url, self._kwargs = url, beat_kwargs(kwargs, every_s)
        self.controller, self.every_s = controller, every_s
        self.stopping = threading.Event()
        self.beats = 0
        self.beat_at = time.monotonic()  # of the last beat written (registration's at first)
        self.back_at: float | None = None  # when a beat was written again after failing
        self._folded_at = time.monotonic()
        # Why the last beat failed ("" once one is written again): the run reads it to pause
        # with a clear message even when none of its own writes is failing yet.
        self.problem = ""

    def stale(self, max_age_s: float) -> str:
        """Why no beat was written for over max_age_s (blocked or failing), or ""."""
        age = time.monotonic() - self.beat_at
        if age <= max_age_s:
            return ""
        why = self.problem or "its statement is blocked"
        return f"controller heartbeat not written for {age:.0f} s ({why})"

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._url, autocommit=True, **self._kwargs)
        # Within the beat's interval; a lock first, so that the message names the cause.
        lock_ms, statement_ms = round(self.every_s * 500), round(self.every_s * 800)
        conn.execute("SELECT set_config('statement_timeout', %s, false), "
                     "set_config('lock_timeout', %s, false)",
                     (f"{max(80, statement_ms)}ms", f"{max(50, lock_ms)}ms"))
        return conn

    def _beat(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("UPDATE controllers SET heartbeat_at = to_char(clock_timestamp() "
                     "AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
                     "WHERE id = %s", (self.controller,))
        self.beats += 1
        self.beat_at = time.monotonic()
        self.problem = ""
        if time.monotonic() - self._folded_at >= FOLD_EVERY_S:
            self._folded_at = time.monotonic()
            try:  # housekeeping, not a beat: a slow or locked fold is tried again next time
                conn.execute(FOLD_COUNTS)
            except psycopg.Error as exc:
                if conn.closed:  # the connection is gone: the next beat says it
                    raise
                log.warning("report counts not folded (%s): later", _first_line(exc))

    def run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        failing, started = False, time.monotonic()
        # Each wait counts from the last beat's start: a slow but successful beat or fold
        # (under its statement_timeout) must not push the next one past the staleness bound
        while not self.stopping.wait(1.0 if failing else
                                     max(0.05, self.every_s - (time.monotonic() - started))):
            started = time.monotonic()
            try:
                if conn is None or conn.closed:
                    conn = self._connect()
                self._beat(conn)
                if failing:
                    self.back_at = time.monotonic()
                    log.warning("controller heartbeat: written again")
                failing = False
            except psycopg.Error as exc:
                self.problem = " ".join(str(exc).split()) or type(exc).__name__
                if not failing:
                    log.warning("controller heartbeat not written (%s): retrying",
                                _first_line(exc))
                failing = True
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class PgControllersSQL(PgCore):
    lease_s = 15.0  # PgStore.open sets it (at most MAX_LEASE_S)
    _beat: Heartbeat | None = None

    def unreachable(self) -> str:
        """Why this controller's heartbeat cannot reach the store, or "" (it can). A beat
        older than half the lease is a problem too, failing or blocked: the run stops placing
        calls well before other controllers see the lease expire and settle ours as orphaned."""
        beat = self._beat
        if beat is None:
            return ""
        return beat.stale(self.lease_s / 2) or beat.problem

    def _back_s(self) -> float | None:
        beat = self._beat
        if beat is None:
            return None
        if beat.problem:  # our own beat fails: we cannot tell a dead peer from the outage
            return 0.0
        return None if beat.back_at is None else time.monotonic() - beat.back_at

    @contextmanager
    def hold_run(self, owner: RunOwner, campaign: str) -> Iterator[None]:
        """Register this controller for the campaign, heartbeat while the run lasts, mark it
        stopped at the end. Never refuses: other controllers of the campaign share its work."""
        controller = same_host.controller_id()
        now = utc(datetime.now(timezone.utc))
        try:
            self.take_over_gone(owner.host, now)
            self._exec("INSERT INTO controllers (id, campaign, host, pid, started_at, "
                       "heartbeat_at, lease_s) VALUES (%s, %s, %s, %s, %s, to_char("
                       "clock_timestamp() AT TIME ZONE 'UTC', "
                       "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), %s)",
                       (controller, campaign, owner.host, owner.pid, utc(owner.started),
                        self.lease_s))
            self._exec(FOLD_COUNTS)
        except STORE_ERRORS as exc:  # away, read-only, a privilege missing: one line
            raise StoreError(f"cannot register this controller in the store: "
                             f"{' '.join(str(exc).split())}") from None
        beat = Heartbeat(self._url, self._connect_kwargs, controller, self.lease_s / 3)
        beat.start()
        self._beat, self.controller_id = beat, controller
        try:
            yield
        finally:
            beat.stopping.set()
            beat.join(timeout=self.lease_s)
            self._beat, self.controller_id = None, None
            try:
                self._exec("UPDATE controllers SET stopped_at = %s WHERE id = %s",
                           (utc(datetime.now(timezone.utc)), controller))
            except STORE_ERRORS as exc:  # the store is away: the lease will expire
                log.warning("controller %s not marked stopped (%s): its lease will expire",
                            controller, str(exc).splitlines()[0] if str(exc) else exc)

    def take_over_gone(self, host: str, now: str) -> list[str]:
        """Mark stopped the controllers of this machine whose process is gone (same_host):
        their open attempts become this run's to reconcile at once, not after their lease.
        Another host's rows, and a live process's, are never touched."""
        rows = self._rows("SELECT id, host, pid, started_at, stopped_at FROM controllers "
                          "WHERE host = %s AND stopped_at IS NULL", (host,))
        gone = same_host.gone_controllers(rows, host)
        if gone:
            self._exec("UPDATE controllers SET stopped_at = %s WHERE id = ANY(%s) "
                       "AND stopped_at IS NULL", (now, gone))
            log.warning("controller(s) %s of this host are gone (process ended): marked "
                        "stopped, their open attempts are reconciled now", ", ".join(gone))
        return gone

    def orphaned_calls(self, campaign: str, now: datetime) -> list[Row]:
        """Open attempts of the campaign whose controller stopped, or whose lease expired by
        `now`, or that no registered controller placed; never this store's own. The lease is
        judged on the server's clock: `now` only says how far past this host's
        wall clock to look (0 s in a run; a test's clock may look ahead)."""
        ahead = (now - datetime.now(timezone.utc)).total_seconds()
        return self._rows(
            "SELECT c.* FROM calls c LEFT JOIN controllers k ON k.id = c.controller "
            "WHERE c.outcome IS NULL AND c.campaign = %(campaign)s "
            "AND (%(me)s::text IS NULL OR c.controller IS DISTINCT FROM %(me)s) "
            "AND (k.id IS NULL OR k.stopped_at IS NOT NULL OR "
            "GREATEST(k.heartbeat_at::timestamptz, clock_timestamp() - "  # LEASE_END
            "%(back_s)s::float8 * interval '1 second') + k.lease_s * interval '1 second' "
            "< clock_timestamp() + %(ahead)s * interval '1 second') ORDER BY c.id",
            {"campaign": campaign, "me": self.controller_id, "ahead": ahead,
             "back_s": self._back_s()})

    def controllers(self, campaign: str | None = None) -> list[Row]:
        """The registered controllers (of one campaign, or all), oldest first."""
        return self._rows("SELECT * FROM controllers WHERE (%(campaign)s::text IS NULL OR "
                          "campaign = %(campaign)s) ORDER BY started_at, id",
                          {"campaign": campaign})

    def peer_load(self, campaign: str) -> list[Row]:
        """The campaign's live controllers (not stopped, lease running on the server's clock),
        this one included, with the open attempts of each other one per node: rows
        (controller, campaign, node, n); node None with n 0 for a controller without any. Also
        other campaigns' live controllers: their open attempts per node, and a row with n 0 for
        each node their published snapshot lists (they may dial it: a node's max_channels is
        shared by every controller dialling through it). What the caps are shared by
        (campaign/nodes.py, Shares); read off the loop, once a tick."""
        return self._rows(
            "WITH live AS (SELECT id, campaign FROM controllers k WHERE k.stopped_at IS NULL "
            "AND GREATEST(k.heartbeat_at::timestamptz, clock_timestamp() - "  # LEASE_END
            "%(back_s)s::float8 * interval '1 second') + k.lease_s * interval '1 second' "
            ">= clock_timestamp()) "
            "SELECT k.id AS controller, k.campaign, c.node, count(c.id) AS n FROM live k "
            "LEFT JOIN calls c ON c.controller = k.id AND c.outcome IS NULL "
            "AND c.campaign = k.campaign AND k.id IS DISTINCT FROM %(me)s::text "
            "GROUP BY k.id, k.campaign, c.node "
            "HAVING k.campaign = %(campaign)s OR count(c.id) > 0 UNION ALL "
            "SELECT k.id, k.campaign, j.value ->> 'name', 0 FROM live k "
            "JOIN run_snapshots s ON s.campaign = k.campaign AND s.controller = k.id "
            "CROSS JOIN LATERAL jsonb_array_elements(s.snapshot::jsonb -> 'nodes') j "
            "WHERE k.campaign <> %(campaign)s ORDER BY 1",
            {"campaign": campaign, "me": self.controller_id, "back_s": self._back_s()})
