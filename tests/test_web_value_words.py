"""The codes the console shows, in the page's language: a proof row's kind (consentement,
refus, opposition), a list's legal basis (the form sends the code, shows the words), the
user's role, an outcome in the last calls and in a count the live script adds, and the
chart's bar titles, on the page and in the events a French page asks for. The API keeps its
codes and its English chart. Templates and words only: SQLite."""
from __future__ import annotations

import html
import json
import os
import re
import shutil
from datetime import timedelta

import pytest

from conftest import CALLER_ID, add_contact, attempt
from console_js import run_console
from web_fixture import CAMPAIGN, NOW, login, make_web
from ivr.callflow.outcomes import OUTCOMES
from ivr.records import privacy
from ivr.store.base import CallResult
from ivr.web import api, i18n
from ivr.web.chart import per_hour_svg

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
NUMBER = "+33199000010"


def _answered(store, found, choice: str, key: str, outcome: str, minutes: int,  # type: ignore[no-untyped-def]
              campaign: str = CAMPAIGN) -> None:
    at = NOW - timedelta(minutes=minutes)
    call = attempt(store, found, campaign, CALLER_ID, at)
    assert store.finish_answered(call["id"], CallResult(
        outcome=outcome, stage="question", keys=key, heard={}, choice=choice, choice_key=key),
        at + timedelta(seconds=30))


