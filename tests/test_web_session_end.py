"""What a page left open does once its session ended (a logout in another tab, the 12 hours):
the reports page's downloads go through a page's route, which sends the login and then back to
the reports page; they were links to the API, whose 401 was a bare failed download in the
browser. (The live pages' reload on the API's 401: tests/integration/test_web_browser.py.)"""
from __future__ import annotations

import pytest

from web_fixture import CAMPAIGN, login, make_web

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def web(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    return make_web(tmp_path, monkeypatch)  # the store plays no part: links and redirects


def test_the_report_links_go_through_a_page_that_sends_the_login(web) -> None:
    c = web.client()
    token = login(c, "vera")
    page = c.get(f"/c/{CAMPAIGN}/reports").text
    for name in ("report.csv", "report.json"):
        link = f"/c/{CAMPAIGN}/reports/{name}"
        assert f'href="{link}"' in page
        r = c.get(link)
        assert (r.status_code, r.headers["location"]) == (303, f"/api/campaigns/{CAMPAIGN}/{name}")
        got = c.get(r.headers["location"])
        assert got.status_code == 200 and "attachment" in got.headers["content-disposition"]
    assert c.get(f"/c/{CAMPAIGN}/reports/passwords.txt").status_code == 404
    assert c.post("/logout", data={"csrf_token": token}).status_code == 303
    for name in ("report.csv", "report.json"):
        r = c.get(f"/c/{CAMPAIGN}/reports/{name}")
        assert (r.status_code, r.headers["location"]) == \
            (303, f"/login?next=/c/{CAMPAIGN}/reports")


FORMS = {"run/control": {"action": "pause"}, "run/pacing": {"max_concurrent": "1"},
         "prompts/rebuild": {}, "rights/optout": {"number": "+33199002001", "via": "phone"},
         "rights/erase": {"number": "+33199002001", "confirm": "+33199002001"}}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_a_form_of_a_tab_whose_session_ended_goes_to_the_login(web, form: str) -> None:
    """Two tabs, a logout in one: the other's form (its page's csrf_token, of the ended
    session) answers the login, which returns to the form's page, as the README says; it
    answered 403 « Le formulaire a expiré » and no login. Nothing is done either way."""
    c = web.client()
    token = login(c, "ada")
    assert c.post("/logout", data={"csrf_token": token}).status_code == 303
    r = c.post(f"/c/{CAMPAIGN}/{form}", data={**FORMS[form], "csrf_token": token})
    section = form.split("/")[0]
    assert (r.status_code, r.headers.get("location")) == \
        (303, f"/login?next=/c/{CAMPAIGN}/{section}")
    assert web.store.run_control(CAMPAIGN) is None
    assert not web.store.q("SELECT 1 FROM optouts")


def test_a_logged_in_form_without_its_token_is_still_refused(web) -> None:
    c = web.client()
    login(c, "ada")
    r = c.post(f"/c/{CAMPAIGN}/run/control", data={"action": "pause", "csrf_token": "old"})
    assert r.status_code == 403 and web.store.run_control(CAMPAIGN) is None
