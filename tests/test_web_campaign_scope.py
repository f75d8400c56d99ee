"""Several parties' campaigns in one store: a console user bound to some campaigns
(`ivr users add NAME --role operator --campaign C`, `ivr users campaigns`) sees and acts on
those alone, by session or by API token; a campaign outside them answers as one that does not
exist; of one person's proof of consent it sees its campaigns' rows; an admin cannot be bound,
and what spans every campaign (GDPR export and erasure, the users, the audit) is never a bound
user's. The bindings are SQL of each backend: both run."""
from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import CALLER_ID, Backend, add_contact, attempt, backend_sqlite_only
from ivr.store.base import CallResult
from ivr.web.auth import User
from ivr.web_users import hash_password, token_hash
from test_users import PASSWORD, invoke
from web_fixture import CAMPAIGN, NOW, csrf_of, login, make_web

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

OTHER = "autre-parti"  # the other party's campaign, in the same store
NUMBER = "+33199000020"
OLGA_PASSWORD = "olga-password-1"
_HASH: list[str] = []


@pytest.fixture
def web(backend: Backend, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """Both campaigns in the store, each with a contact; NUMBER consented in both, its
    opposition recorded from CAMPAIGN; olga an operator bound to OTHER alone."""
    w = make_web(tmp_path, monkeypatch, backend)
    found = add_contact(w.store, NUMBER, at=NOW - timedelta(days=1),
                        campaigns=(CAMPAIGN, OTHER))
    add_contact(w.store, "+33199000021", at=NOW - timedelta(days=1), campaigns=(CAMPAIGN,))
    for minutes, campaign in ((30, CAMPAIGN), (20, OTHER)):
        call = attempt(w.store, found, campaign, CALLER_ID, NOW - timedelta(minutes=minutes))
        assert w.store.finish_answered(call["id"], CallResult(
            outcome="message_played", stage="question", keys="1", heard={}, choice="consent",
            choice_key="1"), NOW - timedelta(minutes=minutes - 1))
    w.store.add_optout(NUMBER, "post", NOW, CAMPAIGN)
    if not _HASH:
        _HASH.append(hash_password(OLGA_PASSWORD))
    w.store.add_user("olga", "operator", _HASH[0], NOW, campaigns=[OTHER])
    return w


def _login(client, name: str, password: str) -> str:  # type: ignore[no-untyped-def]
    token = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"username": name, "password": password,
                                    "csrf_token": token, "next": "/"})
    assert r.status_code == 303, r.text
    return token


def test_a_bound_operator_sees_and_acts_on_its_campaign_alone(web) -> None:
    c = web.client()
    _login(c, "olga", OLGA_PASSWORD)
    # The console's own campaign is not hers: she lands on hers, and the switcher lists it alone.
    r = c.get("/")
    assert r.status_code == 303 and r.headers["location"] == f"/c/{OTHER}/overview"
    page = c.get(f"/c/{OTHER}/overview")
    assert page.status_code == 200
    assert f'<option value="{OTHER}" selected>' in page.text
    assert f'<option value="{CAMPAIGN}"' not in page.text
    assert c.get("/api/campaigns").json() == {"default": OTHER, "campaigns": [OTHER]}
    token = csrf_of(page.text)
    for path in (f"/c/{CAMPAIGN}/overview", f"/c/{CAMPAIGN}/contacts", f"/c/{CAMPAIGN}/reports",
                 f"/api/campaigns/{CAMPAIGN}/overview", f"/api/campaigns/{CAMPAIGN}/contacts",
                 f"/api/campaigns/{CAMPAIGN}/report.csv",
                 f"/api/campaigns/{CAMPAIGN}/report.json"):
        r = c.get(path)
        assert r.status_code == 404, path
        assert "+33199000021" not in r.text and NUMBER not in r.text, path
    r = c.post(f"/api/campaigns/{CAMPAIGN}/control", json={"action": "start"},
               headers={"X-CSRF-Token": token})
    assert r.status_code == 404
    assert web.store.run_control(CAMPAIGN) is None  # nothing written for the other campaign
    assert c.get(f"/api/campaigns/{OTHER}/contacts").status_code == 200
    r = c.post(f"/api/campaigns/{OTHER}/control", json={"action": "pause"},
               headers={"X-CSRF-Token": token})
    assert r.status_code == 200 and web.store.run_control(OTHER)["desired"] == "paused"


