"""The console's security in the web layer: no anonymous access, login and its rate limit,
signed HttpOnly SameSite=Strict session cookies, roles (viewer/operator/admin), CSRF on every
POST form and cookie-sent API write, bearer tokens for scripts, every action audited with its
user. What reads or writes users, tokens, run control and audit rows runs on both backends."""
from __future__ import annotations

import pytest

from conftest import Backend, backend_sqlite_only
from web_fixture import CAMPAIGN, NOW, PASSWORDS, csrf_of, login, make_web
from ivr.web_users import new_token, token_hash

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
PAGES = ("overview", "run", "contacts", "prompts", "rights", "reports")


@pytest.fixture
def web(backend: Backend, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    return make_web(tmp_path, monkeypatch, backend)


@backend_sqlite_only  # refused before any store read
def test_anonymous_pages_redirect_to_login_and_the_api_answers_401(web) -> None:
    c = web.client()
    for page in PAGES:
        r = c.get(f"/c/{CAMPAIGN}/{page}")
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), page
    for path in ("/api/campaigns", f"/api/campaigns/{CAMPAIGN}/overview",
                 f"/api/campaigns/{CAMPAIGN}/report.json", "/api/optouts/+33199000010"):
        assert c.get(path).status_code == 401, path
    r = c.post(f"/api/campaigns/{CAMPAIGN}/control", json={"action": "start"})
    assert r.status_code == 401
    assert web.store.run_control(CAMPAIGN) is None


def test_login_works_and_a_wrong_password_is_refused(web) -> None:
    c = web.client()
    token = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"username": "vera", "password": "wrong-password!",
                               "csrf_token": token})
    assert r.status_code == 401 and 'id="login-error"' in r.text
    assert c.get(f"/c/{CAMPAIGN}/overview").status_code == 303
    r = c.post("/login", data={"username": "nobody", "password": "whatever-it-is",
                               "csrf_token": token})
    assert r.status_code == 401 and 'id="login-error"' in r.text
    login(c, "vera")
    r = c.get(f"/c/{CAMPAIGN}/overview")
    assert r.status_code == 200 and "vera (lecteur)" in r.text  # the role in the page's words


@backend_sqlite_only  # cookie, limiter and CSRF mechanics
def test_the_session_cookie_is_signed_httponly_and_samesite_strict(web) -> None:
    c = web.client()
    token = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"username": "vera", "password": PASSWORDS["vera"],
                               "csrf_token": token})
    cookie = r.headers["set-cookie"].lower()
    assert "ivr_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    forged = web.client()
    forged.cookies.set("ivr_session", "eyJ1c2VyIjogImFkYSJ9.forged.sig")
    assert forged.get("/api/campaigns").status_code == 401


@backend_sqlite_only  # cookie, limiter and CSRF mechanics
def test_login_is_rate_limited_per_user_and_address(web) -> None:
    c = web.client()
    token = csrf_of(c.get("/login").text)
    for _ in range(5):
        r = c.post("/login", data={"username": "otto", "password": "bad-password-x",
                                   "csrf_token": token})
        assert r.status_code == 401
    # Even the right password is refused now: guessing stops here.
    r = c.post("/login", data={"username": "otto", "password": PASSWORDS["otto"],
                               "csrf_token": token})
    assert r.status_code == 429 and 'id="login-error"' in r.text
    login(c, "vera")  # another user from the same address is not locked out


@backend_sqlite_only  # cookie, limiter and CSRF mechanics
def test_a_login_without_its_csrf_token_is_refused(web) -> None:
    c = web.client()
    c.get("/login")
    r = c.post("/login", data={"username": "vera", "password": PASSWORDS["vera"]})
    assert r.status_code == 403


@backend_sqlite_only  # roles: refused before the store
def test_a_viewer_has_no_control_buttons_and_the_api_answers_403(web) -> None:
    c = web.client()
    token = login(c, "vera")
    page = c.get(f"/c/{CAMPAIGN}/run").text
    for button in ("btn-start", "btn-pause", "btn-resume", "btn-stop", "btn-hard-stop"):
        assert f'id="{button}"' not in page
    assert 'id="upload-form"' not in c.get(f"/c/{CAMPAIGN}/contacts").text
    assert 'id="optout-form"' not in c.get(f"/c/{CAMPAIGN}/rights").text
    headers = {"X-CSRF-Token": token}
    r = c.post(f"/api/campaigns/{CAMPAIGN}/control", json={"action": "start"}, headers=headers)
    assert r.status_code == 403
    r = c.post(f"/c/{CAMPAIGN}/run/control", data={"action": "start", "csrf_token": token})
    assert r.status_code == 403
    r = c.post("/api/optouts", json={"number": "+33199000010", "via": "post"}, headers=headers)
    assert r.status_code == 403
    assert web.store.run_control(CAMPAIGN) is None
    assert not web.store.is_opted_out("+33199000010")


