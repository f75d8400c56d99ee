"""The run page's pacing form at the documented floor (one call a minute), its message for a
concurrency that is not a whole number, and the overview's 'why nobody is called' planned
afresh after an upload or a run control instead of kept 15 s (service.PlanCache), on both
backends where the store keeps the values."""
from __future__ import annotations

import html
import re

import pytest

from conftest import Backend, add_contact, backend_sqlite_only
from web_fixture import CAMPAIGN, NOW, login, make_web
import ivr.web.app as web_app
from ivr.config_checks import MIN_CALLS_PER_SECOND

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
NO_CONTACTS = f"no contacts for campaign '{CAMPAIGN}'"


@pytest.fixture
def web(backend: Backend, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    return make_web(tmp_path, monkeypatch, backend)


def _cps_input(page: str) -> dict[str, str]:
    tag = re.search(r'<input name="calls_per_second"[^>]*>', page)
    assert tag, "no calls_per_second input on the run page"
    return dict(re.findall(r'(\w+)="([^"]*)"', tag.group(0)))


def test_the_pacing_form_accepts_the_stored_floor_of_one_call_a_minute(web) -> None:
    c = web.client()
    token = login(c, "otto")
    r = c.post(f"/api/campaigns/{CAMPAIGN}/pacing", json={"calls_per_second": 1 / 60},
               headers={"X-CSRF-Token": token})
    assert r.status_code == 200
    cps = _cps_input(c.get(f"/c/{CAMPAIGN}/run").text)
    # A browser refuses to send a form whose number is below its min (0.0167 was).
    assert float(cps["min"]) <= float(cps["value"])
    assert float(cps["min"]) == MIN_CALLS_PER_SECOND


@backend_sqlite_only  # refused before the store
def test_a_concurrency_of_2_5_is_not_a_whole_number(web) -> None:
    c = web.client()
    token = login(c, "otto")
    r = c.post(f"/c/{CAMPAIGN}/run/pacing", data={"max_concurrent": "2.5",
                                                  "csrf_token": token})
    page = html.unescape(c.get(r.headers["location"]).text)
    assert "max_concurrent: '2.5' n'est pas un nombre entier" in page
    r = c.post(f"/c/{CAMPAIGN}/run/pacing", data={"calls_per_second": "fast",
                                                  "csrf_token": token})
    page = html.unescape(c.get(r.headers["location"]).text)
    assert "calls_per_second: 'fast' n'est pas un nombre" in page  # a float: "un nombre" is right
    assert web.store.run_control(CAMPAIGN) is None


def test_the_overview_stops_saying_no_contacts_right_after_an_upload(web) -> None:
    c = web.client()
    token = login(c, "otto")
    overview = f"/api/campaigns/{CAMPAIGN}/overview"
    assert c.get(overview).json()["why_waiting"].startswith(NO_CONTACTS)
    r = c.post(f"/c/{CAMPAIGN}/contacts/upload",
               data={"source": "adherents", "basis": "member_file", "csrf_token": token},
               files={"file": ("a.csv", b"number\n+33199000011\n+33199000012\n")})
    assert r.status_code == 200
    o = c.get(overview).json()
    assert o["contacts"]["pending"] == 2
    assert not o["why_waiting"].startswith(NO_CONTACTS), o["why_waiting"]


def test_a_run_control_plans_the_overview_afresh(web, monkeypatch) -> None:
    """The plan depends on the time too: planned outside the calling windows, then asked
    within them, the 'outside window' line used to stay PLAN_TTL_S whatever the console did."""
    for i in range(3):
        add_contact(web.store, f"+3319900001{i}", at=NOW, campaigns=(CAMPAIGN,))
    monkeypatch.setattr(web_app, "now", lambda: NOW.replace(hour=20, minute=30))
    c = web.client()
    token = login(c, "otto")  # its redirect to the overview plans at 21:30 in Paris
    overview = f"/api/campaigns/{CAMPAIGN}/overview"
    assert "outside window" in c.get(overview).json()["why_waiting"]
    monkeypatch.setattr(web_app, "now", lambda: NOW)  # 11:00 in Paris, a Tuesday
    r = c.post(f"/api/campaigns/{CAMPAIGN}/control", json={"action": "start"},
               headers={"X-CSRF-Token": token})
    assert r.status_code == 200
    assert c.get(overview).json()["why_waiting"] == ""  # all three are due now
