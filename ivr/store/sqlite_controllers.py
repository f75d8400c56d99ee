"""The SQLite backend's controllers: one `ivr run` per campaign (the run lock), registered in
`controllers` like PostgreSQL's, and the open attempts left by runs that are gone.

SQLite does not share a campaign's work (shares_work = False): sqlite_runlock refuses a second
run of it. A run still gets a random controller id (written to calls.controller) and a row in
`controllers`, so orphaned_calls and the console read the same rows on both backends. There is
no heartbeat thread: while a run holds the campaign's lock, no other run of it is alive.
Registration marks stopped the rows of this machine whose process is gone (same_host), as on
PostgreSQL: the console and another campaign's runs then see them ended.
"""
from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path

from ivr.store import same_host, sqlite_runlock
from ivr.store.base import Row, RunOwner, utc
from ivr.store.sqlite_core import STORE_ERRORS, SQLiteCore

log = logging.getLogger(__name__)
LEASE_S = 15.0  # written for the console's sake; the run lock is what keeps runs apart
STOP_MARK_S = 5.0  # a run's end waits this long at most for another command's write lock


class ControllersSQL(SQLiteCore):
    path: Path | None = None  # the file (None in memory): the run lock lives beside it
    _held_campaign: str | None = None
    _held_host: str | None = None

    @contextmanager
    def hold_run(self, owner: RunOwner, campaign: str) -> Iterator[None]:
        """One `ivr run` per campaign at a time on this file (sqlite_runlock; nothing to lock
        in memory); registered as a controller while it holds."""
        with ExitStack() as stack:
            if self.path:
                stack.enter_context(sqlite_runlock.hold_run(self.path, owner, campaign))
            controller = same_host.controller_id()
            now = utc(datetime.now(timezone.utc))
            with self.transaction():
                self.take_over_gone(owner.host, now)
                self.db.execute("INSERT INTO controllers (id, campaign, host, pid, started_at, "
                                "heartbeat_at, lease_s) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (controller, campaign, owner.host, owner.pid,
                                 utc(owner.started), now, LEASE_S))
            self.controller_id, self._held_campaign = controller, campaign
            self._held_host = owner.host
            try:
                yield
            finally:
                self.controller_id = self._held_campaign = self._held_host = None
                self._mark_stopped(controller)

    def _mark_stopped(self, controller: str) -> None:
        """The run's row ended. Another command may hold the file's write lock just then (an
        import, the other campaign's run): that must not turn a clean stop into a failure. An
        exit 1 restarts a service unit (Restart=on-failure), whose start replaces the console's
        stop with a run that dials again. Tried for STOP_MARK_S; past that, said and left to
        the next run on this host (take_over_gone), as PostgreSQL leaves it to the lease."""
        deadline = time.monotonic() + STOP_MARK_S
        while True:
            try:
                with self.transaction():
                    self.db.execute("UPDATE controllers SET stopped_at = ? WHERE id = ?",
                                    (utc(datetime.now(timezone.utc)), controller))
                return
            except STORE_ERRORS as exc:
                if time.monotonic() >= deadline:
                    log.warning("controller %s not marked stopped (%s): the next run on this "
                                "host marks it", controller, str(exc).splitlines()[0])
                    return
                time.sleep(0.2)

    def take_over_gone(self, host: str, now: str) -> list[str]:
        """Mark stopped the controllers of this machine whose process is gone (same_host);
        another host's rows, and a live process's, are never touched."""
        rows = self._rows("SELECT id, host, pid, started_at, stopped_at FROM controllers "
                          "WHERE host = ? AND stopped_at IS NULL", (host,))
        gone = same_host.gone_controllers(rows, host)
        for controller in gone:
            self.db.execute("UPDATE controllers SET stopped_at = ? WHERE id = ? "
                            "AND stopped_at IS NULL", (now, controller))
        if gone:
            log.warning("controller(s) %s of this host are gone (process ended): marked "
                        "stopped", ", ".join(gone))
        return gone

    def unreachable(self) -> str:
        """A local file is never "unreachable": its failures show in the writes themselves."""
        return ""

    def orphaned_calls(self, campaign: str, now: datetime) -> list[Row]:
        """Open attempts of the campaign that no live controller will settle, never this
        store's own. While this store holds the campaign's run lock, that is every other
        controller's (no other run of the campaign is alive); otherwise those whose controller
        stopped, whose lease expired by `now`, or that no registered controller placed."""
        held = self._held_campaign == campaign
        return self._rows(
            "SELECT c.* FROM calls c LEFT JOIN controllers k ON k.id = c.controller "
            "WHERE c.outcome IS NULL AND c.campaign = :campaign "
            "AND (:me IS NULL OR c.controller IS NOT :me) "
            "AND (:held OR k.id IS NULL OR k.stopped_at IS NOT NULL OR "
            "(julianday(:now) - julianday(k.heartbeat_at)) * 86400.0 > k.lease_s) "
            "ORDER BY c.id",
            {"campaign": campaign, "me": self.controller_id, "held": int(held),
             "now": utc(now)})

    def controllers(self, campaign: str | None = None) -> list[Row]:
        """The registered controllers (of one campaign, or all), oldest first."""
        return self._rows("SELECT * FROM controllers WHERE (:campaign IS NULL OR "
                          "campaign = :campaign) ORDER BY started_at, id",
                          {"campaign": campaign})

    def peer_load(self, campaign: str) -> list[Row]:
        """The campaign's live controllers, this one included, with the open attempts of each
        other one per node: rows (controller, campaign, node, n); node None with n 0 for a
        controller without any. Also other campaigns' live controllers: their open attempts per
        node, and a row with n 0 for each node their published snapshot lists (they may dial
        it: a node's max_channels is shared by every controller dialling through it;
        campaign/nodes.py, Shares). No heartbeat here: live is not stopped, and not a process
        of this machine that is gone (same_host)."""
        rows = self._rows(
            "SELECT k.id AS controller, k.campaign, k.id, k.host, k.pid, k.started_at, "
            "k.stopped_at, c.node, count(c.id) AS n FROM controllers k "
            "LEFT JOIN calls c ON c.controller = k.id AND c.outcome IS NULL "
            "AND c.campaign = k.campaign AND k.id IS NOT :me "
            "WHERE k.stopped_at IS NULL GROUP BY k.id, c.node "
            "HAVING k.campaign = :campaign OR count(c.id) > 0 UNION ALL "
            "SELECT k.id AS controller, k.campaign, k.id, k.host, k.pid, k.started_at, "
            "k.stopped_at, json_extract(j.value, '$.name'), 0 FROM controllers k "
            "JOIN run_snapshots s ON s.campaign = k.campaign AND s.controller = k.id, "
            "json_each(s.snapshot, '$.nodes') j "
            "WHERE k.stopped_at IS NULL AND k.campaign <> :campaign ORDER BY 1",
            {"campaign": campaign, "me": self.controller_id})
        host = self._held_host or socket.gethostname()
        gone = set(same_host.gone_controllers(rows, host)) - {self.controller_id}
        return [{"controller": r["controller"], "campaign": r["campaign"], "node": r["node"],
                 "n": r["n"]} for r in rows
                if r["controller"] not in gone and self._runs_now(r, campaign)]

    def _runs_now(self, row: Row, campaign: str) -> bool:
        """A controllers row open here is a live run only while its campaign's run lock is
        held by its process: a crashed run's row stays open (no lease on SQLite, and
        same_host cannot judge a row of an earlier boot, another container or a reused pid),
        and counted as a peer it took half a lone run's cap (none at cap 1) for good."""
        if row["controller"] == self.controller_id or not self.path:
            return True
        if row["campaign"] == campaign and self._held_campaign == campaign:
            return False  # this run holds the campaign's lock: no other run of it is alive
        owner = sqlite_runlock.running_owner(self.path, str(row["campaign"]))
        if owner == sqlite_runlock.NO_LOCK_FILE:
            return True  # never held by a run here: nothing to judge the row by
        return isinstance(owner, RunOwner) and (owner.pid < 0 or (
            owner.pid == row["pid"] and owner.host == row["host"]))
