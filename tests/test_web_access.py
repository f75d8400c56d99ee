"""The console for an operator with a screen reader or a keyboard only: a skip link, the
current page named, a title per page, a switcher that moves on its button only, and no
control or state told by a symbol alone. The live script's side (only what changed is
rewritten) is tests/integration/test_web_browser.py's."""
from __future__ import annotations

import re

import pytest

from web_fixture import CAMPAIGN, login, make_prompted_web
from ivr.web import i18n

SECTIONS = ("overview", "run", "contacts", "prompts", "rights", "reports")


@pytest.fixture
def web(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    return make_prompted_web(tmp_path, monkeypatch)  # the store plays no part: the templates


def _title(page: str) -> str:
    found = re.search(r"<title>([^<]*)</title>", page)
    assert found, "no title"
    return found.group(1)


def test_every_page_has_a_skip_link_its_own_title_and_names_the_current_page(web) -> None:
    c = web.client()
    login(c, "otto")
    for section in SECTIONS:
        page = c.get(f"/c/{CAMPAIGN}/{section}").text
        assert re.search(r'<a class="skip" href="#main">Aller au contenu</a>\s*<header>',
                         page), section
        assert '<main id="main" tabindex="-1">' in page, section
        words = i18n.translate("fr", section)
        assert _title(page).replace("&#39;", "'") == \
            f"{words} · Console de campagne · {CAMPAIGN}", section
        current = re.findall(r'<a [^>]*aria-current="page"[^>]*id="nav-([a-z]+)"', page)
        assert current == [section], section
    assert _title(c.get("/c/nowhere-such/overview").text).startswith(("Page introuvable",
                                                                       "Erreur", "Accès"))


def test_the_login_page_is_titled_and_the_switcher_moves_on_its_button(web) -> None:
    c = web.client()
    assert _title(c.get("/login").text).startswith("Connexion · ")
    login(c, "otto")
    page = c.get(f"/c/{CAMPAIGN}/overview").text
    form = page.split('<form id="campaign-switcher"')[1].split("</form>")[0]
    assert '<button type="submit" id="campaign-switch">Changer</button>' in form
    assert "<noscript>" not in form


def test_repeated_buttons_and_arrows_are_named(web) -> None:
    c = web.client()
    login(c, "otto")
    page = c.get(f"/c/{CAMPAIGN}/prompts").text
    keys = re.findall(r'<tr id="prompt-([a-z_]+)">', page)
    assert keys, "no prompt rows"
    named = re.findall(r'<button type="submit" aria-label="Importer ([a-z_]+)">Importer</button>',
                       page)
    assert named == keys  # one per row, each naming its prompt
    assert "<th></th>" not in page


def test_the_chart_says_its_bars_to_a_screen_reader() -> None:
    """role=img hides the bars' <title>s: the chart's own name gives every one of them."""
    from ivr.web.chart import per_hour_svg
    rows = [{"hour": "2026-12-01T09", "n": 3, "outcome": "message_played"},
            {"hour": "2026-12-01T10", "n": 2, "outcome": "busy"}]
    svg = per_hour_svg(rows, "Europe/Paris", "fr")
    label = re.search(r'<svg [^>]*role="img" aria-label="([^"]*)">', svg)
    titles = re.findall(r"<title>([^<]*)</title>", svg)
    assert label and len(titles) == 2
    assert label.group(1) == "Appels terminés par heure : " + "; ".join(titles)
    assert "appels 3, répondus 3" in titles[0] and "appels 2, répondus 0" in titles[1]
    empty = per_hour_svg([], "Europe/Paris", "en")
    assert 'aria-label="Calls ended per hour : —"' in empty


def test_a_refused_login_ties_its_error_to_both_fields(web) -> None:
    """The reader lands on the username field (autofocus): it says the field is invalid and
    reads the error with it, which a role=alert present at load is often not."""
    from web_fixture import csrf_of
    c = web.client()
    token = csrf_of(c.get("/login").text)
    page = c.post("/login", data={"username": "otto", "password": "wrong-password",
                                  "csrf_token": token, "next": "/"}).text
    assert '<p id="login-error" class="flash error" role="alert">' in page
    for field in ("username", "password"):
        tag = re.search(rf'<input id="{field}"[^>]*>', page)
        assert tag and 'aria-invalid="true" aria-describedby="login-error"' in tag.group(0)
    first = c.get("/login").text
    assert "aria-invalid" not in first


def test_every_table_of_the_pages_has_a_name(web) -> None:
    """A screen reader lists a page's tables by name; the prompts table had no heading."""
    c = web.client()
    login(c, "otto")
    for section in ("overview", "contacts", "prompts"):
        page = c.get(f"/c/{CAMPAIGN}/{section}").text
        tables = re.findall(r"<table\b[^>]*>", page)
        assert tables, section
        for tag in tables:
            assert re.search(r'aria-label="[^"]+"', tag), (section, tag)
    page = c.get(f"/c/{CAMPAIGN}/prompts").text
    assert re.search(r'<table id="prompts-table" aria-label="Messages">', page)


def test_a_refused_look_up_ties_its_error_to_the_number(web) -> None:
    c = web.client()
    login(c, "otto")
    page = c.get(f"/c/{CAMPAIGN}/rights", params={"number": "pas un numéro"}).text
    assert 'id="lookup-error" role="alert"' in page
    tag = re.search(r'<input name="number" id="lookup-number"[^>]*>', page)
    assert tag and 'aria-invalid="true" aria-describedby="lookup-error"' in tag.group(0)
    assert "aria-invalid" not in c.get(f"/c/{CAMPAIGN}/rights").text


def test_a_refused_opposition_keeps_what_was_typed_and_ties_its_error_to_it(web) -> None:
    """It came back as a flash after a redirect: the number typed was gone, and the error
    was tied to no field."""
    c = web.client()
    token = login(c, "otto")
    r = c.post(f"/c/{CAMPAIGN}/rights/optout",
               data={"number": "06 12 34 56 7", "via": "email", "csrf_token": token})
    assert r.status_code == 400
    assert re.search(r'<p class="flash error" id="optout-error" role="alert">number: ', r.text)
    tag = re.search(r'<input name="number" id="optout-number"[^>]*>', r.text)
    assert tag and 'value="06 12 34 56 7"' in tag.group(0)
    assert 'aria-invalid="true" aria-describedby="optout-error"' in tag.group(0)
    assert '<option value="email" selected>' in r.text
    select = re.search(r'<select name="via" id="optout-via"[^>]*>', r.text)
    assert select and "aria-invalid" not in select.group(0)  # the number is what is wrong
    assert '<option value="" selected>' in r.text.split('id="optout-import-via"')[1]
    assert 'id="flash"' not in r.text and web.store.db.execute(
        "SELECT count(*) FROM optouts").fetchone()[0] == 0
    r = c.post(f"/c/{CAMPAIGN}/rights/optout",
               data={"number": "06 12 34 56 78", "via": "", "csrf_token": token})
    assert r.status_code == 400 and 'id="optout-error"' in r.text  # no channel chosen: the
    select = re.search(r'<select name="via" id="optout-via"[^>]*>', r.text)  # channel is wrong
    tag = re.search(r'<input name="number" id="optout-number"[^>]*>', r.text)
    assert select and 'aria-invalid="true" aria-describedby="optout-error"' in select.group(0)
    assert tag and "aria-invalid" not in tag.group(0) and 'value="06 12 34 56 78"' in tag.group(0)
    page = c.get(f"/c/{CAMPAIGN}/rights").text
    assert 'id="optout-error"' not in page and "aria-invalid" not in page


def test_a_page_says_how_long_its_session_has_left(web) -> None:
    """12 hours after login the session ends: the page carries the seconds left and a hidden
    alert the script shows 5 minutes before (chromium: test_web_browser.py); none when
    logged out."""
    c = web.client()
    assert "session-ending" not in c.get("/login").text
    login(c, "otto")
    page = c.get(f"/c/{CAMPAIGN}/reports").text
    left = re.search(r'<body [^>]*data-session-left="(\d+)"', page)
    assert left and 12 * 3600 - 120 < int(left.group(1)) <= 12 * 3600
    assert re.search(r'<p id="session-ending" class="flash warning" role="alert" hidden>'
                     r"Votre session se termine dans moins de 5 minutes", page)
