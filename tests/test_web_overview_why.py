"""The overview when nobody is being called: the calling rule's reason and the next allowed
time (with and without a controller running), a run held by the console, and the ETA and
percent complete during a run (controllers' snapshots in the store), on both backends. The
console's clock is injected (ivr.web.app.now), as the store's rows are written at fixed
instants."""
from __future__ import annotations

import html
import re
from datetime import datetime, timezone

import pytest

from conftest import Backend, add_contact
from web_fixture import CAMPAIGN, NOW, login, make_web, said
import ivr.web.app as web_app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
# Tuesday 21:30 in Paris: outside the default windows (mon-fri 10-13h, 14-20h, Europe/Paris)
LATE = datetime(2026, 12, 1, 20, 30, tzinfo=timezone.utc)
NEXT_UTC = "2026-12-02 09:00 UTC"  # Wednesday 10:00 in Paris


@pytest.fixture
def web(backend: Backend, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    w = make_web(tmp_path, monkeypatch, backend)
    for i in range(3):
        add_contact(w.store, f"+3319900001{i}", at=NOW, campaigns=(CAMPAIGN,))
    return w


def _snapshot(**fields: object) -> dict:
    base = {"campaign": CAMPAIGN, "in_flight": 0, "max_concurrent": 20, "rate_per_min": 0.0,
            "status": "waiting", "stopped": False, "waiting": "", "holding": "", "paused": "",
            "console": "", "next_retry": None, "nodes": []}
    return {**base, **fields}


def _overview(web, at: datetime, monkeypatch) -> tuple[dict, str]:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(web_app, "now", lambda: at)
    c = web.client()
    login(c, "vera")
    o = c.get(f"/api/campaigns/{CAMPAIGN}/overview").json()
    page = html.unescape(c.get(f"/c/{CAMPAIGN}/overview").text)
    return o, page


def _shown(page: str, element: str) -> str:
    return said(page.split(f'id="{element}">')[1]).split("<")[0]


def test_outside_the_calling_window_says_the_rule_and_the_next_allowed_time(
        web, monkeypatch) -> None:
    o, page = _overview(web, LATE, monkeypatch)
    assert o["why_waiting"].startswith("nobody can be called now: 3 outside window")
    assert "outside the calling windows (mon-fri 10:00-13:00,14:00-20:00)" in o["why_waiting"]
    assert f"next allowed {NEXT_UTC}" in o["why_waiting"]
    assert o["next_allowed"] == "2026-12-02T09:00:00+00:00"
    # The page, in French: the rule and the time in words and in the campaign's zone, the
    # rule's detail in the command line's English beside them.
    assert _shown(page, "why-waiting") == (
        "personne ne peut être appelé maintenant : 3 contact(s) — hors des plages d'appel, prochain appel "
        "permis 02/12/2026 10:00 (Europe/Paris) (détail en anglais : "
        f"{o['why_parts'][0]['detail']})")
    assert o["why_parts"] == [{"kind": "reason", "reason": "outside_window", "n": 3,
                               "detail": o["why_parts"][0]["detail"],
                               "next_allowed": "2026-12-02T09:00:00+00:00"}]
    assert "outside the calling windows" in o["why_parts"][0]["detail"]
    assert _shown(page, "next-allowed") == "02/12/2026 10:00 (Europe/Paris)"


def test_inside_the_window_nobody_waits(web, monkeypatch) -> None:
    o, page = _overview(web, NOW, monkeypatch)  # Tuesday 11:00 in Paris
    assert (o["why_waiting"], o["next_allowed"]) == ("", None)
    assert _shown(page, "next-allowed") == "—"


def test_a_waiting_controller_still_gives_the_rule_and_the_next_allowed_time(
        web, monkeypatch) -> None:
    """The controller's snapshot says only "3 outside window" and no time (its next_retry
    is for retries): the overview still names the rule and the time it next allows."""
    web.store.publish_snapshot(CAMPAIGN, "ctl-a", _snapshot(waiting="3 outside window"), LATE)
    o, page = _overview(web, LATE, monkeypatch)
    assert [c["controller"] for c in o["controllers"]] == ["ctl-a"]
    assert "outside the calling windows" in o["why_waiting"]
    assert o["next_allowed"] == "2026-12-02T09:00:00+00:00"
    assert _shown(page, "next-allowed") == "02/12/2026 10:00 (Europe/Paris)"


def test_a_run_held_by_the_console_says_so(web, monkeypatch) -> None:
    from ivr.campaign.run_control import PAUSED
    web.store.publish_snapshot(CAMPAIGN, "ctl-a", _snapshot(status="paused", console=PAUSED),
                               NOW)
    o, page = _overview(web, NOW, monkeypatch)
    assert o["why_waiting"] == PAUSED and o["why_parts"] == []
    assert _shown(page, "why-waiting") == "mis en pause depuis la console"


def test_eta_and_percent_complete_during_a_run(web, monkeypatch) -> None:
    """Two controllers at 12 calls a minute each: the 3 pending contacts (of 4) take 7.5 s
    rounded to 8; the page shows it as a duration."""
    add_contact(web.store, "+33199000020", at=NOW, campaigns=(CAMPAIGN,), status="done")
    for name in ("ctl-a", "ctl-b"):
        web.store.publish_snapshot(CAMPAIGN, name, _snapshot(
            in_flight=2, rate_per_min=12.0, status="running"), NOW)
    o, page = _overview(web, NOW, monkeypatch)
    assert o["calls_per_minute"] == 24.0 and o["in_flight"] == 4
    assert o["percent_complete"] == 25.0
    assert o["eta_s"] == 8  # 60 * 3 / 24 = 7.5
    assert _shown(page, "eta") == "0:00:08" and _shown(page, "pct") == "25,0"  # French
    assert o["why_waiting"] == "" and o["next_allowed"] is None


def test_no_eta_without_a_rate(web, monkeypatch) -> None:
    o, page = _overview(web, NOW, monkeypatch)
    assert o["eta_s"] is None and _shown(page, "eta") == "—"


def _no_controller(page: str) -> str:
    """The #no-controller element's opening tag (absent: the live script could never show it)."""
    found = re.search(r'<[a-z]+ id="no-controller"[^>]*>', page)
    assert found, "no #no-controller element on the page"
    return found.group(0)


def test_no_controller_is_on_the_pages_hidden_while_a_controller_runs(web, monkeypatch) -> None:
    """The overview and run pages always hold #no-controller, hidden while a controller
    publishes: the same tab says « Aucun contrôleur actif » once the snapshots stop (before,
    a page drawn with a controller running never could)."""
    web.store.publish_snapshot(CAMPAIGN, "ctl-a", _snapshot(status="running"), NOW)
    o, page = _overview(web, NOW, monkeypatch)
    assert o["controllers"]
    assert " hidden" in _no_controller(page)
    c = web.client()
    login(c, "vera")
    assert " hidden" in _no_controller(html.unescape(c.get(f"/c/{CAMPAIGN}/run").text))
    # The controller's last snapshot (PostgreSQL ages rows by its own clock: no time travel)
    web.store.publish_snapshot(CAMPAIGN, "ctl-a", _snapshot(stopped=True), NOW)
    web.app.state.overviews.drop(CAMPAIGN)  # not the overview cached while it ran
    for section in ("overview", "run"):
        assert " hidden" not in _no_controller(c.get(f"/c/{CAMPAIGN}/{section}").text)
