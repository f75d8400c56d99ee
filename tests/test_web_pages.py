"""The console's pages: French by default with an English switch, the contract's element ids,
the campaign switcher, an upload showing its rejected lines (and their CSV), the opposition
form, the rights page's lookup, the SVG chart, and the live events stream."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from conftest import CALLER_ID, Backend, add_contact, attempt, backend_sqlite_only
from web_fixture import CAMPAIGN, NOW, csrf_of, login, make_web
from ivr.web.chart import per_hour_svg

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def web(backend: Backend, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    return make_web(tmp_path, monkeypatch, backend)


@backend_sqlite_only  # templates and i18n
def test_pages_are_french_with_an_english_switch(web) -> None:
    c = web.client()
    login(c, "vera")
    page = c.get(f"/c/{CAMPAIGN}/overview").text
    assert "Vue d&#39;ensemble" in page and 'id="lang-switch"' in page and 'lang="fr"' in page
    r = c.get(f"/lang/en?next=/c/{CAMPAIGN}/overview")
    assert r.status_code == 303 and r.headers["location"] == f"/c/{CAMPAIGN}/overview"
    page = c.get(f"/c/{CAMPAIGN}/overview").text
    assert "Overview" in page and "Vue d&#39;ensemble" not in page and 'lang="en"' in page
    assert "Connexion" in web.client().get("/login").text  # a new browser: French


def test_every_page_has_the_contracts_ids(web) -> None:
    c = web.client()
    login(c, "otto")
    ids = {"overview": ("counts", "in-flight", "why-waiting", "csrf", "lang-switch", "chart"),
           "run": ("btn-start", "btn-pause", "btn-resume", "btn-stop", "btn-hard-stop",
                   "in-flight", "why-waiting", "preflight", "pacing-form"),
           "contacts": ("upload-form", "lists"), "prompts": ("legal", "prompts-table"),
           "rights": ("optout-form", "lookup-form"), "reports": ("report-csv", "report-json")}
    for page, wanted in ids.items():
        html = c.get(f"/c/{CAMPAIGN}/{page}").text
        for element in wanted:
            assert f'id="{element}"' in html, (page, element)
        assert html.count('name="csrf_token"') >= 1
    assert 'id="login-form"' in web.client().get("/login").text


@backend_sqlite_only  # a template
def test_the_pacing_fields_show_the_configs_pacing_until_one_is_saved(web) -> None:
    """An empty field keeps the config's pacing: its figures show greyed in the field, and a
    saved pacing shows as the field's value."""
    c = web.client()
    token = login(c, "ada")
    top = web.cfg.dialer

    def field(name: str) -> str:
        html = c.get(f"/c/{CAMPAIGN}/run").text
        return html.split(f'name="{name}"')[1].split(">")[0]

    assert f'placeholder="{top.max_concurrent}" value=""' in field("max_concurrent")
    assert f'placeholder="{top.calls_per_second}" value=""' in field("calls_per_second")
    c.post(f"/c/{CAMPAIGN}/run/pacing", data={"max_concurrent": "1", "csrf_token": token})
    assert 'value="1"' in field("max_concurrent")
    assert 'value=""' in field("calls_per_second")


def test_the_switcher_lists_the_stores_campaigns(web) -> None:
    add_contact(web.store, "+33199000010", at=NOW, campaigns=("autumn",))
    c = web.client()
    login(c, "vera")
    html = c.get(f"/c/{CAMPAIGN}/overview").text
    assert '<option value="autumn">autumn</option>' in html
    assert f'<option value="{CAMPAIGN}" selected>' in html
    r = c.get("/?campaign=autumn")
    assert r.headers["location"] == "/c/autumn/overview"
    assert c.get("/c/autumn/contacts").status_code == 200


