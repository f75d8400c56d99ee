"""report.json is kept while the store's change marker stands still (ivr/web/cache.Marked): the
same bytes as `ivr report --format json` at every moment, computed again after any commit (a
controller's, from another connection, included), and not for every request of a quiet store.
On both backends (conftest.backend), with each backend's own change marker."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from conftest import Backend, add_contact, store_at
from test_web_api import _calls
from web_fixture import NOW, login
from ivr import config as config_mod
from ivr.cli import cli
from ivr.store import CallResult, Store
from ivr.store.base import TOKEN_USE_NOTED_S
from ivr.web import create_app, service
from ivr.web_users import hash_password, new_token, token_hash

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def console_store(backend: Backend, cfg_file: Path,
                  monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Store]:
    """The config (conftest.backend_cfg_file) and a store of the controller's (not the
    console's) with a viewer, vera."""
    monkeypatch.setenv("IVR_WEB_SECRET", "s" * 32)
    cfg = config_mod.load(cfg_file)
    store = backend.open()
    store.add_user("vera", "viewer", hash_password("viewer-password-1"), NOW)
    return cfg, store


def viewer(cfg: Any, backend: Backend) -> TestClient:
    """A console over the configured store, logged in as vera."""
    c = TestClient(create_app(cfg, backend.program), follow_redirects=False)
    login(c, "vera", "viewer-password-1")
    return c


def kept_while_quiet(get: Any, first: bytes, computed: list[str], store: Store,
                     tries: int = 20) -> int:
    """GETs until two of them each followed a quiet moment, asserting that such a GET is served
    from the cache; returns how many were. Quiet: the store's marker, read between the GETs,
    stood still over the GET and the one before it (the console's mark for both is that
    value). The test PostgreSQL serves other tests' databases, whose commits move the
    cluster-wide marker: a recompute then is right, and is not asserted against."""
    marks, kept = [store.change_marker()], 0
    for _ in range(tries):
        before = len(computed)
        assert get() == first
        marks.append(store.change_marker())
        if len(marks) >= 3 and marks[-3] == marks[-2] == marks[-1]:
            assert len(computed) == before  # nothing committed: kept
            kept += 1
            if kept == 2:
                break
    return kept


def test_report_json_follows_every_commit_and_is_kept_meanwhile(
        backend: Backend, backend_cfg_file: Path, monkeypatch) -> None:
    cfg_file = backend_cfg_file
    cfg, store = console_store(backend, cfg_file, monkeypatch)
    name = cfg.campaign.name
    _calls(store, name)
    computed: list[str] = []
    real = service.report_json

    def counting(s, campaign):  # type: ignore[no-untyped-def]
        computed.append(campaign)
        return real(s, campaign)
    monkeypatch.setattr(service, "report_json", counting)
    c = viewer(cfg, backend)

    def cli_json() -> bytes:
        out = CliRunner().invoke(cli, ["--config", str(cfg_file), "report", "--format", "json"])
        assert out.exit_code == 0
        return out.stdout_bytes
    url = f"/api/campaigns/{name}/report.json"
    first = c.get(url).content
    assert first == cli_json()
    assert kept_while_quiet(lambda: c.get(url).content, first, computed, store) >= 2
    n = len(computed)
    # The call still in flight ends, written by the controller's own connection.
    call = store.one("SELECT id FROM calls WHERE outcome IS NULL")
    store.mark_answered(call["id"], NOW)
    store.finish_answered(call["id"], CallResult("message_played", "end", "1", {},
                                                 choice="consent"), NOW + timedelta(minutes=1))
    second = c.get(url).content
    assert second != first and second == cli_json()
    assert b'"message_played": 3' in second and b'"in_flight": 0' in second
    store.add_optout("+33199000099", "phone", NOW)  # another table: the optouts count
    third = c.get(url).content
    assert third != second and third == cli_json() and len(computed) == n + 2


