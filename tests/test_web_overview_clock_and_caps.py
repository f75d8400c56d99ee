"""The overview in front of several controllers (hw4 findings 3 and 1, display part): on
PostgreSQL a snapshot's freshness is judged on the server's clock, so a controller whose clock
lags the console's by 20 s is shown while it dials (and an old snapshot is not revived by a
console whose clock lags); the caps shown are the configured ones, the campaign's and each
node's, not their sum over the controllers (both backends)."""
from __future__ import annotations

import html
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from conftest import Backend
from web_fixture import CAMPAIGN, login, make_web
import ivr.web.app as web_app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
# A controller on another machine only exists with a shared store: PostgreSQL. (SQLite's
# controllers and console share one machine and its clock.)
pg_only = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
SKEW = timedelta(seconds=20)  # /tmp/hw4/skewrun.py's SKEW=20: invisible before the fix


@pytest.fixture
def web(backend: Backend, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    return make_web(tmp_path, monkeypatch, backend, dialer={"max_concurrent": 6})


def _snapshot(in_flight: int, max_concurrent: int = 6, per_node: int = 1) -> dict[str, Any]:
    """A running controller's snapshot, as RunState writes it, over nodes with max_channels 2."""
    return {"campaign": CAMPAIGN, "in_flight": in_flight, "max_concurrent": max_concurrent,
            "rate_per_min": 6.0, "status": "running", "stopped": False, "waiting": "",
            "holding": "", "paused": "", "console": "", "next_retry": None,
            "nodes": [{"name": name, "up": True, "in_flight": per_node, "cap": 2,
                       "holding": ""} for name in ("pbx", "pbx2")]}


def _overview(web, monkeypatch,  # type: ignore[no-untyped-def]
              at: datetime | None = None) -> tuple[dict, str]:
    if at is not None:
        monkeypatch.setattr(web_app, "now", lambda: at)
    c = web.client()
    login(c, "vera")
    o = c.get(f"/api/campaigns/{CAMPAIGN}/overview").json()
    return o, html.unescape(c.get(f"/c/{CAMPAIGN}/overview").text)


@pg_only
def test_a_controller_whose_clock_lags_by_20_s_is_shown_while_it_dials(
        web, monkeypatch) -> None:
    console_now = datetime.now(timezone.utc)
    # the controller passes its own clock's now, 20 s behind the console's machine
    web.store.publish_snapshot(CAMPAIGN, "ctl-late", _snapshot(3, per_node=2),
                               console_now - SKEW)
    o, _ = _overview(web, monkeypatch, console_now)
    assert [c["controller"] for c in o["controllers"]] == ["ctl-late"]
    assert o["controllers"][0]["age_s"] < 5  # the server's age, not the clocks' gap
    assert o["in_flight"] == 3 and o["calls_per_minute"] == 6.0
    assert [(n["name"], n["in_flight"]) for n in o["nodes"]] == [("pbx", 2), ("pbx2", 2)]
    assert o["why_waiting"] == ""  # calls are being made


@pg_only
def test_a_snapshot_old_on_the_servers_clock_stays_hidden_from_a_lagging_console(
        web, monkeypatch) -> None:
    """The other way round: a controller that stopped publishing 15 s ago (server's clock)
    is gone, even for a console whose own clock is a minute behind."""
    web.store.publish_snapshot(CAMPAIGN, "ctl-gone", _snapshot(3), datetime.now(timezone.utc))
    web.store.db.execute(
        "UPDATE run_snapshots SET at = to_char((clock_timestamp() - interval '15 seconds') "
        "AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
    o, _ = _overview(web, monkeypatch, datetime.now(timezone.utc) - timedelta(minutes=1))
    assert o["controllers"] == [] and o["in_flight"] == 0 and o["nodes"] == []


def test_the_caps_shown_are_the_configured_ones_not_sums_over_controllers(
        web, monkeypatch) -> None:
    """Two controllers, dialer.max_concurrent 6, max_channels 2 on each node (hw4 expA,
    expM): the overview said cap 12 and 4 per node. In flight stays the sum."""
    for name in ("ctl-a", "ctl-b"):
        web.store.publish_snapshot(CAMPAIGN, name, _snapshot(2), datetime.now(timezone.utc))
    o, page = _overview(web, monkeypatch)
    assert o["in_flight"] == 4 and o["cap"] == 6
    assert o["nodes"] == [{"name": n, "in_flight": 2, "cap": 2, "up": True, "holding": ""}
                          for n in ("pbx", "pbx2")]
    assert '<span id="cap">6</span>' in page
    assert "<tr><td>pbx</td><td>2</td><td>2</td>" in page


def test_the_cap_shown_follows_the_consoles_pacing(web, monkeypatch) -> None:
    """Console pacing max_concurrent 2: the cap the run applies is 2 (it said 4 with two
    controllers each reporting 2); without a controller it is still the configured cap."""
    o, _ = _overview(web, monkeypatch)
    assert o["cap"] == 6 and o["controllers"] == []
    for name in ("ctl-a", "ctl-b"):  # each applies the console's 2 (run_control._pacing)
        web.store.publish_snapshot(CAMPAIGN, name, _snapshot(1, max_concurrent=2),
                                   datetime.now(timezone.utc))
    c = web.client()
    token = login(c, "otto")
    r = c.post(f"/api/campaigns/{CAMPAIGN}/pacing", json={"max_concurrent": 2},
               headers={"X-CSRF-Token": token})
    assert r.status_code == 200
    web.app.state.overviews.drop(CAMPAIGN)  # not the 1-s live copy: computed afresh
    o, page = _overview(web, monkeypatch)
    assert o["in_flight"] == 2 and o["cap"] == 2
    assert '<span id="cap">2</span>' in page
