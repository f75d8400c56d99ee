"""report.csv as one gzip member from the kept blocks' deflate segments (ivr/web/gzblocks.py):
after any sequence of changes, gunzip(body) is byte for byte the reference CSV, the body is one
member (nothing after it) whose CRC-32 and length are the CSV's, and only the blocks the
changes touched are compressed again. Over HTTP: gzip with Content-Encoding and Vary when the
client accepts it, the identity bytes unchanged when it does not."""
from __future__ import annotations

import gzip
import io
import random
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import Backend, backend_sqlite_only
from test_report_csv_blocks import KEYS, Downloads, campaign_blocks, change, fill
from test_report_csv_export import reference
from test_web_api import _calls
from test_web_report_cache import console_store, viewer
from ivr.cli import cli
from ivr.records import report
from ivr.store import pg_export, sqlite_export
from ivr.store.base import Chunk
from ivr.web import download
from ivr.web.cache import KeptBlocks
from ivr.web.gzblocks import Blocks, GzipWriter, accepts_gzip, crc32_combine

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def one_member(body: bytes) -> bytes:
    """The member's content; fails unless `body` is exactly one gzip member with its CRC."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(body) + d.flush()
    assert d.eof and d.unused_data == b"" and gzip.decompress(body) == out
    assert struct.unpack("<II", body[-8:]) == (zlib.crc32(out), len(out) & 0xFFFFFFFF)
    return out


def test_crc32_combine_is_the_crc_of_the_concatenation() -> None:
    rnd = random.Random(3)
    for n in (0, 1, 7, 255, 4096, 100_003):
        a, b = rnd.randbytes(rnd.randrange(50)), rnd.randbytes(n)
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), n) == zlib.crc32(a + b)


@pytest.mark.parametrize(("header", "gz"), [
    ("gzip, deflate", True), ("br;q=1.0, gzip;q=0.5", True), ("*", True), ("identity", False),
    (None, False), ("gzip;q=0", False), ("deflate", False), ("GZIP", True)])
def test_accept_encoding(header: str | None, gz: bool) -> None:
    assert accepts_gzip(header) is gz


class GzipDownloads(Downloads):
    """Each key's kept blocks and segments in a KeptBlocks, as the console keeps them; each
    round downloads as gzip (or as identity), and counts the blocks compressed."""

    def __init__(self, store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(store, monkeypatch)
        self.keep = KeptBlocks()
        self.unpacked: dict[Any, set[int]] = {k: set() for k in KEYS}  # kept, not compressed

    def download(self, key: Any, gz: bool) -> tuple[bytes, dict[int, Chunk], set[int]]:
        name = str(key)
        kept, packed = self.keep.get(name), self.keep.packed(name)
        out = io.BytesIO()
        if not gz:
            fresh: dict[int, Chunk] = {}
            report.calls_csv_kept(self.store, out, key, kept, fresh)
            self.keep.put(name, fresh)
            return out.getvalue(), fresh, set()
        writer = GzipWriter(out, packed, (download._HEADER,))
        fresh = Blocks(writer, True)
        report.calls_csv_kept(self.store, writer, key, kept, fresh)
        writer.close()
        self.keep.put(name, fresh, writer.made)
        made = {b for b, p in writer.made.items() if packed.get(b) is not p}
        return out.getvalue(), fresh, made

    def round(self, touched: dict[Any, set[int]], gz: bool) -> None:
        for key in KEYS:
            self.rendered.clear()
            before = self.keep.get(str(key))
            body, fresh, made = self.download(key, gz)
            again = touched.get(key, set())
            csv = one_member(body) if gz else body
            assert csv == reference(self.store, key)[0], key
            assert sorted(self.rendered) == sorted(again), key
            assert {b for b, c in fresh.items() if before.get(b) is not c} == again, key
            if gz:  # the touched blocks, and those an identity download rendered before
                assert made == again | self.unpacked[key], key
                assert set(self.keep.packed(str(key))) == set(fresh), key
                self.unpacked[key] = set()
            else:
                self.unpacked[key] |= again


@pytest.mark.parametrize("seed", [1, 2])
def test_gzip_body_after_random_changes(store: Any, seed: int,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_export, "BATCH", 5)  # several batches (pieces) per block
    monkeypatch.setattr(pg_export, "BATCH", 5)
    rnd = random.Random(seed)
    contacts, ids = fill(store, rnd)
    d = GzipDownloads(store, monkeypatch)
    d.round(campaign_blocks(store, "SELECT id, campaign FROM calls", ()), gz=True)
    d.round({}, gz=True)  # nothing committed: every segment as kept
    for i in range(12):
        if not contacts:
            break
        d.round(change(store, rnd, contacts, ids), gz=i % 3 != 2)  # an identity one now and then


def test_a_block_emptied_and_the_memory_bound(store: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for call_id in (5, 8200, 40000):
        store.db["calls"].insert({"id": call_id, "number": "+33123", "attempt": 1,
                                  "campaign": "c1", "started_at": "2026-12-01T10:00:00.000Z"})
    d = GzipDownloads(store, monkeypatch)
    d.round({"c1": {0, 1, 4}, None: {0, 1, 4}}, gz=True)
    store.db.execute("DELETE FROM calls WHERE id = 8200")
    d.round({"c1": {1}, None: {1}}, gz=True)
    assert d.keep.packed("c1")[1].seg == b"" and d.keep.get("c1")[1].data == b""
    out = io.BytesIO()  # past the bound: sent whole, nothing kept
    writer = GzipWriter(out, {}, (download._HEADER,))
    fresh = Blocks(writer, True)
    report.calls_csv_kept(store, writer, "c1", {}, fresh, fresh_max=50)
    writer.close()
    assert one_member(out.getvalue()) == reference(store, "c1")[0]
    assert dict(fresh) == {} and writer.made == {}


def test_http_gzip_and_identity_around_a_commit(backend: Backend, backend_cfg_file: Path,
                                                monkeypatch: Any) -> None:
    cfg_file = backend_cfg_file
    cfg, store = console_store(backend, cfg_file, monkeypatch)
    name = cfg.campaign.name
    _calls(store, name)
    store.db["calls"].insert({"id": 8192 * 3 + 1, "number": "+33199000077", "attempt": 1,
                              "campaign": name, "started_at": "2026-12-01T10:00:00.000Z"})
    c = viewer(cfg, backend)
    url = f"/api/campaigns/{name}/report.csv"

    def cli_csv() -> bytes:
        out = CliRunner().invoke(cli, ["--config", str(cfg_file), "report", "--format", "csv"])
        assert out.exit_code == 0
        return out.stdout_bytes

    def get(encoding: str) -> tuple[Any, bytes]:
        with c.stream("GET", url, headers={"Accept-Encoding": encoding}) as r:
            raw = b"".join(r.iter_raw())
        assert r.status_code == 200 and "Accept-Encoding" in r.headers["vary"].split(", ")
        return r, raw
    for _ in range(2):  # the first renders; the second sends every kept segment
        r, raw = get("gzip, deflate, br")
        assert r.headers["content-encoding"] == "gzip" and one_member(raw) == cli_csv()
    kept = c.app.state.kept_csv  # type: ignore[attr-defined]
    segs = dict(kept.packed(name))
    assert sorted(segs) == [0, 3] and all(p.seg for p in segs.values())
    store.set_hangup_cause(8192 * 3 + 1, "=cause")
    r, raw = get("identity")  # a script: the very bytes, and the segment of block 0 kept
    assert "content-encoding" not in r.headers and raw == cli_csv() and b"'=cause" in raw
    assert kept.packed(name) == {0: segs[0]}
    r, raw = get("gzip")
    assert r.headers["content-encoding"] == "gzip" and one_member(raw) == cli_csv()
    assert kept.packed(name)[0] is segs[0] and kept.packed(name)[3] is not segs[3]
    assert c.get(url).content == cli_csv()  # httpx decodes, as the bench reads it


@backend_sqlite_only  # header parsing
def test_accept_encoding_over_several_header_lines(backend: Backend, backend_cfg_file: Path,
                                                   monkeypatch: Any) -> None:
    """RFC 9110 combines repeated field lines: 'br' on one line and 'gzip' on the next accept
    gzip (Starlette's headers.get reads the first line only)."""
    cfg, store = console_store(backend, backend_cfg_file, monkeypatch)
    _calls(store, cfg.campaign.name)
    c = viewer(cfg, backend)
    url = f"/api/campaigns/{cfg.campaign.name}/report.csv"
    with c.stream("GET", url, headers=[("Accept-Encoding", "br"),
                                        ("Accept-Encoding", "gzip")]) as r:
        raw = b"".join(r.iter_raw())
    assert r.status_code == 200 and r.headers.get("content-encoding") == "gzip"
    assert one_member(raw).startswith(report.CSV_HEADER_BYTES)


def test_a_producer_on_a_full_pipe_is_released_when_the_response_ends(monkeypatch) -> None:
    """A client that leaves early (the bench's first-byte route) must not hold one of the two
    export threads until the producer's next check: the next download would wait on it."""
    monkeypatch.setattr(download.Pipe, "WAIT_S", 30.0)
    pipe = download.Pipe()
    for _ in range(pipe.ROOM):  # no room left for a fresh chunk
        pipe.put(b"x")
    released = threading.Event()

    def produce() -> None:
        try:
            while True:
                pipe.write(b"y" * pipe.CHUNK)
        except download.Gone:
            released.set()
    threading.Thread(target=produce, daemon=True).start()
    time.sleep(0.2)
    assert not released.is_set()  # waiting for room
    pipe.close()
    assert released.wait(10)