def test_an_operator_starts_and_pauses_and_the_audit_names_them(web) -> None:
    c = web.client()
    token = login(c, "otto")
    page = c.get(f"/c/{CAMPAIGN}/run").text
    for button in ("btn-start", "btn-pause", "btn-resume", "btn-stop", "btn-hard-stop"):
        assert f'id="{button}"' in page
    r = c.post(f"/c/{CAMPAIGN}/run/control", data={"action": "start", "csrf_token": token})
    assert r.status_code == 303
    assert web.store.run_control(CAMPAIGN)["desired"] == "running"
    r = c.post(f"/api/campaigns/{CAMPAIGN}/control", json={"action": "pause"},
               headers={"X-CSRF-Token": token})
    assert r.status_code == 200 and r.json()["desired"] == "paused"
    row = web.store.run_control(CAMPAIGN)
    assert row["desired"] == "paused" and row["updated_by"] == "otto"
    actors = [(a["action"], a["actor"]) for a in web.store.audit_log(20)]
    assert ("run_control", "otto") in actors and ("login", "otto") in actors


@backend_sqlite_only  # the web layer's answer, before the store
def test_a_page_form_without_a_field_answers_a_page_naming_it(web) -> None:
    """Found by a probe: the page answered the API's JSON ({"detail": "action: Field
    required"}) in English, instead of a page of the console."""
    c = web.client()
    token = login(c, "otto")
    r = c.post(f"/c/{CAMPAIGN}/run/control", data={"csrf_token": token})
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")
    assert "Un champ du formulaire manque ou est mal rempli" in r.text and "action: Field required" in r.text
    assert web.store.run_control(CAMPAIGN) is None


@backend_sqlite_only  # cookie, limiter and CSRF mechanics
def test_a_post_without_its_csrf_token_is_refused(web) -> None:
    c = web.client()
    token = login(c, "otto")
    r = c.post(f"/c/{CAMPAIGN}/run/control", data={"action": "start"})
    assert r.status_code == 403
    r = c.post(f"/c/{CAMPAIGN}/run/control", data={"action": "start", "csrf_token": "x" + token})
    assert r.status_code == 403
    r = c.post(f"/api/campaigns/{CAMPAIGN}/control", json={"action": "start"})
    assert r.status_code == 403
    r = c.post(f"/c/{CAMPAIGN}/rights/optout", data={"number": "+33199000010", "via": "post"})
    assert r.status_code == 403
    assert web.store.run_control(CAMPAIGN) is None
    assert not web.store.is_opted_out("+33199000010")


def test_a_bearer_token_works_without_csrf_and_a_wrong_one_is_401(web) -> None:
    token = new_token()
    web.store.add_api_token("otto", token_hash(token), NOW)
    c = web.client()
    r = c.post(f"/api/campaigns/{CAMPAIGN}/control", json={"action": "stop"},
               headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["desired"] == "stopped"
    assert web.store.run_control(CAMPAIGN)["updated_by"] == "otto"
    r = c.get("/api/campaigns", headers={"Authorization": f"Bearer {token}x"})
    assert r.status_code == 401
    web.store.set_user("otto", disabled=True)
    r = c.get("/api/campaigns", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401


def test_a_disabled_users_session_ends(web) -> None:
    c = web.client()
    login(c, "otto")
    assert c.get("/api/campaigns").status_code == 200
    web.store.set_user("otto", disabled=True)
    assert c.get("/api/campaigns").status_code == 401
    assert c.get(f"/c/{CAMPAIGN}/overview").status_code == 303


@backend_sqlite_only  # roles: refused before the store
def test_only_an_admin_exports_and_erases(web) -> None:
    web.store.add_optout("+33199000010", "post", NOW)
    c = web.client()
    token = login(c, "otto")
    assert c.get("/api/numbers/+33199000010/export").status_code == 403
    r = c.post("/api/numbers/+33199000010/erase", json={"confirm": "+33199000010"},
               headers={"X-CSRF-Token": token})
    assert r.status_code == 403
    a = web.client()
    token = login(a, "ada")
    assert a.get("/api/numbers/+33199000010/export").status_code == 200


@backend_sqlite_only  # cookie, limiter and CSRF mechanics
def test_login_next_never_leaves_the_site(web) -> None:
    c = web.client()
    token = csrf_of(c.get("/login?next=//evil.example/").text)
    r = c.post("/login", data={"username": "vera", "password": PASSWORDS["vera"],
                               "csrf_token": token, "next": "//evil.example/"})
    assert r.status_code == 303 and r.headers["location"] == "/"
