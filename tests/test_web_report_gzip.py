"""report.csv compressed from the kept blocks' segments: one gzip member (ivr/web/gzblocks.py)
or zstd frames (ivr/web/zstdblocks.py). After any sequence of changes the decoded body is byte
for byte the reference CSV, a gzip body is one member (nothing after it) whose CRC-32 and length
are the CSV's, a zstd body is whole frames only, and only the blocks the changes touched are
compressed again. Over HTTP: zstd or gzip with Content-Encoding and Vary as the client accepts
them, the identity bytes unchanged when it accepts neither."""
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
import zstandard

from ivr.web import download
from ivr.web.cache import KeptBlocks
from ivr.web.gzblocks import crc32_combine
from ivr.web.segments import Blocks, accepts_gzip, choose_coding

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def one_member(body: bytes) -> bytes:
    """The member's content; fails unless `body` is exactly one gzip member with its CRC."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(body) + d.flush()
    assert d.eof and d.unused_data == b"" and gzip.decompress(body) == out
    assert struct.unpack("<II", body[-8:]) == (zlib.crc32(out), len(out) & 0xFFFFFFFF)
    return out


def zstd_frames(body: bytes) -> bytes:
    """The frames' content; fails unless `body` is whole zstd frames, nothing else, each with
    a window a browser accepts (8 MB at most, RFC 9659: chromium refuses a larger one)."""
    out, rest, frames = [], body, 0
    while rest:
        assert zstandard.get_frame_parameters(rest).window_size <= 8 << 20
        d = zstandard.ZstdDecompressor().decompressobj()
        out.append(d.decompress(rest))
        assert d.eof, "a frame is cut short"
        rest, frames = d.unused_data, frames + 1
    assert frames >= 1
    return b"".join(out)


DECODE = {"gzip": one_member, "zstd": zstd_frames, None: lambda body: body}


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


@pytest.mark.parametrize(("header", "coding"), [
    ("gzip, deflate, br, zstd", "zstd"), ("zstd", "zstd"), ("gzip, deflate", "gzip"),
    ("zstd;q=0.5, gzip", "gzip"), ("zstd;q=0, gzip", "gzip"), ("zstd;q=0", None),
    ("*", "gzip"), ("zstd;q=0.5, *", "gzip"), ("zstd, *;q=0.5", "zstd"), (None, None),
    ("ZSTD;Q=1, gzip;q=1", "zstd"), ("identity", None), ("zstd;q=abc, gzip", "gzip")])
def test_coding_chosen(header: str | None, coding: str | None) -> None:
    assert choose_coding(header) == coding
    assert choose_coding(header, browser=False) == (None if coding is None else
                                                    "gzip" if accepts_gzip(header) else None)


class GzipDownloads(Downloads):
    """Each key's kept blocks and segments in a KeptBlocks, as the console keeps them; each
    round downloads in `coding` (or as identity), and counts the blocks compressed."""

    def __init__(self, store: Any, monkeypatch: pytest.MonkeyPatch,
                 coding: str = "gzip") -> None:
        super().__init__(store, monkeypatch)
        self.coding = coding
        self.keep = KeptBlocks()
        self.unpacked: dict[Any, set[int]] = {k: set() for k in KEYS}  # kept, not compressed

    def download(self, key: Any, gz: bool) -> tuple[bytes, dict[int, Chunk], set[int]]:
        name = str(key)
        kept, packed = self.keep.get(name), self.keep.packed(name, self.coding)
        out = io.BytesIO()
        if not gz:
            fresh: dict[int, Chunk] = {}
            report.calls_csv_kept(self.store, out, key, kept, fresh)
            self.keep.put(name, fresh)
            return out.getvalue(), fresh, set()
        make, header = download.WRITERS[self.coding]
        writer = make(out, packed, (header,))
        fresh = Blocks(writer, True)
        report.calls_csv_kept(self.store, writer, key, kept, fresh)
        writer.close()
        self.keep.put(name, fresh, writer.made, coding=self.coding)
        made = {b for b, p in writer.made.items() if packed.get(b) is not p}
        return out.getvalue(), fresh, made

    def round(self, touched: dict[Any, set[int]], gz: bool) -> None:
        for key in KEYS:
            self.rendered.clear()
            before = self.keep.get(str(key))
            body, fresh, made = self.download(key, gz)
            again = touched.get(key, set())
            csv = DECODE[self.coding if gz else None](body)
            assert csv == reference(self.store, key)[0], key
            assert sorted(self.rendered) == sorted(again), key
            assert {b for b, c in fresh.items() if before.get(b) is not c} == again, key
            if gz:  # the touched blocks, and those an identity download rendered before
                assert made == again | self.unpacked[key], key
                assert set(self.keep.packed(str(key), self.coding)) == set(fresh), key
                self.unpacked[key] = set()
            else:
                self.unpacked[key] |= again


@pytest.mark.parametrize(("seed", "coding"), [(1, "gzip"), (2, "gzip"), (3, "zstd")])
def test_body_after_random_changes(store: Any, seed: int, coding: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_export, "BATCH", 5)  # several batches (pieces) per block
    monkeypatch.setattr(pg_export, "BATCH", 5)
    rnd = random.Random(seed)
    contacts, ids = fill(store, rnd)
    d = GzipDownloads(store, monkeypatch, coding)
    d.round(campaign_blocks(store, "SELECT id, campaign FROM calls", ()), gz=True)
    d.round({}, gz=True)  # nothing committed: every segment as kept
    for i in range(12):
        if not contacts:
            break
        d.round(change(store, rnd, contacts, ids), gz=i % 3 != 2)  # an identity one now and then


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
def test_a_block_emptied_and_the_memory_bound(store: Any, coding: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for call_id in (5, 8200, 40000):
        store.db["calls"].insert({"id": call_id, "number": "+33123", "attempt": 1,
                                  "campaign": "c1", "started_at": "2026-12-01T10:00:00.000Z"})
    d = GzipDownloads(store, monkeypatch, coding)
    d.round({"c1": {0, 1, 4}, None: {0, 1, 4}}, gz=True)
    store.db.execute("DELETE FROM calls WHERE id = 8200")
    d.round({"c1": {1}, None: {1}}, gz=True)
    assert d.keep.packed("c1", coding)[1].seg == b"" and d.keep.get("c1")[1].data == b""
    out = io.BytesIO()  # past the bound: sent whole, nothing kept
    make, header = download.WRITERS[coding]
    writer = make(out, {}, (header,))
    fresh = Blocks(writer, True)
    report.calls_csv_kept(store, writer, "c1", {}, fresh, fresh_max=50)
    writer.close()
    assert DECODE[coding](out.getvalue()) == reference(store, "c1")[0]
    assert dict(fresh) == {} and writer.made == {}


def test_http_codings_and_identity_around_a_commit(backend: Backend, backend_cfg_file: Path,
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

    def get(encoding: str, browser: bool = False) -> tuple[Any, bytes]:
        headers = {"Accept-Encoding": encoding, **({"Sec-Fetch-Mode": "cors"} if browser else {})}
        with c.stream("GET", url, headers=headers) as r:
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
    # A browser names zstd: frames, kept beside the gzip segments; after a commit only the
    # changed block's frame is made again, and the gzip segments still standing stay.
    for _ in range(2):
        r, raw = get("gzip, deflate, br, zstd", browser=True)
        assert r.headers["content-encoding"] == "zstd" and zstd_frames(raw) == cli_csv()
    frames = dict(kept.packed(name, "zstd"))
    assert sorted(frames) == [0, 3] and kept.packed(name)[0] is segs[0]
    # A script that names zstd (httpx or requests with zstandard installed) gets gzip: their
    # decoders fail when a read ends on a frame's end, as each kept frame's chunk does here.
    r, raw = get("gzip, deflate, zstd")
    assert r.headers["content-encoding"] == "gzip" and one_member(raw) == cli_csv()
    assert c.get(url, headers={"Accept-Encoding": "gzip, deflate, zstd"}).content == cli_csv()
    store.set_hangup_cause(8192 * 3 + 1, "=again")
    r, raw = get("zstd", browser=True)
    assert zstd_frames(raw) == cli_csv() and b"'=again" in zstd_frames(raw)
    assert kept.packed(name, "zstd")[0] is frames[0]
    assert kept.packed(name, "zstd")[3] is not frames[3] and kept.packed(name) == {0: segs[0]}


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
