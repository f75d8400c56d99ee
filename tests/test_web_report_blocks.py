"""The console's report.csv over its kept blocks (cache.KeptBlocks): the very bytes of `ivr
report --format csv` before and after a commit, with only the changed block rendered again
(none while nothing is committed); within a memory bound; one download at a time gathers.
The downloads run on both backends (conftest.backend)."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import Backend
from test_web_api import _calls
from test_web_report_cache import console_store, viewer
from web_fixture import NOW
from ivr.cli import cli
from ivr.store import Store
from ivr.store.base import Chunk
from ivr.web.cache import KeptBlocks

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_two_downloads_around_a_commit_and_only_its_block_rendered(
        backend: Backend, backend_cfg_file: Path, monkeypatch) -> None:
    cfg_file = backend_cfg_file
    cfg, store = console_store(backend, cfg_file, monkeypatch)
    name = cfg.campaign.name
    _calls(store, name)  # block 0
    for call_id in (8192 * 2 + 5, 8192 * 2 + 6, 8192 * 5):  # blocks 2 and 5
        store.db["calls"].insert({"id": call_id, "number": "+33199000077", "attempt": 1,
                                  "campaign": name, "started_at": "2026-12-01T10:00:00.000Z"})
    rendered: list[int] = []
    from ivr.store.pg import PgStore
    cls: Any = PgStore if backend.url else Store  # the console's store class
    real = cls._render_range

    def counting(self, campaign, lo, hi, render, first):  # type: ignore[no-untyped-def]
        if hi - lo == 8191:  # a block (not the CLI's whole export)
            rendered.append(lo >> 13)
        return real(self, campaign, lo, hi, render, first)
    monkeypatch.setattr(cls, "_render_range", counting)
    c = viewer(cfg, backend)

    def cli_csv() -> bytes:
        out = CliRunner().invoke(cli, ["--config", str(cfg_file), "report", "--format", "csv"])
        assert out.exit_code == 0
        return out.stdout_bytes

    def download() -> bytes:
        rendered.clear()
        return c.get(f"/api/campaigns/{name}/report.csv").content
    first = download()
    assert first == cli_csv() and first.count(b"\r\n") > 6 and sorted(rendered) == [0, 2, 5]
    assert [download() for _ in range(2)] == [first] * 2 and rendered == []  # as kept
    call = store.one("SELECT id FROM calls WHERE outcome IS NULL AND id < 8192")
    store.finish_unanswered(call["id"], "busy", "17", NOW + timedelta(minutes=1), None)
    second = download()
    assert second != first and second == cli_csv() and rendered == [0]
    store.set_hangup_cause(8192 * 5, "16")  # a recent call, as a run writes
    third = download()
    assert third == cli_csv() and b",16," in third.splitlines()[-1] and rendered == [5]
    store.add_optout("+33199000098", "phone", NOW)  # a commit the CSV does not show
    assert download() == third and rendered == []
    monkeypatch.setattr(KeptBlocks, "MAX_BYTES", 100)  # too big to keep: rendered each time
    assert download() == third and rendered == []  # (what was kept before still served)
    assert download() == third and sorted(rendered) == [0, 2, 5]
    assert download() == third and sorted(rendered) == [0, 2, 5]


def chunks(size: int) -> dict[int, Chunk]:
    return {0: Chunk(1, 1, b"x" * size)}


def test_one_download_at_a_time_gathers_its_blocks_to_keep() -> None:
    """N first downloads at once must not hold N copies: the first gets the right to keep,
    the others stream only, until it is done; what is kept is served without a copy."""
    kept = KeptBlocks()
    assert kept.start_keeping() is True
    assert kept.start_keeping() is False and kept.start_keeping() is False
    blocks = chunks(10)
    kept.put("c", blocks)
    kept.stop_keeping()
    assert kept.start_keeping() is True
    assert kept.get("c") is blocks and kept.get("d") == {}


def test_the_kept_blocks_stay_within_max_bytes(monkeypatch) -> None:
    monkeypatch.setattr(KeptBlocks, "MAX_BYTES", 100)
    kept = KeptBlocks()
    a, b, c = chunks(40), chunks(40), chunks(40)
    kept.put("a", a)
    kept.put("b", b)
    assert kept.get("a") is a  # a used last: b goes first
    kept.put("c", c)
    assert kept.get("b") == {} and kept.get("a") is a and kept.get("c") is c
    kept.put("big", chunks(101))
    assert kept.get("big") == {} and kept.get("a") is a
    kept.put("a", chunks(90))  # replaced, not added: c dropped to fit
    assert len(kept.get("a")[0].data) == 90 and kept.get("c") == {}


def test_a_download_of_many_batches_is_whole(backend: Backend, backend_cfg_file: Path,
                                             monkeypatch: Any) -> None:
    """Batches of a block and kept blocks interleave in one stream, in id order."""
    from ivr.store import pg_export, sqlite_export
    monkeypatch.setattr(sqlite_export, "BATCH", 3)
    monkeypatch.setattr(pg_export, "BATCH", 3)
    cfg_file = backend_cfg_file
    cfg, store = console_store(backend, cfg_file, monkeypatch)
    name = cfg.campaign.name
    for i in range(40):
        store.db["calls"].insert({"id": 1 + i * 1500, "number": "+33199000077",
                                  "attempt": 1, "campaign": name, "started_at": f"t{i}"})
    c = viewer(cfg, backend)
    url = f"/api/campaigns/{name}/report.csv"
    first = c.get(url).content
    store.set_hangup_cause(1 + 20 * 1500, "=1")
    second = c.get(url).content
    out = CliRunner().invoke(cli, ["--config", str(cfg_file), "report", "--format", "csv"])
    assert second == out.stdout_bytes and second.count(b"\r\n") == 41 and first != second
    assert second.index(b"\r\n30001,") < second.index(b"\r\n31501,")