def test_a_token_follows_its_users_campaigns_and_an_unbinding_takes_effect_at_once(web) -> None:
    web.store.add_api_token("olga", token_hash("ivr_olga-token"), NOW)
    c = web.client()
    bearer = {"Authorization": "Bearer ivr_olga-token"}
    assert c.get(f"/api/campaigns/{CAMPAIGN}/overview", headers=bearer).status_code == 404
    assert c.get(f"/api/campaigns/{OTHER}/overview", headers=bearer).status_code == 200
    _login(c, "olga", OLGA_PASSWORD)
    assert c.get(f"/c/{CAMPAIGN}/overview").status_code == 404
    web.store.set_user_campaigns("olga", None, NOW)  # every campaign, from the next request
    assert c.get(f"/c/{CAMPAIGN}/overview").status_code == 200
    assert c.get(f"/api/campaigns/{CAMPAIGN}/overview", headers=bearer).status_code == 200
    web.store.set_user_campaigns("olga", [CAMPAIGN], NOW)
    assert c.get(f"/c/{OTHER}/overview").status_code == 404
    assert c.get("/api/campaigns").json()["campaigns"] == [CAMPAIGN]
    # Bound to a campaign with no list yet: the home page says so, in the operator's words.
    web.store.set_user_campaigns("olga", ["legislatives"], NOW)
    r = c.get("/")
    assert r.status_code == 404 and "Aucune des campagnes de votre compte" in r.text
    assert c.get("/api/campaigns").json() == {"default": None, "campaigns": []}


def test_a_bound_users_proof_of_consent_is_its_campaigns_rows(web) -> None:
    c = web.client()
    _login(c, "olga", OLGA_PASSWORD)
    found = c.get(f"/api/numbers/{NUMBER}/consent").json()
    calls = [row for row in found["proof"] if row["source"] == "call"]
    assert calls and {row["campaign"] for row in calls} == {OTHER}
    assert [b["campaign"] for b in found["campaigns"]] == [OTHER]
    # The opposition holds for every campaign: shown, without the campaign it came from.
    optout = [row for row in found["proof"] if row["source"] == "optouts"]
    assert len(optout) == 1 and optout[0]["campaign"] is None
    # ... nor how it came in (a phone-key would tell that another party called): only when
    assert optout[0]["via"] is None and optout[0]["at"]
    looked = c.get(f"/api/optouts/{NUMBER}").json()
    assert looked["opted_out"] is True and looked["campaign"] is None
    assert looked["via"] is None and looked["at"] == optout[0]["at"]
    page = c.get(f"/c/{OTHER}/rights?number={NUMBER}").text
    assert 'data-opted-out="true"' in page and f">{CAMPAIGN}<" not in page
    assert "None" not in page.split('id="lookup-result"')[1].split("</p>")[0]
    # An operator bound to none sees both campaigns' rows.
    otto = web.client()
    _login(otto, "otto", "operator-pass-1")
    every = otto.get(f"/api/numbers/{NUMBER}/consent").json()
    assert {row["campaign"] for row in every["proof"] if row["source"] == "call"} == \
        {CAMPAIGN, OTHER}
    assert otto.get(f"/api/optouts/{NUMBER}").json()["campaign"] == CAMPAIGN
    assert otto.get(f"/api/optouts/{NUMBER}").json()["via"] == "post"
    assert [r["via"] for r in every["proof"] if r["source"] == "optouts"] == ["post"]


def test_an_admin_cannot_be_bound_and_a_binding_refused_changes_nothing(web) -> None:
    store = web.store
    with pytest.raises(ValueError, match="cannot be bound to some"):
        store.add_user("adam", "admin", "x", NOW, campaigns=[OTHER])
    assert store.user_by_name("adam") is None
    with pytest.raises(ValueError, match="cannot be bound to some"):
        store.set_user("olga", role="admin")
    assert store.user_by_name("olga")["role"] == "operator"
    with pytest.raises(ValueError, match="cannot be bound to some"):
        store.set_user_campaigns("ada", [OTHER], NOW)
    assert {u["name"]: u["campaigns"] for u in web.client().get(
        "/api/users", headers={"Authorization": "Bearer " + _admin_token(web)}).json()[
        "users"]} == {"ada": None, "olga": [OTHER], "otto": None, "vera": None}


