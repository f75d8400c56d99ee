"""A French page says its refusals in French: a number that is no phone number, an erasure
whose confirmation differs, a pacing that is no number (the field's key first, as in the
English); any other refusal behind the "Détail en anglais" note. The English page and the API
keep the English. The rights and overview pages' channels, statuses and outcomes are words
(the codes submitted or matched with `ivr report` stay). The refusals are the service's,
before the store; the look-up reads the store, so both backends."""
from __future__ import annotations

import html
import re

import pytest

from conftest import CALLER_ID, Backend, add_contact, attempt
from web_fixture import CAMPAIGN, NOW, login, make_web, said as plain

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
FLASH_RE = re.compile(r'id="flash"[^>]*>(.*?)</p>')


@pytest.fixture
def web(backend: Backend, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    w = make_web(tmp_path, monkeypatch, backend)
    add_contact(w.store, "+33612345678", at=NOW, campaigns=(CAMPAIGN,))
    return w


def _flash(c, r) -> str:  # type: ignore[no-untyped-def]
    assert r.status_code == 303, r.text
    found = FLASH_RE.search(c.get(r.headers["location"]).text)
    assert found, "no flash on the page"
    return html.unescape(plain(found.group(1)))


def _by_field(r) -> str:  # type: ignore[no-untyped-def]
    """The opposition form's refusal: its page again, the error beside the field."""
    assert r.status_code == 400, r.status_code
    found = re.search(r'id="optout-error"[^>]*>(.*?)</p>', r.text)
    assert found, "no error by the opposition form"
    return html.unescape(plain(found.group(1)))


def test_the_rights_and_pacing_refusals_are_french_on_a_french_page(web) -> None:
    c = web.client()
    token = login(c, "ada")
    rights, run = f"/c/{CAMPAIGN}/rights", f"/c/{CAMPAIGN}/run"
    said = _by_field(c.post(f"{rights}/optout", data={"number": "06 12", "via": "email",
                                                      "csrf_token": token}))
    assert said.startswith("number: '06 12' n'est pas un numéro de téléphone valide : "
                           "donnez-le sous la forme +33… ou 0… (détail en anglais : "), said
    said = _flash(c, c.post(f"{rights}/erase", data={"number": "+33612345678", "confirm": "0612",
                                                     "csrf_token": token}))
    assert said == "confirm: retapez le numéro +33612345678 pour confirmer l'effacement"
    said = _flash(c, c.post(f"{run}/pacing", data={"max_concurrent": "abc",
                                                   "csrf_token": token}))
    assert said == "max_concurrent: 'abc' n'est pas un nombre entier"
    said = _flash(c, c.post(f"{run}/pacing", data={"calls_per_second": "vite",
                                                   "csrf_token": token}))
    assert said == "calls_per_second: 'vite' n'est pas un nombre"
    said = _flash(c, c.post(f"{run}/pacing", data={"max_concurrent": "100000",
                                                   "csrf_token": token}))
    assert said == ("Appels simultanés : 100000 est hors limites ; entre 1 et 20 "
                    "(dialer.max_concurrent de la configuration)"), said
    said = _flash(c, c.post(f"{run}/pacing", data={"csrf_token": token}))
    assert said == ("Rythme : indiquez les appels simultanés, les appels par seconde, ou les "
                    "deux"), said
    said = _by_field(c.post(f"{rights}/optout", data={"number": "0612345678", "via": "",
                                                      "csrf_token": token}))
    assert said.startswith("« Demande reçue par » : choisissez comment"), said
    said = _flash(c, c.post(f"{run}/pacing", data={"calls_per_second": "100000",
                                                   "csrf_token": token}))
    assert said.startswith("Détail en anglais : calls_per_second"), said  # any other: the note
    page = html.unescape(c.get(rights, params={"number": "banana"}).text)
    assert "number: 'banana' n'est pas un numéro de téléphone valide" in page
    assert c.get("/lang/en").status_code == 303
    said = _flash(c, c.post(f"{run}/pacing", data={"max_concurrent": "abc",
                                                   "csrf_token": token}))
    assert said == "max_concurrent: 'abc' is not a whole number"
    said = _by_field(c.post(f"{rights}/optout", data={"number": "06 12", "via": "email",
                                                      "csrf_token": token}))
    assert said.startswith("number: '06 12' is not a valid phone number: give it as +33…")
    r = c.post("/api/optouts", headers={"X-CSRF-Token": token},
               json={"number": "06 12", "via": "email"})
    assert r.json()["detail"].startswith("number: '06 12' is not a valid phone number")


def test_channels_statuses_and_outcomes_are_words_with_their_codes(web) -> None:
    called = add_contact(web.store, "+33612345679", at=NOW, campaigns=(CAMPAIGN,))
    call = attempt(web.store, called, CAMPAIGN, CALLER_ID, NOW)
    web.store.finish_unanswered(call["id"], "no_answer", "19", NOW, None)
    c = web.client()
    token = login(c, "otto")
    page = c.get(f"/c/{CAMPAIGN}/rights", params={"number": "+33612345678"}).text
    assert '<option value="post">courrier</option>' in page
    # nothing chosen for the operator (found in review: « courrier » was sent for a phone
    # request, and « consentement recueilli » for any list uploaded in a hurry)
    for select in ('id="optout-via" required>', 'id="optout-import-via" required>'):
        assert f'{select}<option value="" selected>— choisir —</option>' in page, select
    upload = c.get(f"/c/{CAMPAIGN}/contacts").text
    assert ('id="upload-basis" required><option value="" selected>— choisir —</option>'
            in upload)
    assert '<option value="email">e-mail</option>' in page
    assert "<td>à appeler</td>" in page.split('id="number-campaigns"')[1]
    assert ">pending<" not in page
    r = c.post(f"/c/{CAMPAIGN}/rights/optout", data={"number": "+33612345678", "via": "post",
                                                     "csrf_token": token})
    assert r.status_code == 303 and web.store.is_opted_out("+33612345678")
    page = html.unescape(c.get(r.headers["location"]).text)
    assert "(courrier, " in page.split('id="lookup-result"')[1].split("</p>")[0]
    keyed = "+33612345670"  # a key pressed in a call: its code was shown raw
    web.store.add_optout(keyed, "phone-key", NOW)
    page = html.unescape(c.get(f"/c/{CAMPAIGN}/rights", params={"number": keyed}).text)
    assert "(touche pendant l'appel, " in page.split('id="lookup-result"')[1].split("</p>")[0]
    lists = c.get(f"/c/{CAMPAIGN}/contacts").text
    assert "<td>opposé (liste d&#39;opposition)</td>" in lists and ">opted_out<" not in lists
    counts = html.unescape(c.get(f"/c/{CAMPAIGN}/overview").text.split('id="counts"')[1]
                           .split("</table>")[0])
    assert ('<td title="no_answer">pas de réponse <code>no_answer</code></td>'
            '<td data-outcome="no_answer">1</td>') in counts
    assert c.get("/lang/en").status_code == 303
    counts = c.get(f"/c/{CAMPAIGN}/overview").text.split('id="counts"')[1]
    assert '<td title="busy">busy</td>' in counts  # the words are the code: shown once


def test_the_eta_is_hours_minutes_seconds_as_the_live_script_writes_it() -> None:
    """console.js's eta() rewrites the field each second: '1 day, 1:00:00' became '25:00:00'."""
    from ivr.web.service import eta_text
    assert eta_text(90000) == "25:00:00" and eta_text(3599) == "0:59:59"
    assert eta_text(None) == "—"


@pytest.mark.parametrize(("body", "said"), [
    (b"numero,nom\n0612345678,Anne\n", "l.csv : pas de colonne « number » (colonnes trouvées : "
     "'numero', 'nom') : la première ligne du fichier doit nommer « number » la colonne des "
     "numéros de téléphone"),
    (b"", "l.csv est vide : sa première ligne doit être un en-tête nommant une colonne "
     "« number »"),
    (b"PK\x03\x04rest", "l.csv est un classeur (Excel, ODS), pas du texte CSV : "
     "enregistrez-le au format « CSV UTF-8 »")])
def test_a_list_refused_whole_says_why_in_french(web, body: bytes, said: str) -> None:
    """Found in review: a first list headed `numero` (the likeliest first upload) was refused
    in English on the French page, with nothing saying the column must be `number`."""
    c = web.client()
    token = login(c, "otto")
    r = c.post(f"/c/{CAMPAIGN}/contacts/upload",
               data={"csrf_token": token, "source": "liste-a", "basis": "consent"},
               files={"file": ("l.csv", body, "text/csv")})
    assert r.status_code == 400
    shown = html.unescape(plain(
        re.search(r'id="upload-error"[^>]*>(.*?)</p>', r.text).group(1)))
    assert shown == said
    r = c.post(f"/c/{CAMPAIGN}/contacts/upload",
               data={"csrf_token": token, "source": "liste-a", "basis": "consent",
                     "acquired_on": "31/12/2026"},
               files={"file": ("l.csv", b"number\n0612345678\n", "text/csv")})
    shown = html.unescape(plain(
        re.search(r'id="upload-error"[^>]*>(.*?)</p>', r.text).group(1)))
    assert shown == ("« Date d'acquisition » : '31/12/2026' n'est pas une date : donnez-la sous "
                     "la forme AAAA-MM-JJ")


def test_a_nodes_state_is_french_on_the_page_and_in_the_live_french_overview(web) -> None:
    """Found in review: `node n2 down`, `node n1 full` in English on the French overview."""
    from ivr.web.auth import now
    nodes = [{"name": "n1", "up": True, "in_flight": 2, "cap": 2, "holding": "node n1 full"},
             {"name": "n2", "up": False, "in_flight": 3, "cap": 9,
              "holding": "node n2 down (3 call(s) in flight wait for it)"}]
    web.store.publish_snapshot(CAMPAIGN, "ctl-a", {
        "campaign": CAMPAIGN, "in_flight": 5, "max_concurrent": 20, "rate_per_min": 0.0,
        "status": "holding", "stopped": False, "waiting": "", "nodes": nodes}, now())
    c = web.client()
    login(c, "vera")
    page = html.unescape(c.get(f"/c/{CAMPAIGN}/overview").text.split('id="nodes"')[1]
                         .split("</table>")[0])
    assert 'title="node n1 full">plein</td>' in page, page
    assert ">injoignable (3 appel(s) en cours l'attendent)</td>" in page, page
    live = c.get(f"/api/campaigns/{CAMPAIGN}/overview", params={"lang": "fr"}).json()
    assert [n["holding"] for n in live["nodes"]] == [
        "plein", "injoignable (3 appel(s) en cours l'attendent)"]
    api = c.get(f"/api/campaigns/{CAMPAIGN}/overview").json()  # the API's own words
    assert [n["holding"] for n in api["nodes"]] == [n["holding"] for n in nodes]


def test_a_flash_is_announced_to_a_screen_reader(web) -> None:
    """Found in review: only the login error had role="alert"."""
    c = web.client()
    token = login(c, "ada")
    r = c.post(f"/c/{CAMPAIGN}/run/pacing", data={"max_concurrent": "abc", "csrf_token": token})
    assert '<p id="flash" class="flash error" role="alert">' in c.get(r.headers["location"]).text
    r = c.post(f"/c/{CAMPAIGN}/run/pacing", data={"max_concurrent": "2", "csrf_token": token})
    assert '<p id="flash" class="flash ok" role="status">' in c.get(r.headers["location"]).text
