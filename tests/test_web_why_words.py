"""Why nobody is called, in the page's language: the plan's reasons as data (why.why_parts),
worded in French by the page, by the live events and by the polling fallback that ask for
`lang=fr`, with each rule's English detail beside its words; a controller's own words behind
the note that says they are English. The API without `lang` keeps the command line's
English sentence, which why_sentence still writes byte for byte. Words only: SQLite."""
from __future__ import annotations

import html
import json
from datetime import datetime, timezone

import pytest

from conftest import add_contact
from web_fixture import CAMPAIGN, NOW, login, make_web
import ivr.web.app as web_app
from ivr.campaign.run_control import STANDBY
from ivr.campaign.why import why_sentence
from ivr.web.display import why_text

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
LATE = datetime(2026, 12, 1, 20, 30, tzinfo=timezone.utc)  # 21:30 in Paris: nobody called
ZONE = "Europe/Paris"


@pytest.fixture
def web(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(web_app, "now", lambda: LATE)
    return make_web(tmp_path, monkeypatch)


def _why(web, lang: str | None = None) -> str:  # type: ignore[no-untyped-def]
    c = web.client()
    login(c, "vera")
    params = {"lang": lang} if lang else {}
    return c.get(f"/api/campaigns/{CAMPAIGN}/overview", params=params).json()["why_waiting"]


def _page_why(web) -> str:  # type: ignore[no-untyped-def]
    c = web.client()
    login(c, "vera")
    page = c.get(f"/c/{CAMPAIGN}/run").text
    return html.unescape(page.split('id="why-waiting">')[1].split("<")[0])


def test_no_contacts_in_french_and_the_api_keeps_english(web) -> None:
    assert _why(web) == ("no contacts for campaign 'demo': import a list with `ivr contacts "
                         "import FILE --source NAME`, or bind one with `ivr contacts share`")
    french = ("aucun contact dans la campagne « demo » : importez une liste (page Contacts, ou "
              "`ivr contacts import FICHIER --source NOM`), ou liez-en une avec "
              "`ivr contacts share`")
    assert _why(web, "fr") == french and _page_why(web) == french
    assert _why(web, "xx") == _why(web, "en") == _why(web)  # unknown: the API's English


def test_all_done_counts_the_statuses_in_words(web) -> None:
    for i, status in enumerate(("done", "done", "exhausted")):
        add_contact(web.store, f"+3319900001{i}", at=NOW, campaigns=(CAMPAIGN,), status=status)
    assert _why(web) == "all done: nothing left to call (2 done, 1 exhausted)"
    assert _why(web, "fr") == \
        "tout est fait : plus personne à appeler (terminé : 2, tentatives épuisées : 1)"


def test_the_events_of_a_french_page_say_why_in_french(web) -> None:
    add_contact(web.store, "+33199000010", at=NOW, campaigns=(CAMPAIGN,))
    c = web.client()
    login(c, "vera")
    with c.stream("GET", f"/api/campaigns/{CAMPAIGN}/events", params={"lang": "fr"}) as r:
        event = json.loads(next(r.iter_lines())[len("data: "):])
    assert event["why_waiting"].startswith(
        "personne ne peut être appelé maintenant : 1 contact(s) — hors des plages d'appel, prochain appel "
        "permis 02/12/2026 10:00 (Europe/Paris) (détail en anglais : ")
    assert event["why_parts"][0]["reason"] == "outside_window"  # the data stays the API's
    assert event["next_allowed"] == "2026-12-02T09:00:00+00:00"


def test_parts_a_page_rarely_meets_and_a_controllers_own_words() -> None:
    parts = [{"kind": "stopped_due", "n": 2},
             {"kind": "reason", "reason": "attempt_cap", "n": 1, "next_allowed": None,
              "detail": "3 attempts in the last 30 days (max 3)"},
             {"kind": "reason", "reason": "made_up", "n": 4, "next_allowed": None,
              "detail": "d"}]
    o = {"why_waiting": why_sentence(parts), "why_parts": parts}
    assert o["why_waiting"] == ("the run stopped with 2 contact(s) still due, not called; "
                                "1 attempt cap (3 attempts in the last 30 days (max 3)); "
                                "4 made up (d)")
    assert why_text("fr", o, ZONE) == (
        "la campagne s'est arrêtée avec 2 contact(s) encore à appeler; 1 contact(s) — nombre "
        "maximal d'essais atteint (détail en anglais : 3 attempts in the last 30 days (max 3)); "
        "4 contact(s) — made up (détail en anglais : d)")  # no words for a reason: its code, readable
    assert why_text("en", o, ZONE) == o["why_waiting"]
    held = {"why_waiting": "node n1 down (2 call(s) in flight wait for it)", "why_parts": []}
    assert why_text("fr", held, ZONE) == \
        "Nœud n1 : injoignable (2 appel(s) en cours l'attendent)"  # in review: English
    other = {"why_waiting": "store unavailable: disk full", "why_parts": []}
    assert why_text("fr", other, ZONE) == "Détail en anglais : store unavailable: disk full"
    assert why_text("fr", {"why_waiting": STANDBY, "why_parts": []}, ZONE) == \
        "en attente du bouton Démarrer de la console"
    assert why_text("fr", {"why_waiting": "", "why_parts": []}, ZONE) == ""