def _admin_token(web) -> str:  # type: ignore[no-untyped-def]
    store_token = "ivr_ada-token"
    web.store.add_api_token("ada", token_hash(store_token), NOW)
    return store_token


def test_a_bound_user_never_does_what_spans_every_campaign() -> None:
    """Whatever its role says (a row edited by hand): the check is the console's too."""
    bound = User("x", "admin", "session", frozenset({OTHER}))
    assert not bound.can("gdpr") and not bound.can("users") and bound.can("control")
    assert bound.sees(OTHER) and not bound.sees(CAMPAIGN)
    every = User("y", "admin", "session")
    assert every.can("gdpr") and every.sees(CAMPAIGN)


@backend_sqlite_only  # the commands' words; the store's SQL runs on both above
def test_ivr_users_binds_lists_and_unbinds(tmp_path: Path, backend: Backend,
                                           backend_cfg_file: Path) -> None:
    cfg = backend_cfg_file
    backend.open()
    code, out, err = invoke(cfg, "users", "add", "olga", "--role", "operator", "--campaign",
                            OTHER, "--campaign", "legislatives", stdin=PASSWORD + "\n")
    assert (code, err) == (0, "")
    assert out.strip() == (f"user olga added (operator, campaigns {OTHER}, legislatives) "
                           f"(not in this store yet: {OTHER}, legislatives)")
    code, out, _ = invoke(cfg, "users", "list")
    assert code == 0 and out.strip().endswith(f"\t{OTHER}, legislatives")
    code, out, _ = invoke(cfg, "users", "campaigns", "olga")
    assert (code, out.strip()) == (0, f"user olga: {OTHER}, legislatives")
    code, out, err = invoke(cfg, "users", "role", "olga", "admin")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "cannot be bound" in err
    code, out, err = invoke(cfg, "users", "campaigns", "olga", OTHER, "--all")
    assert code == 1 and err.strip() == "error: CAMPAIGNS: give campaigns or --all, not both"
    code, out, _ = invoke(cfg, "users", "campaigns", "olga", "--all")
    assert code == 0 and out.startswith("user olga now sees every campaign")
    code, out, _ = invoke(cfg, "users", "list")
    assert out.strip().endswith("\tevery campaign")
    code, out, err = invoke(cfg, "users", "add", "adam", "--role", "admin", "--campaign",
                            OTHER, stdin=PASSWORD + "\n")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "cannot be bound" in err
    code, out, _ = invoke(cfg, "users", "list")
    assert "adam" not in out  # refused before a password was asked: nothing written


def test_a_bound_user_is_not_told_the_consoles_own_campaign(web) -> None:
    """Found in review: another campaign's preflight and prompts named the console's own
    campaign (its config's), which a user bound elsewhere may not know of."""
    c = web.client()
    _login(c, "olga", OLGA_PASSWORD)
    named = re.compile(rf"\b{CAMPAIGN}\b")
    answers = [c.get(f"/api/campaigns/{OTHER}/preflight"), c.get(f"/c/{OTHER}/run"),
               c.get(f"/api/campaigns/{OTHER}/prompts"), c.get(f"/c/{OTHER}/prompts")]
    assert [r.status_code for r in answers] == [200, 200, 409, 409]
    for r in answers:
        assert not named.search(html.unescape(r.text)), r.url
    assert "détient les messages d'une autre campagne" in html.unescape(answers[3].text)
    # A user who sees it is still told which campaign's prompts the console holds.
    otto = web.client()
    _login(otto, "otto", "operator-pass-1")
    assert f"holds campaign {CAMPAIGN}'s prompts" in \
        otto.get(f"/api/campaigns/{OTHER}/prompts").json()["detail"]


def test_an_upload_to_another_campaign_is_refused_before_its_body_is_read(
        web, monkeypatch: pytest.MonkeyPatch) -> None:
    """As an upload from a role without the right: 404 by the path, whatever the body's size
    (here over a cap made small: an upload to a campaign of hers gets the 413)."""
    from ivr.web import records
    monkeypatch.setattr(records, "MAX_UPLOAD_BYTES", 64)
    c = web.client()
    token = _login(c, "olga", OLGA_PASSWORD)
    body = {"file": ("list.csv", b"number\n" + b"+33199000030\n" * 20_000, "text/csv")}
    for campaign, status in ((CAMPAIGN, 404), (OTHER, 413)):
        r = c.post(f"/api/campaigns/{campaign}/contacts", files=body,
                   data={"source": "porte-a-porte", "basis": "consent"},
                   headers={"X-CSRF-Token": token})
        assert r.status_code == status, (campaign, r.text)
    r = c.post(f"/c/{CAMPAIGN}/contacts/upload", files=body, data={"csrf_token": token})
    assert r.status_code == 404
    assert not web.store.contacts_by_number(["+33199000030"])