def test_an_upload_with_bad_rows_shows_and_offers_its_rejects(web) -> None:
    c = web.client()
    token = login(c, "otto")
    csv_text = "number\n+33199000010\nnot-a-number\n+33199000011\n12\n"
    r = c.post(f"/c/{CAMPAIGN}/contacts/upload",
               files={"file": ("list.csv", csv_text.encode(), "text/csv")},
               data={"source": "door-to-door", "basis": "consent", "csrf_token": token})
    assert r.status_code == 200
    html = r.text
    assert 'id="rejects" data-count="2"' in html
    assert "<td>3</td>" in html and "<td>5</td>" in html
    assert "2 ajouté(s)" in html  # the counts in the page's words
    link = html.split('id="rejects-download" href="')[1].split('"')[0]
    download = c.get(link)
    assert download.status_code == 200 and download.text.splitlines()[0] == "line,reason"
    assert [ln.split(",")[0] for ln in download.text.splitlines()[1:]] == ["3", "5"]
    lists = c.get(f"/c/{CAMPAIGN}/contacts").text
    assert "door-to-door" in lists


def test_the_opposition_form_and_the_lookup(web) -> None:
    c = web.client()
    token = login(c, "otto")
    r = c.post(f"/c/{CAMPAIGN}/rights/optout",
               data={"number": "01 99 00 00 10", "via": "phone", "csrf_token": token})
    assert r.status_code == 303
    assert web.store.is_opted_out("+33199000010")
    html = c.get(r.headers["location"]).text
    assert 'id="lookup-result" data-opted-out="true"' in html and "+33199000010" in html
    assert 'id="erase-form"' not in html  # an operator does not erase
    r = c.post(f"/c/{CAMPAIGN}/rights/optout",
               data={"number": "banana", "via": "phone", "csrf_token": token})
    assert r.status_code == 400 and "n&#39;est pas un numéro de téléphone valide" in r.text


def test_an_admin_erases_after_typing_the_number_again(web) -> None:
    add_contact(web.store, "+33199000010", at=NOW, campaigns=(CAMPAIGN,))
    c = web.client()
    token = login(c, "ada")
    html = c.get(f"/c/{CAMPAIGN}/rights?number=%2B33199000010").text
    assert 'id="erase-form"' in html and 'id="gdpr-export"' in html
    r = c.post(f"/c/{CAMPAIGN}/rights/erase",
               data={"number": "+33199000010", "confirm": "", "csrf_token": token})
    assert "confirm:" in c.get(r.headers["location"]).text
    assert web.store.contacts_by_number(["+33199000010"])
    r = c.post(f"/c/{CAMPAIGN}/rights/erase",
               data={"number": "+33199000010", "confirm": "+33199000010", "csrf_token": token})
    assert r.status_code == 303
    assert not web.store.contacts_by_number(["+33199000010"])


def test_the_chart_is_an_escaped_svg_of_calls_per_hour() -> None:
    svg = per_hour_svg([{"hour": "2026-12-01T10", "outcome": "busy", "n": 4},
                        {"hour": "2026-12-01T10", "outcome": "message_played", "n": 6},
                        {"hour": "2026-12-01T11", "outcome": "<x>", "n": 5}])
    assert svg.startswith("<svg") and svg.count('class="bar-all"') == 2
    assert "10 calls, 6 answered" in svg and "<x>" not in svg
    assert "—" in per_hour_svg([])


def test_overview_lists_the_last_calls(web) -> None:
    contact = add_contact(web.store, "+33199000010", at=NOW, campaigns=(CAMPAIGN,))
    attempt(web.store, contact, CAMPAIGN, CALLER_ID, NOW + timedelta(seconds=1))
    c = web.client()
    login(c, "vera")
    html = c.get(f"/c/{CAMPAIGN}/overview").text
    assert "+33199000010" in html.split('id="recent-calls"')[1]


def test_events_stream_the_overview(web) -> None:
    c = web.client()
    login(c, "vera")
    with c.stream("GET", f"/api/campaigns/{CAMPAIGN}/events") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                data = json.loads(line[len("data: "):])
                break
    assert data["campaign"] == CAMPAIGN and "counts" in data and "chart_svg" in data
    assert web.client().get(f"/api/campaigns/{CAMPAIGN}/events").status_code == 401


@backend_sqlite_only  # static files and headers
def test_static_files_and_security_headers(web) -> None:
    c = web.client()
    r = c.get("/static/console.js")
    assert r.status_code == 200 and "EventSource" in r.text
    login_page = c.get("/login")
    assert login_page.headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in login_page.headers["content-security-policy"]
    assert csrf_of(login_page.text)
