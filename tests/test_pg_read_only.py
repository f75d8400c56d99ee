"""A PostgreSQL server that refuses writes for a while (a failover onto a replica, a DBA's
default_transaction_read_only = on): the writes wait and land once it is writable again, a
claim pauses the run instead of crashing it. Against the private test cluster."""
from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from ivr.errors import StoreError
from ivr.store.pg import PgStore
from ivr.store.pg_cluster import PgCluster
from ivr.store.safe_writes import STORE_ERRORS, SafeWriter
from conftest import Backend
from ivr.telephony.fake_pbx import answer
from test_dialer import fiction, rig
from test_hard_stop_outcomes import in_prompt
from test_pg_store import KEY, T0, add, claim
from test_run_loop import run_campaign

NUMS = [f"+3319900120{i}" for i in range(3)]


def read_only(cluster: PgCluster, url: str, on: bool) -> None:
    """The database's sessions read-only (or not again) from their start, as after a failover
    onto a replica; the sessions open now are ended, as the failover ends them."""
    db = conninfo_to_dict(url)["dbname"]
    with cluster.admin() as conn:
        value = sql.SQL("on" if on else "off")
        conn.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = {}")
                     .format(sql.Identifier(db), value))
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = %s AND pid <> pg_backend_pid()", (db,))


def writes(s: PgStore, calls: list[dict[str, Any]]) -> list[Any]:
    """An unanswered call's outcome and a key-9 opposition per call, as the dialer writes."""
    out: list[Any] = []
    for k, c in enumerate(calls):
        out.append(lambda c=c, k=k: s.finish_unanswered(c["id"], "busy", "17",
                                                        T0 + timedelta(seconds=k), None))
        out.append(lambda c=c, k=k: s.add_optout(c["number"], "dtmf", T0 + timedelta(seconds=k),
                                                 campaign="c1"))
    return out


async def write_then_recover(s: PgStore, fns: list[Any], recover: Any) -> tuple[str, int]:
    """Write through a SafeWriter while the server refuses; what it said and kept queued; then
    recover and wait until everything is written."""
    w = SafeWriter(s.transaction, retry_s=0.2)
    for fn in fns:
        w.write(fn)
        await asyncio.sleep(0)
    await w.settled()
    pending = len(w.pending)
    await asyncio.sleep(0.5)  # a few retries on the read-only server
    await asyncio.to_thread(recover)
    await asyncio.wait_for(w.drained.wait(), 60)
    return w.last_problem, pending


def landed(s: PgStore) -> tuple[list[Any], int]:
    rows = s.q("SELECT outcome FROM calls ORDER BY id")
    return [r["outcome"] for r in rows], len(s.q("SELECT id FROM optouts"))


def test_writes_during_a_failover_onto_a_read_only_server_land_once_it_is_writable(
        pg_store_url: str, pg_cluster: PgCluster) -> None:
    s = PgStore.open(pg_store_url, optout_key=KEY, connect_timeout_s=1)
    try:
        calls = [claim(s, add(s, n)).call for n in NUMS]
        later = add(s, "+33199001209")
        read_only(pg_cluster, pg_store_url, True)
        for _ in range(2):  # a dead session, then a read-only server
            with pytest.raises(STORE_ERRORS):  # the run's claim: caught, the run pauses
                claim(s, later)
        problem, pending = asyncio.run(write_then_recover(
            s, writes(s, calls), lambda: read_only(pg_cluster, pg_store_url, False)))
        assert pending == 2 * len(calls), problem  # queued, in order: none dropped
        assert problem and "\n" not in problem  # the pool says why in its own log lines
        assert landed(s) == (["busy"] * len(calls), len(calls))
    finally:
        s.close()


def test_a_session_left_read_only_is_replaced_and_the_writes_land(pg_store_url: str) -> None:
    """One pooled session turned read-only (as a replica's is until it is promoted): its
    writes are retried, on a new session once the server takes them, not dropped."""
    s = PgStore.open(pg_store_url, optout_key=KEY, pool_size=1, connect_timeout_s=1)
    try:
        calls = [claim(s, add(s, n)).call for n in NUMS]
        s.q("SET default_transaction_read_only = on")  # the pool's only session
        problem, pending = asyncio.run(write_then_recover(s, writes(s, calls), lambda: None))
        assert "read-only transaction" in problem
        assert pending == 2 * len(calls)
        assert landed(s) == (["busy"] * len(calls), len(calls))
        assert s.one("SHOW default_transaction_read_only")["default_transaction_read_only"] \
            == "off"
    finally:
        s.close()


def test_a_read_only_server_is_refused_at_connect_naming_it(pg_store_url: str,
                                                            pg_cluster: PgCluster) -> None:
    s = PgStore.open(pg_store_url, optout_key=KEY, connect_timeout_s=1)
    try:
        read_only(pg_cluster, pg_store_url, True)
        for _ in range(2):  # a dead session, then a new one refused
            with pytest.raises(psycopg.OperationalError):  # STORE_ERRORS: the run pauses
                s.q("SELECT 1 AS x")
    finally:
        read_only(pg_cluster, pg_store_url, False)
        s.close()


def test_a_store_opened_on_a_read_only_server_is_refused_in_one_line(
        pg_store_url: str, pg_cluster: PgCluster) -> None:
    """Before: the test connection and the pool's first took a read-only server, and an
    `ivr run` started there opened and failed only at its first write."""
    PgStore.open(pg_store_url, optout_key=KEY, connect_timeout_s=1).close()  # migrated
    read_only(pg_cluster, pg_store_url, True)
    try:
        with pytest.raises(StoreError, match="cannot open the store .*read-only") as refused:
            PgStore.open(pg_store_url, optout_key=KEY, connect_timeout_s=1).close()
        assert "\n" not in str(refused.value)
    finally:
        read_only(pg_cluster, pg_store_url, False)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_failover_mid_run_pauses_the_run_and_keeps_every_opposition(
        backend: Backend, pg_cluster: PgCluster) -> None:
    """The server turns read-only while callees are in the intro and then press 9: the
    oppositions they heard confirmed land once it is writable again; the run pauses ("store
    unavailable") meanwhile, then places the other calls, instead of ending on the error."""
    numbers = [fiction(i) for i in range(4)]
    url = str(backend.url)

    async def scenario() -> tuple[list[str], list[dict[str, Any]], int]:
        async with rig(backend, {n: answer(["9"], prompt_s=1.0) for n in numbers},
                       max_concurrent=2, ring_timeout_s=30) as r:
            run = asyncio.ensure_future(run_campaign(r))
            await r.until(lambda: any(in_prompt(r, n, "intro") for n in numbers))
            await asyncio.to_thread(read_only, pg_cluster, url, True)  # the failover
            await asyncio.sleep(7)  # 9s pressed; writes, claims past the pool's 5 s wait
            assert not run.done()
            await asyncio.to_thread(read_only, pg_cluster, url, False)
            report, snaps, _ = await asyncio.wait_for(run, 60)
            await r.settled()
            paused = [report.paused] + [s.paused for s in snaps if s.paused]
            calls = r.store.q("SELECT number, outcome FROM calls ORDER BY number")
            return paused, calls, len(r.store.q("SELECT id FROM optouts"))
    paused, calls, optouts = asyncio.run(scenario())
    assert paused[0], paused  # it said why it paused
    assert sorted({c["number"] for c in calls}) == numbers
    assert all(c["outcome"] for c in calls), calls
    assert optouts == len(numbers)
