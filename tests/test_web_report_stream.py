"""report.csv streams (the first rows leave while the others are read) and is still the very
bytes of `ivr report --format csv` over a report of many chunks; a client that leaves frees the
export thread; a failure mid-way reaches the response instead of ending it as if complete.
The streamed download runs on both backends (conftest.backend)."""
from __future__ import annotations

import asyncio
import io
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import CALLER_ID, Backend, add_contact, attempt
from web_fixture import NOW, login
from ivr import config as config_mod
from ivr.web import create_app, download, service
from ivr.web_users import hash_password

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_streamed_csv_is_the_reports_bytes_over_many_chunks(
        backend: Backend, backend_cfg_file: Path, monkeypatch) -> None:
    monkeypatch.setenv("IVR_WEB_SECRET", "s" * 32)
    cfg = config_mod.load(backend_cfg_file)
    store = backend.open()
    name = cfg.campaign.name
    for i in range(1200):
        contact = add_contact(store, f"+3319{i:07d}", at=NOW, campaigns=(name,))
        attempt(store, contact, name, CALLER_ID, NOW + timedelta(seconds=i))
    store.add_user("vera", "viewer", hash_password("viewer-password-1"), NOW)
    out = io.StringIO()
    service.write_report_csv(store, name, out)
    expected = out.getvalue().encode("utf-8")
    assert len(expected) > 2 * download.Pipe.CHUNK and expected.count(b"\r\n") == 1201
    c = TestClient(create_app(cfg, backend.program), follow_redirects=False)
    login(c, "vera", "viewer-password-1")
    with c.stream("GET", f"/api/campaigns/{name}/report.csv",  # as a script asks: no gzip
                  headers={"Accept-Encoding": "identity"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        chunks = list(r.iter_raw())
    assert b"".join(chunks) == expected
    c.cookies.clear()
    assert c.get(f"/api/campaigns/{name}/report.csv").status_code == 401


def test_a_departed_client_frees_the_export_thread() -> None:
    pipe = download.Pipe()
    pipe.CHUNK = 10
    t = threading.Thread(target=download.produce,
                         args=(pipe, lambda out: [out.write(b"x" * 10) for _ in range(10_000)]))
    t.start()
    assert pipe.q.get(timeout=5) == b"x" * 10
    pipe.gone.set()
    t.join(5)
    assert not t.is_alive()


def test_a_failure_mid_way_reaches_the_response() -> None:
    pipe = download.Pipe()
    pipe.CHUNK = 10

    def write(out) -> None:  # type: ignore[no-untyped-def]
        out.write(b"y" * 10)
        raise RuntimeError("disk gone")
    download.produce(pipe, write)
    assert pipe.q.get_nowait() == b"y" * 10
    err = pipe.q.get_nowait()
    assert isinstance(err, RuntimeError) and str(err) == "disk gone"


def test_a_reader_waiting_when_the_response_ends_lets_go() -> None:
    """The response reads on its event loop (aget): when it ends (the client left), its wait
    is cancelled with it and leaves no wake-up pending, and the producer's next chunk finds
    the pipe closed (Gone: the export thread is free)."""
    pipe = download.Pipe()

    async def response() -> None:
        reader = asyncio.ensure_future(pipe.aget())
        await asyncio.sleep(0.05)  # nothing written: the reader waits
        assert pipe._waiting
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        assert not pipe._waiting
        pipe.close()  # what Streamed does however the response ends
    asyncio.run(response())
    with pytest.raises(download.Gone):
        pipe.put(b"x" * 10)
