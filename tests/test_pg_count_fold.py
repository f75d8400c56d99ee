"""PostgreSQL's report counts keep a row per key and writing connection (schema 10); the rows
of connections that are gone are folded into slot 0 when a controller registers (and every
FOLD_EVERY_S from its heartbeat), so the table stays bounded while the report is unchanged."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import psycopg
import pytest

from ivr.records.report import summary
from ivr.store.base import RunOwner
from ivr.store.pg import PgStore

TS = "2026-03-04T10:00:00.000Z"


@pytest.fixture
def pg(pg_store: PgStore) -> PgStore:
    return pg_store


def write_calls_from_a_connection(url: str, outcomes: list[str | None]) -> None:
    """Calls written by a connection of their own, which then goes away (as the pool's do)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for i, outcome in enumerate(outcomes):
            conn.execute("INSERT INTO calls (number, attempt, campaign, started_at, outcome) "
                         "VALUES (%s, %s, 'c1', %s, %s)",
                         (f"+3319900{i:04d}", 1 + i % 2, TS, outcome))


def count_rows(pg: PgStore) -> int:
    return int(pg.one("SELECT COUNT(*) AS n FROM call_counts")["n"])


def test_gone_connections_counts_are_folded_and_the_report_is_unchanged(
        pg: PgStore, pg_store_url: str) -> None:
    outcomes: list[str | None] = ["message_played", "declined", None, "busy"]
    for _ in range(5):  # five connections, each with its own rows for the same keys
        write_calls_from_a_connection(pg_store_url, outcomes)
    with psycopg.connect(pg_store_url, autocommit=True) as conn:  # one settles an open call
        conn.execute("UPDATE calls SET outcome = 'no_answer' WHERE id = (SELECT MIN(id) FROM "
                     "calls WHERE outcome IS NULL)")
    before = json.dumps(summary(pg, "c1"))
    keys = int(pg.one("SELECT COUNT(*) AS n FROM (SELECT DISTINCT campaign, attempt, source, "
                      "outcome FROM call_counts) k")["n"])
    assert count_rows(pg) > keys  # a row per key and connection
    owner = RunOwner(1, "host", datetime(2026, 3, 4, tzinfo=timezone.utc))
    with pg.hold_run(owner, "c1"):
        assert count_rows(pg) <= keys  # one row per key (a key summing to 0 is gone)
        assert json.dumps(summary(pg, "c1")) == before
        write_calls_from_a_connection(pg_store_url, ["declined"])  # writes go on after it
    assert summary(pg, "c1")["outcomes"]["declined"] == 5 * 1 + 1
