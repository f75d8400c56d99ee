"""The PostgreSQL store's rewrite of the tables after an erasure (checkpoint_wal; the erasure
itself is pg_privacy.py's).

An UPDATE or DELETE leaves the old version of the row, number included, in the table's pages;
a plain VACUUM frees it for reuse but its bytes stay in the page until overwritten (checked
with pageinspect), and so do the index entries. Only VACUUM FULL rewrites the table and its
indexes without them. It cannot run inside a transaction, and the erasure runs in the
caller's (records/privacy.gdpr_erase), so it runs in checkpoint_wal, which gdpr_erase calls
right after its commit (SQLite empties its WAL there). Chosen: VACUUM FULL of the tables the
erasure changed, and of those an earlier erasure left unrewritten (below). Its cost: an
exclusive lock on each while it is rewritten (on a large calls table, seconds during which
claims wait); an erasure is a rare, deliberate act, and a lock_timeout bounds the wait for the
lock: when a long transaction holds the table, checkpoint_wal returns False (as SQLite's busy
checkpoint) and the erasure run again rewrites it.

Run again, the erasure changes no row, and it may be another process: each erasure owes its
tables in an audit row written in its own transaction (OWED), a rewrite that could not be done
owes what it left, and every erasure's rewrite takes the tables owed and not yet done (DONE:
the owed ids it covered), so a process ended before its rewrite owes them still. Dead row
versions alone are not the signal: a live campaign always has some (outcomes, statuses), and
rewriting calls at each erasure held claims for 16 s a time on 3,000,000 calls.

Only the table's owner (or the database's, or a superuser; MAINTAIN from PostgreSQL 17) may
VACUUM it: for anyone else the server skips it with a mere WARNING. A DBA's usual split (an
owner role migrates, the program's role only reads and writes) left the rows on disk while
the erasure said done. So a table the role may not rewrite is not attempted, and one whose
file did not change (the server skipped it all the same) is not claimed: rewrite_refused()
names them, and the erasure says so.

The console (web/app.py) answers first: its erasure commits, says `wal_checkpointed: false`,
and a thread of the store rewrites the tables once the console has left the store alone for
2 s (60 s after the erasure at most), once for a burst of erasures (VACUUM FULL of 300,000
calls takes seconds). The cluster's WAL segments and backups keep copies until they are
recycled: that is the operator's retention (README), as for the SQLite file's backups.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timezone

import psycopg

from ivr.store.pg_core import PgCore

log = logging.getLogger(__name__)
_RECLAIM_LOCK = threading.Lock()  # the tables to rewrite, and the thread rewriting them

# The tables whose rows can hold a number, each with the statement that rewrites it.
RECLAIM: dict[str, str] = {t: f"VACUUM FULL {t}"
                           for t in ("contacts", "campaign_contacts", "calls", "consents",
                                     "optouts", "audit")}
# An erasure's rewrite not done (its tables), and one done (the owed rows it covered, by id):
# the audit rows that let an erasure run again, from any process, finish an earlier one's.
# By id, not "up to the last seen": ids are drawn at insert, not at commit, so an erasure
# committing later with a lower id was taken as covered and its tables never rewritten.
# ("upto": what releases before this one wrote; still honoured.)
OWED, DONE = "erasure_rewrite_owed", "erasure_rewritten"
# The done ids as rows once (a hash anti-join), not a containment test per owed row against
# every done row: that grew with the square of the erasures.
LEFT_OWED = (
    "WITH d AS (SELECT detail::jsonb AS j FROM audit WHERE action = %(done)s), "
    "done AS (SELECT jsonb_array_elements_text(j -> 'ids')::bigint AS id FROM d "
    "WHERE jsonb_typeof(j -> 'ids') = 'array') "
    "SELECT o.id, o.detail FROM audit o WHERE o.action = %(owed)s AND o.id > coalesce((SELECT "
    "max((j ->> 'upto')::bigint) FROM d), 0) AND NOT EXISTS (SELECT 1 FROM done WHERE "
    "done.id = o.id)")
# Those of them the role may not VACUUM (vacuum_is_permitted_for_relation's rule), and the role.
NOT_PERMITTED = (
    "SELECT c.relname AS t, current_user AS r FROM pg_class c JOIN pg_database d ON "
    "d.datname = current_database() WHERE c.relnamespace = (SELECT oid FROM pg_namespace "
    "WHERE nspname = current_schema()) AND c.relname = ANY(%(t)s) AND NOT ("
    "pg_has_role(c.relowner, 'USAGE') OR "
    "(pg_has_role(d.datdba, 'USAGE') AND NOT c.relisshared) OR CASE WHEN "
    "current_setting('server_version_num')::int >= 170000 THEN "
    "has_table_privilege(c.oid, 'MAINTAIN') ELSE false END)")
FILENODE = "SELECT pg_relation_filenode(%(t)s::regclass) AS f"


class PgReclaim(PgCore):
    _reclaim: frozenset[str] = frozenset()  # tables an erasure changed, not yet rewritten
    _refused: frozenset[str] = frozenset()  # of those, the ones the role may not rewrite
    _role = ""
    reclaim_lock_wait_ms = 5000  # how long checkpoint_wal waits for each table's lock
    # The console sets it (web/app.py): its erasure answers once committed and the rewrite
    # follows in a thread of its own, once the store has been left alone for reclaim_delay_s
    # (so a burst of erasures is one rewrite, and the exclusive locks do not fall on the
    # requests that follow), at most reclaim_max_wait_s after the last erasure; retried every
    # reclaim_retry_s while a table's lock is not granted. VACUUM FULL of 300,000 calls takes
    # 1-3 s: far over the console's 200 ms.
    reclaim_in_background = False
    reclaim_delay_s = 2.0
    reclaim_max_wait_s = 60.0
    reclaim_retry_s = 5.0
    # In the background, a queued ACCESS EXCLUSIVE request makes every later lock on the table
    # wait behind it (the controllers' claims and outcomes): wait briefly, back off, give up
    # after a few tries (the next erasure tries again) rather than stall a run for long.
    reclaim_background_lock_wait_ms = 200
    reclaim_background_tries = 6
    _reclaimer: threading.Thread | None = None
    _last_erasure = 0.0
    _owed_ids: frozenset[int] = frozenset()  # the OWED audit rows the tables to rewrite include

    def _erased(self, changed: dict[str, int]) -> None:
        """erase_person's changes, in its transaction: the tables to rewrite after its commit,
        owed in the audit at once, so that a process ended before its rewrite (a console
        restarted, a Ctrl-C during the VACUUM FULL) leaves them to the next erasure."""
        tables = sorted(t for t, n in changed.items() if n)
        if tables:
            self._audit(OWED, None, {"tables": tables}, datetime.now(timezone.utc))
        with _RECLAIM_LOCK:
            self._reclaim = self._reclaim | set(tables)
            self._last_erasure = time.monotonic()

    def checkpoint_wal(self) -> bool:
        """After an erasure, outside any transaction: rewrite the tables it changed, and those
        an earlier one left, so no old row version keeps the number (module docstring). False
        when it could not (inside a transaction, a table's lock not granted within
        lock_timeout: the next erasure retries; a table the role may not rewrite:
        rewrite_refused()); False too when the rewrite is left to the background thread."""
        if getattr(self._local, "conn", None) is not None:  # VACUUM cannot run in a transaction
            return not self._reclaim
        owed = self._rows(LEFT_OWED, {"owed": OWED, "done": DONE})
        left = {t for r in owed for t in json.loads(r["detail"]).get("tables", [])} & set(RECLAIM)
        with _RECLAIM_LOCK:
            self._owed_ids = self._owed_ids | {int(r["id"]) for r in owed}
            todo = self._reclaim | left
        refused = {r["t"]: r["r"] for r in self._rows(NOT_PERMITTED, {"t": sorted(todo)})}
        with _RECLAIM_LOCK:
            self._reclaim = (self._reclaim | left) - set(refused)
            self._refused = frozenset(refused)
            self._role = next(iter(refused.values()), "")
        if not self._reclaim:
            if refused or self._owed_ids:
                self._owe()  # refused: an erasure run again once the role owns them rewrites
            return not refused
        if self.reclaim_in_background:
            self._reclaim_soon()
            return False
        return self._rewrite_or_owe() and not self._refused

    def _rewrite_or_owe(self, lock_wait_ms: int | None = None, owe: bool = True) -> bool:
        """_rewrite, then the audit's word on it: DONE for what was owed before (every table
        of it was taken), then OWED with what is left (a lock not granted, a table the role
        may not rewrite), which an erasure run again, from any process, rewrites. `owe`:
        False while the console's thread will try again (it owes once it gives up)."""
        done = self._rewrite(lock_wait_ms)
        if done or owe:
            self._owe()
        return done

    def _owe(self) -> None:
        with _RECLAIM_LOCK:
            left, covered = sorted(self._reclaim | self._refused), sorted(self._owed_ids)
            self._owed_ids = frozenset()
        now = datetime.now(timezone.utc)
        if covered:
            self._audit(DONE, None, {"ids": covered}, now)
        if left:
            self._audit(OWED, None, {"tables": left}, now)

    def rewrite_refused(self) -> tuple[str, list[str]]:
        """(the session's role, the tables the last checkpoint_wal could not rewrite because
        the role does not own them); ("", []) when none."""
        return self._role, sorted(self._refused)

    def _rewrite(self, lock_wait_ms: int | None = None) -> bool:
        """VACUUM FULL, then ANALYZE, of each table still to rewrite; False when a lock was not
        granted. A table whose file did not change was skipped by the server: refused."""
        todo = self._reclaim
        with self.pool.connection() as conn:  # one connection: the SET applies to the VACUUMs
            self._local.conn = conn
            try:
                self._exec("SELECT set_config('lock_timeout', %(t)s, false)",
                           {"t": f"{lock_wait_ms or self.reclaim_lock_wait_ms}ms"})
                for table, rewrite in RECLAIM.items():
                    if table in todo:
                        self._rewrite_one(table, rewrite)
            except psycopg.errors.LockNotAvailable:
                return False
            finally:
                self._local.conn = None
                conn.execute("RESET lock_timeout")
        return not self._reclaim

    def _rewrite_one(self, table: str, rewrite: str) -> None:
        before = self._row(FILENODE, {"t": table})
        self._exec(rewrite)
        skipped = self._row(FILENODE, {"t": table}) == before
        with _RECLAIM_LOCK:
            self._reclaim = self._reclaim - {table}
            if skipped:
                self._refused = self._refused | {table}
                self._role = str((self._row("SELECT current_user AS r") or {}).get("r", ""))
                log.warning("the rewrite of %s after an erasure was skipped by the server: the "
                            "role %s must own it", table, self._role)

    def _reclaim_soon(self) -> None:
        """Start the rewriting thread unless it runs already (it then takes the new tables)."""
        with _RECLAIM_LOCK:
            if self._reclaimer is not None:
                return
            self._reclaimer = threading.Thread(target=self._reclaim_loop, daemon=True,
                                               name="ivr-erasure-rewrite")
            self._reclaimer.start()

    def _reclaim_loop(self) -> None:
        """Rewrite once the pool served nothing for reclaim_delay_s (each of the console's
        requests takes a connection), or reclaim_max_wait_s after the last erasure; again
        until nothing is left."""
        try:
            seen, failed = -1, 0
            while True:
                with _RECLAIM_LOCK:
                    stop = not self._reclaim or failed >= self.reclaim_background_tries
                    gave_up = bool(self._reclaim) and stop
                    since = self._last_erasure
                    if stop:  # a later erasure starts a thread of its own
                        self._reclaimer = None
                if gave_up:
                    log.warning("the rewrite after an erasure found its tables busy %d times: "
                                "the next erasure retries it", failed)
                    self._owe()  # an erasure run again, from any process, rewrites them
                if stop:
                    return
                now, used = time.monotonic(), self.pool.get_stats().get("requests_num", 0)
                if (used == seen and now >= since + self.reclaim_delay_s) or \
                        now >= since + self.reclaim_max_wait_s:
                    if not self._rewrite_or_owe(self.reclaim_background_lock_wait_ms,
                                                owe=False):
                        time.sleep(self.reclaim_retry_s * 2 ** failed)
                        failed += 1
                    seen = -1
                    continue
                seen = used
                time.sleep(self.reclaim_delay_s)
        except Exception as exc:  # noqa: BLE001 - the store closed, the server gone: say it
            log.warning("the rewrite after an erasure stopped (%s): the next erasure "
                        "retries it", type(exc).__name__)
            with _RECLAIM_LOCK:
                self._reclaimer = None
