"""create_app(freeze_gc=True), as `ivr web` serves the console: once started, the objects that
exist (imports, the app, the warmed caches) are frozen out of the garbage collector's passes
(a full pass over them cost ~50 ms of the event loop in the middle of a request); without the
flag (tests, an app embedded in another process) nothing is frozen."""
from __future__ import annotations

import gc
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ivr.web import create_app
from web_fixture import make_web


def _tracked(obj: object) -> bool:
    """Whether the collector's passes still see `obj` (frozen objects are not listed)."""
    return any(o is obj for o in gc.get_objects())


def test_freeze_gc_freezes_what_the_started_console_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    web = make_web(tmp_path, monkeypatch)
    app = create_app(web.cfg, web.open, freeze_gc=True)
    assert _tracked(app.state)
    before = gc.get_freeze_count()  # a run earlier in this process may have frozen already
    try:
        with TestClient(app) as client:
            assert gc.get_freeze_count() > before
            assert not _tracked(app.state)  # started: frozen with the rest
            assert client.get("/login").status_code == 200
    finally:
        gc.unfreeze()  # the other tests' objects back in the collector's sight


def test_without_the_flag_nothing_is_frozen(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    web = make_web(tmp_path, monkeypatch)
    before = gc.get_freeze_count()
    with TestClient(web.app) as client:
        assert client.get("/login").status_code == 200
        assert gc.get_freeze_count() == before
        assert _tracked(web.app.state)
