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
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq


@contextmanager
def begun(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Pipeline]:
    """One transaction in pipeline mode on a pooled autocommit connection, committed when the
    block ends (the pipeline's last Sync carries the COMMIT). When it raises, the pool's
    `connection()` block rolls it back (psycopg's `with conn`), as it does any other."""
    with conn.pipeline() as pipe:
        conn.execute("BEGIN")  # queued: it leaves with the first statement
        yield pipe
        conn.execute("COMMIT")  # leaves with the deferred writes, on the pipeline's Sync


def rows_of(cur: psycopg.Cursor[Any]) -> tuple[list[Any], int]:
    """A statement's rows (none for a write without RETURNING) and the rows it touched."""
    # its status, not cur.description: that builds a Column object a field, each time
    res = cur.pgresult
    rows = cur.fetchall() if res is not None and res.status == pq.ExecStatus.TUPLES_OK else []
    return rows, cur.rowcount
