"""At start the console computes its configured campaign's overview, lists and preflight before
it serves: the first console opened over a big store does not wait seconds for them. On both
backends: on PostgreSQL the warm-up's reads run on the one shared store."""
from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import Backend
from ivr import config as config_mod
from ivr.web import create_app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_caches_are_warm_once_the_server_serves(backend: Backend, backend_cfg_file: Path,
                                                monkeypatch) -> None:
    monkeypatch.setenv("IVR_WEB_SECRET", "s" * 32)
    cfg = config_mod.load(backend_cfg_file)
    app = create_app(cfg, backend.program)
    name = cfg.campaign.name
    assert app.state.overviews._kept == {}
    with TestClient(app):
        for cache in ("overviews", "lists", "preflights"):
            entry = getattr(app.state, cache)._kept[name]
            assert entry.ready.is_set() and entry.error is None and entry.value is not None
