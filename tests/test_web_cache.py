"""The console's refreshing cache: a fresh value is served as is, a stale one is served while
one background computation runs, the first request computes in line, a drop makes the next
request compute afresh, and a failure reaches the request instead of being kept."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from ivr.web.cache import Refreshing


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_fresh_stale_and_dropped_values() -> None:
    clock, calls, gate = Clock(), [], threading.Event()
    gate.set()

    def compute(key: str) -> str:
        gate.wait(5)
        calls.append(key)
        return f"{key}{len(calls)}"
    with ThreadPoolExecutor(max_workers=1) as worker:
        cache = Refreshing(compute, 1.0, worker, clock)
        assert cache.get("a") == "a1"          # first: computed in line
        clock.t = 0.5
        assert cache.get("a") == "a1" and calls == ["a"]  # fresh: no computation
        clock.t = 2.0
        gate.clear()
        assert cache.get("a") == "a1"          # stale: served at once, refresh started
        assert cache.get("a") == "a1"          # ... and only one refresh at a time
        gate.set()
        worker.submit(lambda: None).result(5)  # the worker has finished the refresh
        assert cache.get("a") == "a2" and calls == ["a", "a"]
        cache.drop("a")
        assert cache.get("a") == "a3"          # dropped: computed again in line


def test_a_failure_reaches_the_request_and_is_not_kept() -> None:
    outcomes = [RuntimeError("store away"), "ok"]

    def compute(key: str) -> str:
        got = outcomes.pop(0)
        if isinstance(got, Exception):
            raise got
        return got
    with ThreadPoolExecutor(max_workers=1) as worker:
        cache = Refreshing(compute, 1.0, worker, Clock())
        with pytest.raises(RuntimeError, match="store away"):
            cache.get("k")
        assert cache.get("k") == "ok"


def test_concurrent_first_requests_share_one_computation() -> None:
    started, release, calls = threading.Event(), threading.Event(), []

    def compute(key: str) -> int:
        calls.append(key)
        started.set()
        release.wait(5)
        return 42
    with ThreadPoolExecutor(max_workers=1) as worker:
        cache = Refreshing(compute, 1.0, worker, Clock())
        results: list[int] = []
        first = threading.Thread(target=lambda: results.append(cache.get("k")))
        first.start()
        started.wait(5)
        second = threading.Thread(target=lambda: results.append(cache.get("k")))
        second.start()
        release.set()
        first.join(5)
        second.join(5)
    assert results == [42, 42] and calls == ["k"]


def test_an_overview_is_encoded_once_for_every_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    from ivr.web import api
    calls: list[object] = []
    real = api.json.dumps

    def counting(obj, **kw):  # type: ignore[no-untyped-def]
        calls.append(obj)
        return real(obj, **kw)
    monkeypatch.setattr(api.json, "dumps", counting)
    kept: dict = {}
    first = {"counts": {"busy": 1}, "campaign": "démo"}
    texts = {api._event_text(kept, "demo", first) for _ in range(50)}
    assert texts == {'data: {"counts": {"busy": 1}, "campaign": "démo"}\n\n'} and len(calls) == 1
    second = {"counts": {"busy": 2}, "campaign": "démo"}  # the cache refreshed: a new object
    assert api._event_text(kept, "demo", second) == \
        'data: {"counts": {"busy": 2}, "campaign": "démo"}\n\n' and len(calls) == 2


def test_a_drop_during_a_refresh_serves_neither_the_old_value_nor_that_refresh() -> None:
    """Found in review: a drop while a background refresh ran only marked it, so the old value
    (listing a number just erased) was served until the refresh ended, and the refresh's own
    value, read before the erasure, once more after."""
    clock, n, started, gate = Clock(), [0], threading.Event(), threading.Event()

    def compute(key: str) -> str:
        n[0] += 1
        mine = n[0]
        if mine == 2:  # the background refresh: read before the write, slow
            started.set()
            gate.wait(5)
        return f"v{mine}"
    with ThreadPoolExecutor(max_workers=1) as worker:
        cache = Refreshing(compute, 1.0, worker, clock)
        assert cache.get("a") == "v1"
        clock.t = 2.0
        assert cache.get("a") == "v1"  # stale: served, refresh v2 started
        assert started.wait(5)
        cache.drop("a")  # the erasure
        assert cache.get("a") == "v3"  # computed afresh in line, not v1
        gate.set()
        worker.submit(lambda: None).result(5)
        assert cache.get("a") == "v3"  # v2, read before the drop, is never served


def test_a_value_older_than_stale_max_is_computed_in_line() -> None:
    """An erasure made outside the console (`ivr gdpr erase`) cannot drop the console's keys:
    a value older than stale_max_s is not served even once."""
    clock, calls, gate = Clock(), [], threading.Event()
    gate.set()

    def compute(key: str) -> str:
        gate.wait(5)
        calls.append(key)
        return f"{key}{len(calls)}"
    with ThreadPoolExecutor(max_workers=1) as worker:
        cache = Refreshing(compute, 1.0, worker, clock, stale_max_s=5.0)
        assert cache.get("a") == "a1"
        clock.t = 4.0
        gate.clear()
        assert cache.get("a") == "a1"  # stale, under the bound: served, refreshed behind
        gate.set()
        worker.submit(lambda: None).result(5)
        clock.t = 20.0  # nobody asked for 16 s
        assert cache.get("a") == "a3"  # too old to serve: computed in line
