"""The recent oppositions the IVR checks on answer (agi_ivr.Opposed): the run's tick reads them
(store.optouts_since), so an answered call never waits on the store. Both backends
(conftest.backend); the call tests use the fake PBX over real AMI and FastAGI."""
from __future__ import annotations

import asyncio
import sqlite3
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from ivr.callflow.opposed import KEEP_S, LOOKBACK_S, MERGE_S, Opposed
from ivr.telephony import fake_callee
from ivr.telephony.fake_pbx import answer

from conftest import Backend
from test_dialer import fiction, rig
from test_run_control import start_run

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)


def h(name: str) -> str:
    """A number_hash as the store writes them (64 hex digits), told apart by `name`."""
    return name.encode().hex().ljust(64, "0")[:64]


def _insert(store: Any, number_hash: str, created: datetime, row_id: int | None = None) -> None:
    """An opposition row as another process commits it (`row_id`: one given at its insert,
    committed after higher ones: PostgreSQL's late commit)."""
    cols, vals = "number_hash, via, created_at", [number_hash, "email", created.isoformat()]
    if row_id is not None:
        cols, vals = "id, " + cols, [row_id, *vals]
    with store.transaction():
        store.db.execute(f"INSERT INTO optouts ({cols}) VALUES ({', '.join('?' * len(vals))})",
                         vals)


def test_the_poll_starts_with_the_last_minutes_then_reads_only_new_rows(backend: Backend) -> None:
    store = backend.open()
    _insert(store, h("old"), NOW - timedelta(seconds=LOOKBACK_S + 60))
    _insert(store, h("recent"), NOW - timedelta(seconds=30))
    ticks = iter(range(0, 1000, 1))
    opposed = Opposed(overlap_s=0.0, monotonic=lambda: float(next(ticks)))
    opposed.poll(store, NOW)
    assert h("recent") in opposed and h("old") not in opposed and len(opposed) == 1
    _insert(store, h("new"), NOW)
    opposed.poll(store, NOW)
    assert h("recent") in opposed and h("new") in opposed and len(opposed) == 2
    # Each later poll reads past the last id read (the primary key's range)
    assert store.optouts_since(None, opposed.top) == []


def test_a_row_committed_late_is_still_read_within_the_overlap(backend: Backend) -> None:
    store = backend.open()
    _insert(store, h("first"), NOW, row_id=10)
    now = [0.0]
    opposed = Opposed(overlap_s=60.0, monotonic=lambda: now[0])
    opposed.poll(store, NOW)
    _insert(store, h("third"), NOW, row_id=12)
    now[0] = 1.0
    opposed.poll(store, NOW)
    _insert(store, h("second"), NOW, row_id=11)  # its id was given before 12 was read
    now[0] = 30.0
    opposed.poll(store, NOW)
    assert all(h(x) in opposed for x in ("first", "second", "third"))
    assert len(opposed) == 3 and opposed.gaps == {}  # 11 read, no longer awaited
    assert opposed.top == 12


def test_oppositions_read_longer_ago_than_the_window_are_dropped(backend: Backend) -> None:
    """A call claimed after an opposition was written was refused by the claim's own check:
    on answer only those of the last KEEP_S matter (before: every one since the run began)."""
    store = backend.open()
    _insert(store, h("at-start"), NOW - timedelta(seconds=30))
    now = [0.0]
    opposed = Opposed(overlap_s=0.0, monotonic=lambda: now[0])
    opposed.poll(store, NOW)  # the first read (the last LOOKBACK_S) is a batch too
    now[0] = KEEP_S - 100
    _insert(store, h("later"), NOW)
    opposed.poll(store, NOW)
    assert h("at-start") in opposed and h("later") in opposed
    now[0] = KEEP_S + 1
    opposed.poll(store, NOW)
    assert h("at-start") not in opposed and h("later") in opposed and len(opposed) == 1
    now[0] = 2 * KEEP_S
    opposed.poll(store, NOW)
    assert h("later") not in opposed and len(opposed) == 0


class _Counting:
    """The store as the poll sees it, counting the rows each read returns."""

    def __init__(self, store: Any) -> None:
        self.store, self.rows = store, 0

    def optouts_since(self, *args: Any) -> list[Any]:
        rows = self.store.optouts_since(*args)
        self.rows += len(rows)
        return rows


