"""An opposition import that stops part-way (a broken line past the first ones) keeps the
numbers before it on the list, each in its own transaction: their audit rows name the console
user who imported them, a row says the import stopped and how many it had added, and both the
page and the API say how many stay listed, so the operator does not take it that nothing
happened. Before, those rows had no actor and the answer was the bare error."""
from __future__ import annotations

import html

import pytest

from conftest import Backend
from web_fixture import CAMPAIGN, login, make_web

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
# Two good numbers, then an open quote that runs to the end of the file: refused at line 4.
BROKEN = b'number\n+33612345678\n+33612345679\n"+3361234\n5680\n'
LISTED = ("+33612345678", "+33612345679")


@pytest.fixture
def web(backend: Backend, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    return make_web(tmp_path, monkeypatch, backend)


def _rows(web) -> list[tuple[str, str | None, dict]]:  # type: ignore[no-untyped-def]
    return [(a["action"], a["actor"], a["detail"]) for a in web.store.audit_log(50)]


def test_the_page_names_the_user_and_says_what_stays_listed(web) -> None:
    c = web.client()
    token = login(c, "otto")
    r = c.post(f"/c/{CAMPAIGN}/rights/optout-import", data={"via": "post", "csrf_token": token},
               files={"file": ("o.csv", BROKEN, "text/csv")})
    assert r.status_code == 400
    page = html.unescape(r.text)
    assert 'id="optout-import-error"' in page and "line 4" in page
    assert ("2 numéro(s) des lignes avant l'erreur sont déjà sur la liste d'opposition"
            in page)
    assert all(web.store.is_opted_out(n) for n in LISTED)
    rows = _rows(web)
    optouts = [actor for action, actor, _ in rows if action == "optout"]
    assert optouts == ["otto", "otto"]
    stopped = [d for action, actor, d in rows
               if action == "optout_import_console" and actor == "otto"]
    assert stopped == [{"via": "post", "added": 2, "complete": False}]


def test_the_api_answers_the_count_added_before_the_error(web) -> None:
    c = web.client()
    h = {"X-CSRF-Token": login(c, "ada")}
    r = c.post("/api/optouts/import", headers=h, data={"via": "email"},
               files={"file": ("o.csv", BROKEN, "text/csv")})
    assert r.status_code == 400
    assert r.json()["added"] == 2 and "line 4" in r.json()["detail"]
    assert [actor for action, actor, _ in _rows(web) if action == "optout"] == ["ada", "ada"]
    # Imported again once fixed: the two already listed are not counted a second time.
    fixed = BROKEN.replace(b'"+3361234\n5680', b"+33612345680")
    r = c.post("/api/optouts/import", headers=h, data={"via": "email"},
               files={"file": ("o.csv", fixed, "text/csv")})
    assert r.status_code == 200 and r.json()["added"] == 1


def test_a_file_refused_at_its_first_line_adds_nothing_and_says_nothing_of_a_count(web) -> None:
    c = web.client()
    token = login(c, "otto")
    r = c.post(f"/c/{CAMPAIGN}/rights/optout-import", data={"via": "post", "csrf_token": token},
               files={"file": ("o.csv", b"name\nJean\n", "text/csv")})
    assert r.status_code == 400 and 'id="optout-import-partial"' not in r.text
    assert [a for a, *_ in _rows(web)].count("optout") == 0
