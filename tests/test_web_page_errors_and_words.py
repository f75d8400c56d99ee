"""Console follow-ups, each reproduced first: a campaign named with a '/' (municipales/2026) gets
its list's cap and the login after an ended session returns to the form's own page (a prompt
named like a section, 'run', sent it to /c/demo%2Fprompts/run, a 404; an unencoded Referer lost
its query); the run page's preflight, desired state and its live rewrite in the page's language;
a URL no route matches (or a form's URL opened by GET) is the short French/English page outside
/api/ (it was Starlette's JSON); a recording's upload and a rebuild flash in French."""
from __future__ import annotations

import html as html_mod
import os
import re
import shutil
from urllib.parse import unquote

import pytest

import web_fixture
from conftest import Backend, backend_sqlite_only
from console_js import run_console
from test_web_console_words import SHOWN, english, flash_after
from test_web_gate import MIB, drive
from test_web_prompts import _tone
from web_fixture import CAMPAIGN, Web, login, make_web
from ivr.web import i18n

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SLASHED = "municipales/2026"


@pytest.fixture
def web(backend: Backend, tmp_path, monkeypatch) -> Web:  # type: ignore[no-untyped-def]
    return make_web(tmp_path, monkeypatch, backend)


@pytest.fixture
def slashed(backend: Backend, tmp_path, monkeypatch) -> Web:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(web_fixture, "CAMPAIGN", SLASHED)  # make_web's config takes it
    return make_web(tmp_path, monkeypatch, backend)


# -- a campaign named with a '/': the upload's cap, the login's way back ------------------------
@backend_sqlite_only  # the gate's routing; the import itself is tested on both elsewhere
def test_a_slashed_campaigns_list_over_a_mib_is_accepted(slashed: Web) -> None:
    rows = "".join(f"+3319900{i:04d},{'x' * 120}\n" for i in range(9000))
    data = ("number,note\n" + rows).encode()
    assert len(data) > 1 * MIB  # over the cap of any other body
    c = slashed.client()
    token = login(c, "otto")
    r = c.post("/c/municipales%2F2026/contacts/upload",
               data={"source": "adherents", "basis": "member_file", "csrf_token": token},
               files={"file": ("big.csv", data)})
    assert r.status_code == 200 and 'id="upload-summary"' in r.text, r.text[:300]
    assert [row["source"] for row in slashed.store.lists_of(SLASHED)] == ["adherents"]


@backend_sqlite_only  # session mechanics
def test_the_login_returns_to_the_forms_page_whatever_the_campaign_or_prompt_is_named(
        slashed: Web) -> None:
    a = slashed.client()
    token = login(a, "otto")
    slashed.store.end_sessions("otto")  # a's cookie keeps its csrf_token, not its session
    for path, page in (("/c/demo/prompts/run/recording", "/c/demo/prompts"),
                       ("/c/demo/prompts/contacts/recording", "/c/demo/prompts"),
                       ("/c/municipales/2026/prompts/reports/recording",
                        "/c/municipales%2F2026/prompts"),
                       ("/c/municipales/2026/contacts/upload", "/c/municipales%2F2026/contacts"),
                       ("/c/run/run/control", "/c/run/run")):
        if path.endswith("/control"):  # not an upload: the app's NotLoggedIn answers
            r = a.post(path, data={"action": "pause", "csrf_token": token})
            status, location = r.status_code, r.headers["location"]
        else:  # an upload: the gate answers before the body is read
            status, head, _, read = drive(slashed.app, path, 2 * MIB)
            assert read == 0, path
            location = head["location"]
        assert status == 303 and location.startswith("/login?next="), path
        assert unquote(location.removeprefix("/login?next=")) == page, path


@backend_sqlite_only  # session mechanics
def test_the_login_keeps_the_number_looked_up_on_a_slashed_campaigns_page(slashed: Web) -> None:
    """The page's URL as the browser had it (its '/' not %2F-encoded) is the same page."""
    a = slashed.client()
    token = login(a, "otto")
    slashed.store.end_sessions("otto")
    page = "/c/municipales/2026/rights?number=%2B33199"
    r = a.post("/c/municipales%2F2026/rights/optout", data={"number": "x", "csrf_token": token},
               headers={"referer": f"http://testserver{page}"})
    assert r.status_code == 303 and unquote(r.headers["location"]) == f"/login?next={page}"


# -- the run page's words -------------------------------------------------------------------------
def _run_page(c) -> str:  # type: ignore[no-untyped-def]
    r = c.get(f"/c/{CAMPAIGN}/run")
    assert r.status_code == 200
    return r.text


@backend_sqlite_only  # templates and i18n
def test_the_run_pages_preflight_and_desired_state_are_in_the_pages_language(web: Web) -> None:
    c = web.client()
    token = login(c, "ada")
    c.post(f"/c/{CAMPAIGN}/run/control", data={"action": "start", "csrf_token": token})
    page = _run_page(c)
    preflight = page.split('id="preflight"')[1].split("</ul>")[0]
    assert re.search(r"<strong>(erreur|avertissement|info)</strong>", preflight), preflight
    assert not re.search(r"<strong>(error|warning)</strong>", preflight)
    assert 'id="preflight-note"' in page and "Détail en anglais" in page
    assert re.search(r'<strong id="desired" data-state="running" data-states=\'[^\']*\'>'
                     r'en cours</strong>', page)
    english(c)
    page = _run_page(c)
    preflight = page.split('id="preflight"')[1].split("</ul>")[0]
    assert re.search(r"<strong>(error|warning|info)</strong>", preflight)
    assert re.search(r'<strong id="desired" data-state="running" data-states=\'[^\']*\'>'
                     r'running</strong>', page)