@pytest.fixture
def web(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """NUMBER refused in another campaign, consented in this one, then objected by e-mail;
    another number refused here."""
    w = make_web(tmp_path, monkeypatch)
    found = add_contact(w.store, NUMBER, at=NOW - timedelta(days=1), source="porte-a-porte",
                        campaigns=(CAMPAIGN, "autre"), basis="member_file")
    other = add_contact(w.store, "+33199000012", at=NOW - timedelta(days=1),
                        campaigns=(CAMPAIGN,))
    _answered(w.store, found, "refusal", "2", "declined", 40, campaign="autre")
    _answered(w.store, found, "consent", "1", "message_played", 20)
    _answered(w.store, other, "refusal", "2", "declined", 25)
    privacy.optout_add(w.store, NUMBER, "email", NOW - timedelta(minutes=5), "FR")
    return w


def _between(page: str, start: str, end: str = "</table>") -> str:
    return html.unescape(page.split(start, 1)[1].split(end, 1)[0])


def test_a_proof_rows_kind_and_a_lists_basis_are_words_on_the_rights_page(web) -> None:
    c = web.client()
    login(c, "ada")
    page = c.get(f"/c/{CAMPAIGN}/rights", params={"number": NUMBER}).text
    proof = _between(page, 'id="consent-proof"')
    assert '<td title="refusal">refus</td>' in proof
    assert '<td title="consent">consentement</td>' in proof
    assert '<td title="optout">opposition</td>' in proof
    assert ">refusal<" not in proof and ">consent<" not in proof
    assert "<td>fichier d'adhérents</td>" in _between(page, 'id="number-campaigns"')
    # the second table has its own heading (it ran on from the proof's as if one table)
    assert html.unescape(page).count("<h3>Listes et campagnes du numéro</h3>\n  <table "
                                      'id="number-campaigns" aria-label="Listes et campagnes '
                                      'du numéro">') == 1
    c.get("/lang/en")
    page = c.get(f"/c/{CAMPAIGN}/rights", params={"number": NUMBER}).text
    assert '<td title="consent">consent</td>' in _between(page, 'id="consent-proof"')
    assert "<td>member file</td>" in _between(page, 'id="number-campaigns"')
    assert "<h3>The number's lists and campaigns</h3>" in html.unescape(page)


def test_the_upload_form_sends_the_basis_code_and_shows_its_words(web) -> None:
    c = web.client()
    token = login(c, "otto")
    page = c.get(f"/c/{CAMPAIGN}/contacts").text
    options = re.findall(r'<option value="([^"]+)">([^<]+)</option>',
                         _between(page, 'id="upload-basis"', "</select>"))
    assert options == [("consent", "consentement recueilli"),
                       ("member_file", "fichier d'adhérents"), ("rented_file", "fichier loué")]
    assert "<td>fichier d'adhérents</td>" in _between(page, 'id="lists"')
    r = c.post(f"/c/{CAMPAIGN}/contacts/upload", files={"file": ("a.csv", b"number\n0199000011\n")},
               data={"source": "marche", "basis": "rented_file", "acquired_on": "2026-11-01",
                     "csrf_token": token})
    assert r.status_code == 200, r.text
    bases = {row["source"]: row["basis"] for row in web.store.lists_of(CAMPAIGN)}
    assert bases["marche"] == "rented_file"  # the code is stored, not the words


def test_the_role_is_in_the_pages_language(web) -> None:
    c = web.client()
    login(c, "vera")
    page = c.get(f"/c/{CAMPAIGN}/overview").text
    assert '<span class="who">vera (lecteur)</span>' in page
    c.get("/lang/en")
    assert '<span class="who">vera (viewer)</span>' in c.get(f"/c/{CAMPAIGN}/overview").text


def test_the_last_calls_and_the_chart_are_in_the_pages_language(web) -> None:
    c = web.client()
    login(c, "vera")
    page = c.get(f"/c/{CAMPAIGN}/overview").text
    calls = _between(page, 'id="recent-calls"')
    assert '<td title="message_played">message écouté</td>' in calls
    assert '<td title="declined">refus</td>' in calls
    words = json.loads(html.unescape(re.search(r"id=\"recent-calls\" data-words='([^']*)'",
                                               page).group(1)))
    assert words == i18n.outcomes("fr") and words["busy"] == "occupé"
    assert set(words) == set(OUTCOMES)  # every outcome has its words
    chart = _between(page, 'id="chart"', "</div>")
    assert "10:00 Europe/Paris : appels 2, répondus 2" in chart and "calls" not in chart
    c.get("/lang/en")
    page = c.get(f"/c/{CAMPAIGN}/overview").text
    assert '<td title="declined">declined</td>' in _between(page, 'id="recent-calls"')
    assert "10:00 Europe/Paris: 2 calls, 2 answered" in _between(page, 'id="chart"', "</div>")
    api_view = c.get(f"/api/campaigns/{CAMPAIGN}/overview").json()  # the API keeps English
    assert "2 calls, 2 answered" in html.unescape(api_view["chart_svg"])
    assert {r["outcome"] for r in api_view["recent_calls"]} == {"declined", "message_played"}


def test_the_events_chart_is_in_the_language_asked_and_encoded_once_per_language() -> None:
    rows = [{"hour": "2026-12-01T09", "outcome": "busy", "n": 2}]
    data = {"per_hour": rows, "chart_svg": per_hour_svg(rows, "Europe/Paris")}
    kept: dict = {}
    fr = api._event_text(kept, CAMPAIGN, data, "fr", "Europe/Paris")
    en = api._event_text(kept, CAMPAIGN, data, "en", "Europe/Paris")
    assert "appels 2, répondus 0" in html.unescape(json.loads(fr[6:])["chart_svg"])
    assert "2 calls, 0 answered" in html.unescape(json.loads(en[6:])["chart_svg"])
    assert data["chart_svg"] == per_hour_svg(rows, "Europe/Paris")  # the cache's own, untouched
    assert api._event_text(kept, CAMPAIGN, data, "fr", "Europe/Paris") is fr


def test_the_events_route_passes_the_pages_language(web) -> None:
    c = web.client()
    login(c, "vera")
    for lang, words in (("fr", ": appels 2"), ("en", "calls,"), ("xx", "calls,")):
        with c.stream("GET", f"/api/campaigns/{CAMPAIGN}/events", params={"lang": lang}) as r:
            line = next(r.iter_lines())
        assert words in html.unescape(json.loads(line[len("data: "):])["chart_svg"]), lang


# A run's first outcome (a count row the page did not draw) and a call that ended, as one
# live update draws them.
SHOWN = r"""
const els = {"counts": el({words: given}), "recent-calls": el({words: given})};
const tbodies = {"#counts tbody": el(), "#recent-calls tbody": el()};
load(els, tbodies, {tz: "Europe/Paris"});
send({counts: {declined: 1, brand_new: 2},
      recent_calls: [{id: 1, number: "+33199000010", attempt: 1, node: "n1", started_at: null,
                      ended_at: null, outcome: "declined", keys: "2"},
                     {id: 2, number: "+33199000011", attempt: 1, node: "n1", started_at: null,
                      ended_at: null, outcome: null, keys: ""}]});
const counts = tbodies["#counts tbody"].children.map((tr) => ({
  text: tr.children[0].children.map((c) => c.tag === "code" ? "[" + c.textContent + "]"
                                                        : c.textContent).join(""),
  first: tr.children[0].textContent, title: tr.children[0].title,
  n: tr.children[1].textContent, outcome: tr.children[1].dataset.outcome}));
const calls = tbodies["#recent-calls tbody"].children.map((tr) => [tr.children[6].textContent,
                                                                   tr.children[6].title]);
console.log(JSON.stringify({counts: counts, calls: calls, url: url}));
"""


@pytest.mark.skipif(shutil.which("node") is None and not os.environ.get("CI"),
                    reason="node runs the page's script (scripts/setup.sh installs nodejs)")
def test_the_live_script_draws_outcomes_in_the_pages_words() -> None:
    got = run_console(SHOWN, json.dumps(i18n.outcomes("fr")))
    assert got["counts"] == [
        {"text": " [declined]", "first": "refus", "title": "declined", "n": "1",
         "outcome": "declined"},
        {"text": "", "first": "brand_new", "title": "brand_new", "n": "2",
         "outcome": "brand_new"}]  # a code with no words: as it is, once
    assert got["calls"] == [["refus", "declined"], ["…", ""]]
    assert got["url"] == "/api/campaigns/demo/events?lang=fr"


def test_a_list_uploaded_without_its_date_says_so_and_shows_it_unknown(web) -> None:
    """Not today's date: the page warns in French and the lists table says « inconnue »."""
    c = web.client()
    token = login(c, "otto")
    r = c.post(f"/c/{CAMPAIGN}/contacts/upload", files={"file": ("a.csv", b"number\n0199009912\n")},
               data={"source": "sans-date", "basis": "consent", "acquired_on": "",
                     "csrf_token": token})
    assert r.status_code == 200, r.text
    assert "aucune date d'acquisition : celle de la liste reste inconnue" in html.unescape(r.text)
    dates = {row["source"]: row["acquired_on"] for row in web.store.lists_of(CAMPAIGN)}
    assert dates["sans-date"] is None
    row = re.search(r"<tr><td>sans-date</td>(.*?)</tr>", c.get(f"/c/{CAMPAIGN}/contacts").text)
    assert row is not None and "<td>inconnue</td>" in row.group(1), row
