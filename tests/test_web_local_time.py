"""The console shows times in the campaign's zone (the config's schedule.timezone), as a French
operator and an auditor read them: a call at 09:30 UTC is 10:30 in Paris, inside the legal
window, and was shown under a "09h" bar and as 2026-12-01T09:30:00.000Z. The page, the chart
and the live updates (console.js, run under node) say the same local time; the JSON API keeps
its ISO UTC values, which other tools read. On both backends where the store is read."""
from __future__ import annotations

import html
from datetime import datetime, timedelta, timezone

import pytest

from conftest import CALLER_ID, Backend, add_contact, attempt
from console_js import run_console
from web_fixture import CAMPAIGN, NOW, login, make_web
import ivr.web.app as web_app
from ivr.records import privacy
from ivr.web import service
from ivr.web.chart import per_hour_svg

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
CALLED = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)  # 10:30 in Paris
LATE = datetime(2026, 12, 1, 20, 30, tzinfo=timezone.utc)  # 21:30 in Paris: nobody called


@pytest.fixture
def web(backend: Backend, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    w = make_web(tmp_path, monkeypatch, backend)
    called = add_contact(w.store, "+33199000010", at=NOW - timedelta(days=1),
                         campaigns=(CAMPAIGN,))
    add_contact(w.store, "+33199000011", at=NOW - timedelta(days=1), campaigns=(CAMPAIGN,))
    call = attempt(w.store, called, CAMPAIGN, CALLER_ID, CALLED)
    w.store.finish_unanswered(call["id"], "busy", "17", CALLED + timedelta(seconds=30), None)
    return w


def _text(page: str, element: str) -> str:
    return html.unescape(page.split(f'id="{element}"')[1].split(">", 1)[1].split("<")[0])


def test_the_overview_shows_the_campaigns_zone_and_the_api_keeps_utc(web, monkeypatch) -> None:
    monkeypatch.setattr(web_app, "now", lambda: LATE)
    c = web.client()
    login(c, "vera")
    page = c.get(f"/c/{CAMPAIGN}/overview").text
    assert _text(page, "next-allowed") == "02/12/2026 10:00 (Europe/Paris)"
    calls = page.split('id="recent-calls"')[1].split("</table>")[0]
    assert "Heures du fuseau Europe/Paris" in page.split('id="calls-zone"')[1].split("<")[0]
    assert "<td>01/12/2026 10:30:00</td><td>01/12/2026 10:30:30</td>" in calls
    assert "T09:30" not in calls
    chart = html.unescape(page.split('id="chart"')[1].split("</svg>")[0])
    assert "2026-12-01 10:00 Europe/Paris : appels 1, répondus 0" in chart  # a French page
    assert ">01/10h<" in chart and "UTC" not in chart and "09h" not in chart
    assert 'data-tz="Europe/Paris"' in page  # console.js's zone
    o = c.get(f"/api/campaigns/{CAMPAIGN}/overview").json()
    assert o["next_allowed"] == "2026-12-02T09:00:00+00:00"
    assert o["per_hour"] == [{"hour": "2026-12-01T09", "outcome": "busy", "n": 1}]
    assert o["recent_calls"][0]["started_at"].startswith("2026-12-01T09:30:00")
    assert "2026-12-01 10:00 Europe/Paris" in html.unescape(o["chart_svg"])


def test_the_rights_look_up_shows_local_times(web) -> None:
    privacy.optout_add(web.store, "+33199000010", "email", CALLED, "FR")
    c = web.client()
    login(c, "ada")
    page = html.unescape(c.get(f"/c/{CAMPAIGN}/rights",
                               params={"number": "01 99 00 00 10"}).text)
    found = page.split('id="lookup-result"')[1].split("</p>")[0]
    assert "(e-mail, 01/12/2026 10:30 (Europe/Paris))" in found
    proof = page.split('id="consent-proof"')[1].split("</table>")[0]
    assert "<td>01/12/2026 10:30 (Europe/Paris)</td>" in proof
    assert "Z<" not in proof and "T09:30" not in proof


def test_the_chart_groups_by_the_zones_hour() -> None:
    rows = [{"hour": "2026-12-01T09", "outcome": "busy", "n": 2},
            {"hour": "2026-12-01T10", "outcome": "message_played", "n": 3},
            {"hour": "2026-07-01T08", "outcome": "busy", "n": 1}]  # summer: UTC+2 in Paris
    svg = html.unescape(per_hour_svg(rows, "Europe/Paris"))
    assert "2026-12-01 10:00 Europe/Paris: 2 calls" in svg
    assert "2026-12-01 11:00 Europe/Paris: 3 calls, 3 answered" in svg
    assert "2026-07-01 10:00 Europe/Paris: 1 calls" in svg
    reunion = html.unescape(per_hour_svg(rows, "Indian/Reunion"))  # UTC+4
    assert "2026-12-01 13:00 Indian/Reunion: 2 calls" in reunion


@pytest.mark.parametrize("zone", ["Europe/Paris", "America/Cayenne", "Pacific/Noumea"])
@pytest.mark.parametrize("at", ["2026-12-01T09:30:05.000Z", "2026-07-14T23:59:59+00:00"])
def test_a_live_update_writes_the_times_as_the_page_does(zone: str, at: str) -> None:
    """console.js's show() on one event: the next allowed time and the last calls in the
    zone, exactly as the server's filter wrote them (before: the API's UTC came back)."""
    from ivr.web.display import local_time
    shown = run_console(SHOWN, {"at": at, "zone": zone})
    assert shown["next"] == local_time(at, zone)
    assert shown["started"] == local_time(at, zone, named=False, seconds=True)
    assert shown["ended"] == ""
    assert shown["eta"] == service.eta_text(90061) == "25:01:01"  # not '1 day, 1:01:01'


def test_an_unknown_zone_or_time_shows_what_it_is() -> None:
    from ivr.web.display import local_time
    assert local_time("not a time", "Europe/Paris") == "not a time"
    assert local_time(None, "Europe/Paris") == ""
    assert local_time("2026-12-01T09:30:00Z", "Nowhere/Else") == "01/12/2026 09:30 (Nowhere/Else)"
    assert service.eta_text(None) == "—" and service.eta_text(59.6) == "0:01:00"


# The next allowed time, the eta and the last calls as one live update rewrites them.
SHOWN = r"""
const at = given.at;
const els = {"next-allowed": el(), "eta": el()};
const tbodies = {"#recent-calls tbody": el()};
load(els, tbodies, {tz: given.zone});
send({eta_s: 90061, next_allowed: at,
      recent_calls: [{id: 1, number: "+33199000010", attempt: 1, node: "n1", started_at: at,
                      ended_at: null, outcome: null, keys: ""}]});
const cells = tbodies["#recent-calls tbody"].children[0].children;
console.log(JSON.stringify({next: els["next-allowed"].textContent, eta: els["eta"].textContent,
                            started: cells[4].textContent, ended: cells[5].textContent}));
"""


def test_a_half_hour_zones_bars_start_at_the_half_hour() -> None:
    """The Marquesas (UTC-9:30): the hour 18Z runs 08:30-09:30 there, so a legal 09:15 call is
    under an '08h30' bar, not an 08h one (before it)."""
    rows = [{"hour": "2026-12-01T18", "outcome": "message_played", "n": 1}]
    svg = html.unescape(per_hour_svg(rows, "Pacific/Marquesas"))
    assert "2026-12-01 08:30 Pacific/Marquesas: 1 calls, 1 answered" in svg
    assert ">01/08h30<" in svg


def test_the_night_the_clocks_go_back_has_two_bars_at_two() -> None:
    """Found in review: bars were keyed by local hour, so on 25 October the UTC hours 00 and
    01, both 02:00 in Paris, made one bar of both hours' calls (3 + 4 = 7 in one hour)."""
    import re as re_mod
    rows = [{"hour": "2026-10-25T00", "n": 3, "outcome": "message_played"},
            {"hour": "2026-10-25T01", "n": 4, "outcome": "no_answer"},
            {"hour": "2026-10-25T09", "n": 1, "outcome": "busy"}]
    titles = re_mod.findall(r"<title>(.*?)</title>", per_hour_svg(rows, "Europe/Paris"))
    assert titles == ["2026-10-25 02:00 (+02:00) Europe/Paris: 3 calls, 3 answered",
                      "2026-10-25 02:00 (+01:00) Europe/Paris: 4 calls, 0 answered",
                      "2026-10-25 10:00 Europe/Paris: 1 calls, 0 answered"]
