"""The call's hot transactions in libpq's pipeline mode: fewer round trips, same statements.

A transaction through psycopg's own `conn.transaction()` costs a round trip for its BEGIN, one
a statement, and one for its COMMIT: 17 a call setup on the capacity bench, each one a wait of
the store's thread and a wake-up of the server's process. In pipeline mode the client sends
without waiting and reads results when it needs them:
- the BEGIN goes out with the transaction's first statement;
- a write whose result nobody reads before the COMMIT (a contact's status, say) goes out
  with the COMMIT, and its error fails the transaction there, all or nothing as before;
- a statement whose result is only read once the transaction is over (the claim's INSERT …
  RETURNING) goes out with the COMMIT as well.

Each statement whose result is read before the COMMIT still waits for it, so the locks and the
reads happen in the order the code says. Only for the statements of the hot paths: a script of
several statements, a COPY or a named cursor cannot run in pipeline mode (psycopg refuses
them), so the store's other transactions stay as they were.

Fewer round trips did not mean less client CPU: psycopg's pipeline costs ~130 us of its own a
transaction (bench/RESULTS.md). An answered call's outcome and a key's proof are therefore one
command each since schema 23, a server function (pg_functions.py), and an unanswered call's
outcome since schema 24; the claim, which judges in Python between its read and its write,
stays a pipelined transaction (a server function judging nothing, called twice, was measured
and not kept: bench/RESULTS.md, 2026-12-07).
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq
from psycopg_pool import ConnectionPool


@contextmanager
def begun(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Pipeline]:
    """One transaction in pipeline mode on a pooled autocommit connection, committed when the
    block ends (the pipeline's last Sync carries the COMMIT). When it raises, the pool's
    `connection()` block rolls it back (psycopg's `with conn`), as it does any other."""
    with conn.pipeline() as pipe:
        try:
            conn.execute("BEGIN")  # queued: it leaves with the first statement
            yield pipe
            conn.execute("COMMIT")  # leaves with the deferred writes, on the pipeline's Sync
        except BaseException:
            _drain(pipe)
            raise


def _drain(pipe: psycopg.Pipeline) -> None:
    """After a failure: the results still queued read and dropped, so the pipeline ends
    clean. Otherwise psycopg logs a warning ("error ignored terminating … pipeline aborted")
    for the statements the server skipped after the one that failed, which the caller hears
    of anyway."""
    try:
        pipe.sync()
    except psycopg.Error:
        pass  # the failure itself is what propagates


def rows_of(cur: psycopg.Cursor[Any]) -> tuple[list[Any], int]:
    """A statement's rows (none for a write without RETURNING) and the rows it touched."""
    # its status, not cur.description: that builds a Column object a field, each time
    res = cur.pgresult
    rows = cur.fetchall() if res is not None and res.status == pq.ExecStatus.TUPLES_OK else []
    return rows, cur.rowcount


class Pipelined:
    """PgCore's outermost transactions' sessions, its pipelined transactions and the
    statements sent in them. PgCore gives the pool, the thread's transaction (`_local`),
    transaction(), _conn() and the errors after which a session is closed, not reused."""
    pool: ConnectionPool
    _local: threading.local
    CLOSES_SESSION: tuple[type[BaseException], ...] = ()

    if TYPE_CHECKING:  # PgCore's
        def transaction(self) -> AbstractContextManager[None]: ...

        def _conn(self) -> psycopg.Connection[Any]: ...

    @contextmanager
    def _session(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection bound to this thread for an outermost transaction. After an
        error of CLOSES_SESSION it is closed, and the pool replaces it: a read-only session
        never turns writable."""
        with self.pool.connection() as conn:
            self._local.conn = conn
            try:
                yield conn
            except self.CLOSES_SESSION:
                conn.close()
                raise
            finally:
                self._local.conn = None

    @contextmanager
    def pipelined(self) -> Iterator[None]:
        """transaction(), in libpq's pipeline mode when it is the outermost: for the hot
        paths, whose statements are single and parameterised. Inside another transaction it
        is that one's, as transaction() is."""
        if getattr(self._local, "conn", None) is not None:
            with self.transaction():
                yield
            return
        with self._session() as conn, begun(conn) as pipe:
            self._local.pipe = pipe
            try:
                yield
            finally:
                self._local.pipe = None

    def _later(self, sql: str, params: Any = ()) -> psycopg.Cursor[Any]:
        """A statement of this thread's transaction whose result is read later, if at all
        (_result_of): in a pipelined one it leaves with the next round trip, the COMMIT's
        often, and its error fails the transaction there; in any other it runs now."""
        return self._conn().execute(sql, params or None)

    def _result_of(self, cur: psycopg.Cursor[Any]) -> tuple[list[Any], int]:
        """A _later statement's rows and count: there once its transaction committed; read
        now if it is still queued (the transaction is a batch's, still open)."""
        if cur.pgresult is None and (pipe := getattr(self._local, "pipe", None)) is not None:
            pipe.sync()
        return rows_of(cur)
