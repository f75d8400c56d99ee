"""A run on PostgreSQL ends only once every outcome it wrote is in the store.

On a remote store (store.remote) the SafeWriter commits outcomes from a worker thread: a run's
last outcomes are still on their way when its last call leaves the dialer. The fake PBX over
real AMI and FastAGI, the whole `app.run_campaign` (its end and the controller's close), a
real PostgreSQL (the session's private cluster).
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg

from ivr import app
from ivr.campaign.clock import Clock
from ivr.store.pg import PgStore
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import FakePbx, answer, no_answer

from test_dialer import HASHES, SECRET, fiction, make_cfg


def pg_store(url: str, numbers: list[str]) -> PgStore:
    return seeded(PgStore.open(url, optout_key=b"test-key"), numbers)


def seeded(store: Any, numbers: list[str]) -> Any:
    """The store with `numbers` imported from one list and bound to campaign utest."""
    now = Clock().now()
    for n in numbers:
        store.add_contact(n, name=None, timezone=None, source="list", basis="consent",
                          acquired_on=None, extra="{}", status="pending", now=now)
    store.bind_contacts(numbers, campaign="utest", source="list", basis="consent",
                        acquired_on=None, now=now)
    return store


def run_on(cfg: Any, store: PgStore, callees: dict[str, Any]) -> Any:
    """The whole `app.run_campaign` against a fake PBX with these callees: its report."""
    async def scenario() -> Any:
        async with FakePbx(callees, user="ivr", secret=SECRET) as pbx:
            node = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", SECRET)
            report, _ = await asyncio.wait_for(
                app.run_campaign(cfg, store, node=node, hashes=HASHES), 60)
            return report
    return asyncio.run(scenario())


def fail_first_outcome(store: PgStore) -> list[int]:
    """The first outcome write meets a dropped connection (retryable: the SafeWriter queues
    it and writes it a second later); the ids it failed for."""
    failed: list[int] = []
    finish = store.finish_answered

    def flaky(call_id: int, *args: Any, **kw: Any) -> Any:
        if not failed:
            failed.append(call_id)
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return finish(call_id, *args, **kw)
    store.finish_answered = flaky  # type: ignore[method-assign]
    return failed


def test_the_last_outcome_lands_before_the_run_ends(tmp_path: Path, pg_url: str) -> None:
    """The run's only call ends; its outcome's first commit fails (PostgreSQL dropped the
    connection): the run must wait for the retry, not return and drop it with the loop."""
    number = fiction(10)
    store = pg_store(pg_url, [number])
    failed = fail_first_outcome(store)
    cfg = make_cfg(tmp_path)
    try:
        report = run_on(cfg, store, {number: answer(["1"])})
        calls = store.q("SELECT id, outcome, state FROM calls ORDER BY id")
    finally:
        store.close()
    assert failed, "the flaky write was never reached"
    assert report.originated == 1
    assert [(c["id"], c["outcome"]) for c in calls] == [(failed[0], "message_played")], calls
    assert report.why.startswith("all done"), report.why


def test_a_retry_written_as_the_last_call_ends_is_dialled(tmp_path: Path, pg_url: str) -> None:
    """The last call in flight ends with a retry: the run must plan on its outcome (written
    from a worker thread), not on a read that still sees the call in flight, and dial it."""
    number = fiction(11)
    store = pg_store(pg_url, [number])
    cfg = make_cfg(tmp_path, {"busy": 0.2, "no_answer": 0.2, "congestion": 0.2})
    try:
        report = run_on(cfg, store, {number: no_answer()})
        calls = store.q("SELECT attempt, outcome FROM calls ORDER BY id")
    finally:
        store.close()
    assert [(c["attempt"], c["outcome"]) for c in calls] == [(1, "no_answer"),
                                                              (2, "no_answer")], calls
    assert report.originated == 2
    assert report.why.startswith("all done"), report.why
