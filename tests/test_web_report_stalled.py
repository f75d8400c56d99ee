"""A report.csv download whose client stays connected but stops reading (a paused browser
download, a stalled script) held the export thread (one of two) and, on SQLite, the export's
read snapshot for as long as the connection lived: no checkpoint, a WAL growing with each
commit of the run, an erased number left in the -wal, and two such downloads stopped every
other. The export now gives up once the client took nothing for Pipe.STALL_S."""
from __future__ import annotations

import socket
import sqlite3
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from conftest import CALLER_ID, add_contact, attempt
from test_web_store_threads import _serve
from web_fixture import CAMPAIGN, NOW, PASSWORDS, csrf_of, make_web
from ivr.web import download

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _producing(monkeypatch: pytest.MonkeyPatch, data: bytes, times: int
               ) -> tuple[download.Pipe, threading.Thread]:
    """A producer writing `data` `times` over, in chunks of its size, into a pipe whose client
    is taken to have stalled after 0.3 s without taking anything."""
    monkeypatch.setattr(download.Pipe, "STALL_S", 0.3)
    pipe = download.Pipe()
    pipe.CHUNK = len(data)
    t = threading.Thread(target=download.produce,
                         args=(pipe, lambda out: [out.write(data) for _ in range(times)]))
    t.start()
    return pipe, t


def test_a_producer_whose_client_reads_nothing_gives_up_and_says_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pipe, t = _producing(monkeypatch, b"x" * 10, 10_000)
    t.join(5)
    assert not t.is_alive()  # the thread is free, though the client never left
    items = []
    while not pipe.q.empty():
        items.append(pipe.q.get_nowait())
    assert items[:-1] == [b"x" * 10] * download.Pipe.ROOM  # what had room, then the error
    assert isinstance(items[-1], download.Stalled) and items[-1].__traceback__ is None
    assert "read nothing for 0 s" in str(items[-1])


def test_a_client_that_takes_an_item_now_and_then_is_not_stalled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pipe, t = _producing(monkeypatch, b"y" * 10, 30)
    got = []
    while not got or got[-1] is not None:
        time.sleep(0.1)  # slower than the producer, faster than STALL_S
        got.append(pipe._taken(pipe.q.get(timeout=5)))
    t.join(5)
    assert got == [b"y" * 10] * 30 + [None]


def _checkpoint(path: Path) -> int:
    """PRAGMA wal_checkpoint(TRUNCATE)'s busy flag, from a connection of its own."""
    db = sqlite3.connect(path, timeout=1)
    try:
        return int(db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])
    finally:
        db.close()


def test_a_stalled_download_lets_go_of_the_sqlite_snapshot_and_the_export_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download.Pipe, "STALL_S", 5.0)
    web = make_web(tmp_path, monkeypatch)
    assert web.path is not None
    for i in range(400):
        c = add_contact(web.store, f"+3319{i:07d}", at=NOW, campaigns=(CAMPAIGN,))
        attempt(web.store, c, CAMPAIGN, CALLER_ID, NOW + timedelta(seconds=i))
    db = sqlite3.connect(web.path)
    cols = ", ".join(r[1] for r in db.execute("PRAGMA table_info(calls)")
                     if r[1] not in ("id", "channel_id", "token_hash"))
    for _ in range(8):  # 400 * 2**8: 102,400 calls, ~10 MB of CSV, more than the sockets hold
        db.execute(f"INSERT INTO calls ({cols}) SELECT {cols} FROM calls")
    db.commit()
    db.close()
    server, _, port = _serve(web.app)
    base = f"http://127.0.0.1:{port}"
    path = f"/api/campaigns/{CAMPAIGN}/report.csv"
    try:
        with httpx.Client(base_url=base, timeout=30) as vera:
            r = vera.post("/login", data={"username": "vera", "password": PASSWORDS["vera"],
                                          "csrf_token": csrf_of(vera.get("/login").text),
                                          "next": "/"})
            assert r.status_code == 303
            cookie = "; ".join(f"{k}={v}" for k, v in vera.cookies.items())
            stalled = []
            for _ in range(2):  # both export threads
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.connect(("127.0.0.1", port))
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n"
                          f"Cookie: {cookie}\r\n\r\n".encode())
                stalled.append(s)
            t0, held = time.monotonic(), 0
            while not held and time.monotonic() - t0 < 4:  # the exports begin (a loaded CI)
                web.store.set_hangup_cause(1, "16")  # the run commits meanwhile
                held = _checkpoint(web.path)
                time.sleep(0.1)
            assert held == 1  # held back by the stalled downloads' reads
            while _checkpoint(web.path) and time.monotonic() - t0 < 30:
                time.sleep(0.2)
            assert _checkpoint(web.path) == 0  # let go, the clients still connected
            whole = vera.get(path, headers={"Accept-Encoding": "identity"})
            assert whole.status_code == 200 and whole.content.count(b"\r\n") == 102_401
            for s in stalled:
                s.close()
    finally:
        server.should_exit = True