def test_a_steady_stream_of_oppositions_is_read_once_into_few_batches(backend: Backend) -> None:
    """An opposition import beside a run (rows at every tick for minutes): each row is read
    once and the batches stay few, so a poll and a look-up cost what is new (before: every
    poll read again the last 60 s of rows on PostgreSQL and searched them through one batch
    per poll, ~1,200 after 600 s: 210 ms a poll, 281 us a look-up at 600)."""
    store = backend.open()
    counting, now = _Counting(store), [0.0]
    opposed = Opposed(overlap_s=60.0, monotonic=lambda: now[0])
    opposed.poll(counting, NOW)
    written = []
    for tick in range(240):  # two minutes of 0.5 s ticks
        for j in range(2):
            written.append(h(f"s{tick}-{j}"))
            _insert(store, written[-1], NOW)
        now[0] += 0.5
        opposed.poll(counting, NOW)
    assert counting.rows == len(written) == len(opposed)
    assert len(opposed.batches) <= 120 / MERGE_S + 1, len(opposed.batches)
    assert all(x in opposed for x in written) and h("never") not in opposed


def test_a_hand_written_created_at_does_not_stop_the_first_read(backend: Backend) -> None:
    """A row whose created_at is no time (written by hand or another tool) is not recent;
    the run still starts (before, on PostgreSQL: InvalidDatetimeFormat at the run's start)."""
    store = backend.open()
    with store.transaction():
        store.db.execute("INSERT INTO optouts (number_hash, via, created_at) VALUES (?, ?, ?)",
                         [h("odd"), "email", ""])
    _insert(store, h("recent"), NOW - timedelta(seconds=30))
    opposed = Opposed()
    opposed.poll(store, NOW)
    assert h("recent") in opposed and h("odd") not in opposed


def _hash(i: int) -> str:
    return f"{i:064x}"[::-1]  # distinct in their first 16 digits


class _Bulk:
    """A store whose first read gives `n` rows, made there (the poll's interface alone)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def optouts_since(self, since: datetime | None, after_id: int = 0,
                      gaps: Any = ()) -> list[dict[str, Any]]:
        n, self.n = self.n, 0
        return [{"id": i + 1, "number_hash": _hash(i)} for i in range(n)]


def test_a_bulk_import_of_oppositions_costs_little_memory() -> None:
    """100,000 oppositions read in one poll (`ivr optout import` during a run): kept as 64-bit
    keys in a sorted array, ~0.8 MB (before: a set of their 64-character strings, ~16 MB,
    held for the rest of the run: ~150 MB per million)."""
    opposed = Opposed()
    tracemalloc.start()
    try:
        opposed.poll(_Bulk(100_000), NOW)
        kept, _ = tracemalloc.get_traced_memory()  # what the poll left behind
    finally:
        tracemalloc.stop()
    assert kept < 4_000_000, kept  # well under 20 MB
    assert len(opposed) == 100_000
    assert _hash(0) in opposed and _hash(99_999) in opposed and _hash(100_000) not in opposed


def test_an_answered_call_does_not_wait_on_a_store_that_is_away(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store goes away while the call rings (every read fails; one of a number's
    opposition waits 1 s first, a connect timeout's silence): the intro starts at once."""
    n = fiction(9)
    waits: list[float] = []  # FastAGI session start (the answer) -> first prompt, per call
    run = fake_callee.AgiLeg.run

    class Stamped(list):  # the AGI commands, each with when it arrived
        def append(self, command: str) -> None:
            if command.upper().startswith(("STREAM FILE", "GET OPTION")) and \
                    len(waits) == len(started) - 1:
                waits.append(time.monotonic() - started[-1])
            super().append(command)
    started: list[float] = []

    async def timed(leg: Any, url: str) -> bool:
        started.append(time.monotonic())
        leg.call.agi = Stamped()
        return await run(leg, url)
    monkeypatch.setattr(fake_callee.AgiLeg, "run", timed)
    error = sqlite3.OperationalError if backend.name == "sqlite" else psycopg.OperationalError

    def away(*args: Any, **kw: Any) -> Any:
        raise error("the store is away")

    def slow_away(*args: Any, **kw: Any) -> Any:
        time.sleep(1.0)
        raise error("connection timeout expired")

    async def scenario() -> list[dict[str, Any]]:
        async with rig(backend, {n: answer(["1"], delay_s=1.0, prompt_s=0.1)},
                       max_concurrent=1, ring_timeout_s=10) as r:
            task, _ = await start_run(r)
            await r.until(lambda: len(r.pbx.originates) == 1)
            for name in ("optouts_since", "run_control", "pending_contacts", "plan_contacts"):
                monkeypatch.setattr(r.store, name, away, raising=False)
            monkeypatch.setattr(r.store, "is_opted_out", slow_away)
            await r.until(lambda: bool(waits), timeout=15)
            r.dialer.writer.flush()
            task.cancel()
            return []

    asyncio.run(scenario())
    assert waits and waits[0] < 0.5, waits  # before: the 1 s of the read on answer
