"""The console's opposition import answers with a page, as the contacts upload does: its count,
every rejected line (a person who may have objected and is not on the list) and a CSV of them.
It was a one-time flash in the session cookie listing 20 rejects at most; past 4096 bytes the
browser dropped the cookie and the operator saw nothing at all. No other flash may carry user
text of any length into the cookie either."""
from __future__ import annotations

import csv
import html
import io
import re

import pytest

from conftest import Backend, backend_sqlite_only
from web_fixture import CAMPAIGN, login, make_web
from ivr.web import rights_pages

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
COOKIE_MAX = 4096  # what browsers keep of one cookie, name and attributes included
URL = f"/c/{CAMPAIGN}/rights/optout-import"


@pytest.fixture
def web(backend: Backend, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    return make_web(tmp_path, monkeypatch, backend)


def _import(c, token: str, lines: list[str], via: str = "post"):  # type: ignore[no-untyped-def]
    return c.post(URL, data={"via": via, "csrf_token": token},
                  files={"file": ("opp.csv", "\n".join(lines).encode(), "text/csv")})


def _bad_lines(n: int) -> list[str]:
    # Each rejected with a long reason quoting the cell: 30 of them overflowed the cookie.
    return [f"06 12 34 56 {i:02d} poste {i} bureau de vote numéro {i}" for i in range(n)]


def test_every_reject_is_on_the_page_and_in_its_csv(web, monkeypatch) -> None:
    c = web.client()
    token = login(c, "otto")
    r = _import(c, token, ["number", *_bad_lines(30), "06 11 22 33 40", "06 11 22 33 41"])
    assert r.status_code == 200, r.status_code
    assert len(r.headers.get("set-cookie", "")) < COOKIE_MAX
    page = html.unescape(r.text)
    assert 'id="optout-rejects" data-count="30"' in page
    shown = [int(n) for n in re.findall(r"<tr><td>(\d+)</td>", page)]
    assert shown == list(range(2, 32))  # lines 2..31 of the file, every one
    assert "poste 29 bureau de vote" in page
    assert "Numéros ajoutés à la liste d'opposition : 2" in page
    assert "ne sont PAS sur la liste d'opposition" in page
    assert web.store.is_opted_out("+33611223340") and web.store.is_opted_out("+33611223341")
    link = page.split('id="optout-rejects-download" href="')[1].split('"')[0]
    download = c.get(link)
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(download.text)))
    assert rows[0] == ["line", "reason"] and [int(r[0]) for r in rows[1:]] == list(range(2, 32))
    # A viewer may not fetch them; an operator's contacts rejects id is not one of these.
    viewer = web.client()
    login(viewer, "vera")
    assert viewer.get(link).status_code == 403
    assert c.get(link.replace("/rights/rejects/", "/contacts/rejects/")).status_code == 404
    # Kept KEPT_REJECTS_S at most: an erasure outside the console is not heard of here
    from ivr.web import results
    later = results._clock() + results.KEPT_REJECTS_S + 1
    monkeypatch.setattr(results, "_clock", lambda: later)
    gone = c.get(link)
    assert gone.status_code == 404
    assert "Ces lignes rejetées ne sont plus gardées" in html.unescape(gone.text)  # French


@backend_sqlite_only  # the page's cap and wording: no store difference
def test_past_the_cap_the_page_says_so_and_the_csv_has_them_all(web, monkeypatch) -> None:
    monkeypatch.setattr(rights_pages, "SHOWN_REJECTS", 5)
    c = web.client()
    token = login(c, "otto")
    c.get("/lang/en")
    r = _import(c, token, ["number", *_bad_lines(12)])
    page = html.unescape(r.text)
    assert re.findall(r"<tr><td>(\d+)</td>", page) == ["2", "3", "4", "5", "6"]
    assert "Only the first 5 of the 12 rejected lines are listed here" in page
    assert "Numbers added to the opposition list: 0" in page  # English colon
    link = page.split('id="optout-rejects-download" href="')[1].split('"')[0]
    assert len(c.get(link).text.splitlines()) == 13  # header and all 12


@backend_sqlite_only
def test_an_import_without_rejects_says_so_and_offers_no_download(web) -> None:
    c = web.client()
    token = login(c, "otto")
    r = _import(c, token, ["number", "06 11 22 33 40"])
    assert r.status_code == 200
    assert 'id="optout-rejects" data-count="0"' in r.text
    assert "optout-rejects-download" not in r.text


@backend_sqlite_only
def test_a_refused_import_shows_its_reason_on_the_page(web) -> None:
    c = web.client()
    token = login(c, "otto")
    r = _import(c, token, ["06 11 22 33 40"], via="pigeon" * 2000)
    assert r.status_code == 400
    # the channel's refusal in the page's French, as the single number's form says it
    assert 'id="optout-import-error"' in r.text and \
        "choisissez comment la demande est arrivée" in r.text
    assert len(r.headers.get("set-cookie", "")) < COOKIE_MAX


@backend_sqlite_only
def test_no_flash_outgrows_the_cookie(web) -> None:
    """A flash quoting typed text (here the run control's action) is cut, not dropped."""
    c = web.client()
    token = login(c, "ada")
    r = c.post(f"/c/{CAMPAIGN}/run/control", data={"action": "é" * 3000, "csrf_token": token})
    assert r.status_code == 303
    assert len(r.headers.get("set-cookie", "")) < COOKIE_MAX
    shown = html.unescape(c.get(r.headers["location"]).text)
    assert re.search(r'id="flash" class="flash error" role="alert">Détail en anglais : <span lang="en">action: \'é+ \[…\]</span></p>', shown)