def test_an_uploads_rejects_are_its_campaigns_alone(web) -> None:
    """Left open at the last stop: the kept rejects were found by their id alone, so another
    campaign's pages handed them out to whoever had the link (a bound user given it)."""
    otto = web.client()
    token = login(otto, "otto")
    r = otto.post(f"/c/{CAMPAIGN}/contacts/upload", data={
        "csrf_token": token, "source": "porte-a-porte", "basis": "consent",
        "acquired_on": "2026-11-01"},
        files={"file": ("list.csv", b"number\n06 12 34\n+33199000031\n", "text/csv")})
    assert r.status_code == 200, r.text
    link = html.unescape(r.text).split('id="rejects-download" href="')[1].split('"')[0]
    rows = otto.get(link)
    assert rows.status_code == 200 and "06 12 34" in rows.text
    olga = web.client()
    _login(olga, "olga", OLGA_PASSWORD)
    elsewhere = link.replace(f"/c/{CAMPAIGN}/", f"/c/{OTHER}/")
    assert elsewhere != link
    for c in (olga, otto):  # the id under a campaign it was not uploaded to: not found
        r = c.get(elsewhere)
        assert r.status_code == 404 and "06 12 34" not in r.text
    assert olga.get(link).status_code == 404  # and hers is not the campaign it was for


def test_a_bound_user_is_not_shown_lists_of_no_campaign(web) -> None:
    """Left open at the last stop: a list imported before lists had campaigns is named in every
    campaign's preflight, so a user bound to one party's campaign read another's list names."""
    add_contact(web.store, "+33199000040", at=NOW - timedelta(days=3),
                source="fichier-ancien-du-parti", campaigns=())
    otto = web.client()
    login(otto, "otto")
    codes = [v["code"] for v in otto.get(f"/api/campaigns/{OTHER}/preflight").json()[
        "violations"]]
    assert "unbound_list" in codes  # an unbound user still sees it, to bind it
    assert "fichier-ancien-du-parti" in html.unescape(otto.get(f"/c/{OTHER}/run").text)
    olga = web.client()
    _login(olga, "olga", OLGA_PASSWORD)
    answer = olga.get(f"/api/campaigns/{OTHER}/preflight")
    assert answer.status_code == 200
    assert [v["code"] for v in answer.json()["violations"]] == \
        [c for c in codes if c != "unbound_list"]
    page = olga.get(f"/c/{OTHER}/run")
    assert page.status_code == 200
    assert "fichier-ancien-du-parti" not in html.unescape(page.text + answer.text)


def test_a_number_two_parties_share_shows_each_its_own_lists_name(web, tmp_path: Path) -> None:
    """Left open at the last stop: a contact's name was the first list's, so a party's
    contacts page and API showed the name another party's list gave (schema 25: the binding's)."""
    from ivr.records.contacts import import_csv
    for campaign, name in ((CAMPAIGN, "Jeanne Martin (liste A)"), (OTHER, "J. M. (liste B)")):
        path = tmp_path / f"{campaign}.csv"
        path.write_text(f"number,name\n{NUMBER},{name}\n", encoding="utf-8")
        import_csv(web.store, path, campaign=campaign, source="names", basis="consent",
                   acquired_on="2026-01-10", default_region="FR", now=NOW)
    c = web.client()
    _login(c, "olga", OLGA_PASSWORD)
    for path in (f"/c/{OTHER}/contacts", f"/api/campaigns/{OTHER}/contacts"):
        r = c.get(path)
        assert r.status_code == 200
        text = html.unescape(r.text)
        assert "J. M. (liste B)" in text and "Jeanne" not in text, path
    otto = web.client()
    login(otto, "otto")
    text = html.unescape(otto.get(f"/c/{CAMPAIGN}/contacts").text)
    assert "Jeanne Martin (liste A)" in text and "liste B" not in text
