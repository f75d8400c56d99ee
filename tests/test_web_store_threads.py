"""The console's stores per thread (ivr/web/app.py Stores): anyio ends a pool thread idle for
10 s and starts a new one for the next request, and each new thread opens its own SQLite
store. The ended threads' stores are closed as new ones open: the console's open files stay
bounded over page loads separated by quiet spells (they were kept until shutdown, ~5
connections per page load, until requests answered "Too many open files")."""
from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import threading
import time
from typing import Any

import anyio._backends._asyncio as anyio_asyncio
import httpx
import pytest
import uvicorn

from conftest import Backend, backend_sqlite_only
from web_fixture import CAMPAIGN, NOW, make_web
from ivr.web.app import Stores
from ivr.web_users import new_token, token_hash

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
IDLE_S = 0.1  # anyio's idle expiry of a pool thread, 10 s in production
BURSTS = 10
PAGE = ["overview", "contacts", "prompts", "report.json", "preflight", "overview"]


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _workers(before: set[threading.Thread]) -> int:
    """The pool threads alive that were not there before the console started (another test
    of this process may have left its own)."""
    return sum(isinstance(t, anyio_asyncio.WorkerThread) and t not in before
               for t in threading.enumerate())


def _settle(port: int, token: str, stores: Stores, before: set[threading.Thread],
            timeout_s: float = 20.0) -> None:
    """Bring the console to the same state before each count, whatever number of pool threads
    the page load happened to use (it varies with the machine's load): after the quiet spell
    the next request reuses one idle thread and ends the others (anyio prunes expired workers
    only when it hands out work); a thread that opens a store then closes the ended threads'
    stores, here a short-lived one of the test's, as a new pool thread would."""
    time.sleep(IDLE_S * 3)
    assert asyncio.run(_page_load(port, token, ["overview"])) == {200}
    deadline = time.monotonic() + timeout_s
    while _workers(before) > 1:
        assert time.monotonic() < deadline, f"{_workers(before)} pool threads still alive"
        time.sleep(IDLE_S / 2)
    probe = threading.Thread(target=stores.get)
    probe.start()
    probe.join(10)


def _pooled(stores: Stores) -> int:
    """The connections a PostgreSQL store's pool holds now: it opens them as requests wait, up
    to its max_size, and keeps them (its descriptors, not a leak); none on SQLite."""
    pool = getattr(stores._shared, "pool", None)
    return int(pool.get_stats()["pool_size"]) if pool is not None else 0


def _serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, int]:
    """The console served as `ivr web` serves it: uvicorn, its own event loop and pool."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, port


async def _page_load(port: int, token: str, page: list[str] = PAGE) -> set[int]:
    """One page's requests at once (a browser's burst): several pool threads."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                 headers={"Authorization": f"Bearer {token}"}) as c:
        rs = await asyncio.gather(*(c.get(f"/api/campaigns/{CAMPAIGN}/{p}") for p in page))
    return {r.status_code for r in rs}


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_page_loads_after_quiet_spells_do_not_pile_up_open_files(
        backend: Backend, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(anyio_asyncio.WorkerThread, "MAX_IDLE_TIME", IDLE_S)
    web = make_web(tmp_path, monkeypatch, backend)
    token = new_token()
    web.store.add_api_token("vera", token_hash(token), NOW)
    before = set(threading.enumerate())
    server, thread, port = _serve(web.app)
    try:
        fds = []
        for _ in range(BURSTS):
            assert asyncio.run(_page_load(port, token)) == {200}
            _settle(port, token, web.app.state.stores, before)
            fds.append(_fds() - _pooled(web.app.state.stores))
    finally:
        server.should_exit = True
        thread.join(10)
    # Warm after two loads; eight more add nothing lasting (before: ~10 descriptors each),
    # counted in the same settled state each time, the PostgreSQL pool's connections apart
    assert max(fds[1:]) - fds[1] <= 2, f"open files after each page load: {fds}"


def _alive(store: Any) -> bool:
    try:
        store.db.conn.total_changes
    except sqlite3.ProgrammingError:  # closed
        return False
    return True


@backend_sqlite_only  # a remote store is one shared store (its own pool): nothing per thread
def test_an_ended_threads_store_is_closed_and_a_live_ones_is_not(
        backend: Backend, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    web = make_web(tmp_path, monkeypatch, backend)
    opened: list[Any] = []

    def factory() -> Any:
        opened.append(web.open())
        return opened[-1]
    stores = Stores(factory)
    release, ready = threading.Event(), threading.Event()
    kept: list[Any] = []

    def long_lived() -> None:  # a thread still serving (an export, a busy pool thread)
        kept.append(stores.get())
        ready.set()
        release.wait(30)
        kept.append(stores.get().campaigns())  # its store still answers
    stayer = threading.Thread(target=long_lived)
    stayer.start()
    ready.wait(10)
    for _ in range(20):
        t = threading.Thread(target=stores.get)
        t.start()
        t.join()
    release.set()
    stayer.join(10)
    assert kept[1] == [] and _alive(kept[0])
    open_now = [s for s in opened if _alive(s)]
    # The long-lived thread's and the last ended thread's (closed when the next one opens).
    assert len(open_now) <= 2, f"{len(open_now)} of {len(opened)} stores still open"
    stores.close()
    assert not any(_alive(s) for s in opened)