@backend_sqlite_only  # templates and the page's script
@pytest.mark.skipif(shutil.which("node") is None and not os.environ.get("CI"),
                    reason="node runs the page's script (scripts/setup.sh installs nodejs)")
def test_the_live_run_page_keeps_the_pages_language(web: Web) -> None:
    """The script rewrites the run page's #desired every second too: with the page's words."""
    c = web.client()
    login(c, "ada")
    found = re.search(r'<strong id="desired" data-state="" data-states=\'([^\']*)\'>',
                      _run_page(c))  # no desired state written yet: no raw state
    assert found, "the run page gives the script no words"
    given = {"states": html_mod.unescape(found.group(1)), "up": "actif", "down": "injoignable"}
    out = run_console(SHOWN, given)
    assert out["desired"] == "en pause"
    assert out["state"] == "paused"  # the raw state follows the live state


# -- a URL no route matches -----------------------------------------------------------------------
@backend_sqlite_only  # routing and templates
def test_a_url_no_route_matches_is_a_page_outside_the_api(web: Web) -> None:
    c = web.client()
    login(c, "vera")
    for path in (f"/c/{CAMPAIGN}/nope", "/nope", "/c/municipales%2F2026/nope"):
        r = c.get(path)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), path
        assert "Page introuvable" in r.text and 'lang="fr"' in r.text
        assert "Aucune page de la console n&#39;a cette adresse." in r.text
    r = c.get(f"/c/{CAMPAIGN}/run/control")  # a form's URL opened by GET
    assert r.status_code == 405 and r.headers["content-type"].startswith("text/html")
    assert r.headers["allow"] == "POST" and "Cette adresse reçoit un formulaire" in r.text
    assert web.client().get("/c/demo/nope").status_code == 404  # logged in or not: no detail
    for path, status in (("/api/nope", 404), (f"/api/campaigns/{CAMPAIGN}/nope", 404),
                         (f"/api/campaigns/{CAMPAIGN}/control", 405)):
        r = c.get(path)
        assert r.status_code == status and r.headers["content-type"] == "application/json"
        assert r.json()["detail"] in ("Not Found", "Method Not Allowed"), path
    english(c)
    r = c.get(f"/c/{CAMPAIGN}/nope")
    assert r.status_code == 404 and "Not found" in r.text and 'lang="en"' in r.text
    assert "No page of the console has this address." in r.text


# -- a recording's upload and a rebuild, flashed in the page's language ---------------------------
@pytest.fixture
def recorded(backend: Backend, tmp_path, monkeypatch) -> Web:  # type: ignore[no-untyped-def]
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "message.wav").write_bytes(_tone(800))
    return make_web(tmp_path, monkeypatch, backend, prompts={
        "sources_dir": "src", "build_dir": "build",
        "items": {"intro": {"text": "Bonjour, ceci est un appel politique."},
                  "message": {"file": "message.wav", "transcript": "Votez."}}})


@backend_sqlite_only  # files and i18n
def test_a_recordings_notes_are_in_the_pages_language(recorded: Web) -> None:
    c = recorded.client()
    token = login(c, "otto")
    url = f"/c/{CAMPAIGN}/prompts/message/recording"

    def upload(name: str, data: bytes) -> str:
        return flash_after(c, c.post(url, data={"csrf_token": token},
                                     files={"file": (name, data, "audio/wav")}))
    said = upload("take2.wav", _tone(900, volume=-6))
    kept = next(p.name for p in recorded.cfg.path("src").iterdir() if "-replaced-" in p.name)
    assert said == ("message : enregistrement de 0.9 s sauvegardé ; le précédent est gardé "
                    f"sous {kept}")
    said = upload("take.mp3", _tone(600, fmt="mp3"))  # not the configured file's type
    assert said == ("message : enregistré sous message.mp3 ; pour l'utiliser, indiquez "
                    "prompts.items.message.file: message.mp3 et sa transcription dans "
                    "config.yaml")
    english(c)
    said = upload("take3.wav", _tone(700, volume=-3))
    assert said.startswith("message: 0.7 s saved; the previous recording is kept as "
                           "message-replaced-")


def test_a_rebuilds_flash_not_installed_is_in_the_pages_language() -> None:
    res = {"prompts": {"intro": "a", "message": "b"}, "installed": False,
           "note": "not installed: pbx.sounds_dir /x: not writable"}
    assert i18n.rebuilt("fr", res) == "2 messages construits, non installés : pbx.sounds_dir " \
                                      "/x: not writable"
    assert i18n.rebuilt("en", res) == "2 prompts built, not installed: pbx.sounds_dir /x: " \
                                      "not writable"
    assert i18n.rebuilt("fr", {**res, "note": ""}) == "2 messages construits"