def test_sqlite_change_marker_moves_on_any_commit_only(tmp_path: Path) -> None:
    a, b = store_at(tmp_path / "m.db"), store_at(tmp_path / "m.db")
    mark = a.change_marker()
    b.contact_status_counts("demo")
    a.contact_status_counts("demo")
    assert a.change_marker() == mark  # reads commit nothing
    add_contact(b, "+33199000010", at=NOW)  # another connection's commit
    assert a.change_marker() != mark
    mark = a.change_marker()
    a.add_optout("+33199000011", "phone", NOW)  # its own
    assert a.change_marker() != mark


def test_postgresql_change_marker_moves_on_any_commit_only(pg_store_url: str) -> None:
    from store_sql import PgTestStore
    a = PgTestStore.open(pg_store_url, optout_key=b"test-key")
    b = PgTestStore.open(pg_store_url, optout_key=b"test-key")
    try:
        mark = a.change_marker()
        b.contact_status_counts("demo")
        assert a.change_marker() == mark
        b.add_optout("+33199000011", "phone", NOW)
        assert a.change_marker() != mark
        mark = a.change_marker()
        with a.transaction():
            a.audit("x", None, {}, NOW)
            assert b.change_marker() == mark  # not committed yet: nothing to see
        assert a.change_marker() != mark
    finally:
        a.close()
        b.close()


def test_a_token_use_is_noted_once_a_minute(store: Store) -> None:
    """A write per API request would move the change marker at every read."""
    store.add_user("bot", "operator", "$argon2id$x", NOW)
    token = new_token()
    store.add_api_token("bot", token_hash(token), NOW)
    assert store.user_by_token(token_hash(token), NOW) is not None
    mark = store.change_marker()
    later = NOW + timedelta(seconds=TOKEN_USE_NOTED_S - 1)
    assert store.user_by_token(token_hash(token), later) is not None
    assert store.change_marker() == mark
    last = store.one("SELECT last_used_at FROM api_tokens")["last_used_at"]
    assert last == "2026-12-01T10:00:00.000Z"
    assert store.user_by_token(token_hash(token), NOW + timedelta(minutes=2)) is not None
    assert store.one("SELECT last_used_at FROM api_tokens")["last_used_at"] == \
        "2026-12-01T10:02:00.000Z"


# report.csv's kept blocks (cache.KeptBlocks): tests/test_web_report_blocks.py


def test_reports_of_a_campaign_the_store_does_not_know_are_404(
        backend: Backend, backend_cfg_file: Path, monkeypatch) -> None:
    """Else every name typed in the URL would be computed and kept."""
    cfg, _ = console_store(backend, backend_cfg_file, monkeypatch)
    c = viewer(cfg, backend)
    for what in ("report.json", "report.csv"):
        assert c.get(f"/api/campaigns/no-such-campaign/{what}").status_code == 404
        assert c.get(f"/api/campaigns/{cfg.campaign.name}/{what}").status_code == 200


def test_the_calls_marker_moves_with_the_campaigns_calls_only(store: Store) -> None:
    """Found in review: a run commits its snapshot every second, night and day, and each
    commit made an open overview recompute the calls per hour, a GROUP BY over every call of
    the campaign (350-420 ms at 300,000). They are now kept on the campaign's calls' own
    marker: a snapshot or another campaign's call leaves it, a call of the campaign moves it.
    On both backends."""
    from ivr.web.cache import Marked
    from conftest import attempt
    contact = add_contact(store, "+33199000010", at=NOW)
    mark = store.calls_marker("c1")
    store.publish_snapshot("c1", "ctl-1", {"seq": 1}, NOW)
    attempt(store, contact, "other-campaign", "+33162000000", NOW)
    assert store.calls_marker("c1") == mark
    kept, computed = Marked(store.change_marker), []
    for _ in range(2):
        store.publish_snapshot("c1", "ctl-1", {"seq": 2}, NOW)  # moves change_marker
        kept.get("per_hour:c1", lambda: computed.append(1), store.calls_marker("c1"))
    assert len(computed) == 1
    attempt(store, contact, "c1", "+33162000000", NOW)
    assert store.calls_marker("c1") != mark
    kept.get("per_hour:c1", lambda: computed.append(1), store.calls_marker("c1"))
    assert len(computed) == 2
