"""The console's JSON API over a real store, SQLite and PostgreSQL (conftest.backend): the
overview's counts are the report's (and the downloads the same bytes as `ivr report`),
snapshots give calls in flight per node, pacing stays within the config's bounds, uploads
show their rejects, the opposition list, consent proof, export and erasure, and the OpenAPI
document."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from conftest import CALLER_ID, Backend, add_contact, attempt, backend_sqlite_only
from web_fixture import CAMPAIGN, NOW, login, make_web
from ivr import config as config_mod
from ivr.cli import cli
from ivr.store import CallResult, utc
from ivr.web import create_app
from ivr.web_users import hash_password

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
# (last digits, outcome) of the calls made in `report_store`; None: still in flight
CALLS = [("10", "message_played"), ("11", "message_played"), ("20", "declined"),
         ("70", "busy"), ("71", "no_answer"), ("60", "opted_out"), ("30", None)]


@pytest.fixture
def web(backend: Backend, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    return make_web(tmp_path, monkeypatch, backend)


def _calls(store, campaign: str) -> None:  # type: ignore[no-untyped-def]
    for i, (tail, outcome) in enumerate(CALLS):
        contact = add_contact(store, f"+331990000{tail}", at=NOW, campaigns=(campaign,))
        call = attempt(store, contact, campaign, CALLER_ID, NOW + timedelta(seconds=i))
        if outcome in ("busy", "no_answer"):
            store.finish_unanswered(call["id"], outcome, "17", NOW + timedelta(seconds=30),
                                    None)
        elif outcome is not None:
            store.mark_answered(call["id"], NOW)
            choice = {"message_played": "consent", "declined": "refusal",
                      "opted_out": "optout"}[outcome]
            store.finish_answered(call["id"], CallResult(outcome, "end", "1", {}, choice=choice),
                                  NOW + timedelta(seconds=40))


def test_counts_and_downloads_equal_ivr_report(backend: Backend, backend_cfg_file: Path,
                                               monkeypatch) -> None:
    """The acceptance rule: the overview's counts equal `ivr report --format json`'s
    outcomes, and report.json / report.csv are its very bytes."""
    monkeypatch.setenv("IVR_WEB_SECRET", "s" * 32)
    cfg_file = backend_cfg_file
    cfg = config_mod.load(cfg_file)
    store = backend.open()
    _calls(store, cfg.campaign.name)
    store.add_user("vera", "viewer", hash_password("viewer-password-1"), NOW)
    c = TestClient(create_app(cfg, backend.program), follow_redirects=False)
    login(c, "vera", "viewer-password-1")
    runner = CliRunner()
    out_json = runner.invoke(cli, ["--config", str(cfg_file), "report", "--format", "json"])
    out_csv = runner.invoke(cli, ["--config", str(cfg_file), "report", "--format", "csv"])
    assert out_json.exit_code == 0 and out_csv.exit_code == 0
    cli_report = json.loads(out_json.stdout)
    name = cfg.campaign.name
    counts = c.get(f"/api/campaigns/{name}/overview").json()["counts"]
    assert {k: v for k, v in counts.items() if v} == cli_report["outcomes"]
    assert cli_report["outcomes"] == {"message_played": 2, "declined": 1, "opted_out": 1,
                                      "busy": 1, "no_answer": 1}
    assert c.get(f"/api/campaigns/{name}/report.json").content == out_json.stdout_bytes
    assert c.get(f"/api/campaigns/{name}/report.csv").content == out_csv.stdout_bytes
    page = c.get(f"/c/{name}/overview").text
    assert '<td data-outcome="message_played">2</td>' in page
    assert '<td data-outcome="busy">1</td>' in page


def _snapshot(in_flight: int, node_in_flight: int, *, stopped: bool = False) -> dict:
    return {"campaign": CAMPAIGN, "in_flight": in_flight, "max_concurrent": 20,
            "rate_per_min": 12.0, "status": "running", "stopped": stopped, "waiting": "",
            "nodes": [{"name": "pbx", "up": True, "in_flight": node_in_flight, "cap": 30,
                       "holding": ""}]}


def test_in_flight_per_node_comes_from_fresh_snapshots_only(web) -> None:
    from ivr.web.auth import now
    t = now()
    web.store.publish_snapshot(CAMPAIGN, "ctl-a", _snapshot(3, 3), t)
    web.store.publish_snapshot(CAMPAIGN, "ctl-b", _snapshot(2, 2), t)
    web.store.publish_snapshot(CAMPAIGN, "ctl-old", _snapshot(9, 9), t - timedelta(minutes=5))
    web.store.publish_snapshot(CAMPAIGN, "ctl-done", _snapshot(4, 4, stopped=True), t)
    # PostgreSQL stamps a snapshot with its own clock, whatever the controller's: aged here
    web.store.db.execute("UPDATE run_snapshots SET at = ? WHERE controller = ?",
                         (utc(t - timedelta(minutes=5)), "ctl-old"))
    c = web.client()
    login(c, "vera")
    o = c.get(f"/api/campaigns/{CAMPAIGN}/overview").json()
    # the caps are the configured ones (dialer.max_concurrent 20, the node's 30), not sums
    assert o["in_flight"] == 5 and o["cap"] == 20 and o["calls_per_minute"] == 24.0
    assert o["nodes"] == [{"name": "pbx", "in_flight": 5, "cap": 30, "up": True, "holding": ""}]
    assert sorted(x["controller"] for x in o["controllers"]) == ["ctl-a", "ctl-b"]
    assert o["why_waiting"] == ""  # calls are being made


def test_why_nobody_is_called_and_the_percent_complete(web) -> None:
    c = web.client()
    login(c, "vera")
    o = c.get(f"/api/campaigns/{CAMPAIGN}/overview").json()
    assert o["why_waiting"].startswith("no contacts for campaign 'demo'")
    add_contact(web.store, "+33199000010", at=NOW, campaigns=(CAMPAIGN,), status="done")
    add_contact(web.store, "+33199000011", at=NOW, campaigns=(CAMPAIGN,), status="done")
    add_contact(web.store, "+33199000012", at=NOW, campaigns=(CAMPAIGN,), status="exhausted")
    add_contact(web.store, "+33199000013", at=NOW, campaigns=(CAMPAIGN,))
    # A new app: the first one keeps its "why nobody" for PLAN_TTL_S.
    c2 = TestClient(create_app(web.cfg, web.open), follow_redirects=False)
    login(c2, "vera")
    o = c2.get(f"/api/campaigns/{CAMPAIGN}/overview").json()
    assert o["percent_complete"] == 75.0
    assert o["contacts"] == {"pending": 1, "done": 2, "exhausted": 1, "opted_out": 0}


def test_pacing_is_kept_within_the_configs_bounds(web) -> None:
    c = web.client()
    token = login(c, "otto")
    h = {"X-CSRF-Token": token}
    url = f"/api/campaigns/{CAMPAIGN}/pacing"
    r = c.post(url, json={"max_concurrent": 5, "calls_per_second": 1.5}, headers=h)
    assert r.status_code == 200 and r.json()["max_concurrent"] == 5
    r = c.post(url, json={"max_concurrent": 21}, headers=h)  # dialer.max_concurrent: 20
    assert r.status_code == 400 and r.json()["detail"].startswith("max_concurrent is 21")
    r = c.post(url, json={"calls_per_second": 6}, headers=h)  # dialer.calls_per_second: 5
    assert r.status_code == 400 and r.json()["detail"].startswith("calls_per_second is 6")
    r = c.post(url, json={"calls_per_second": 0}, headers=h)
    assert r.status_code == 400
    for tiny in (1e-300, 5e-324, 0.01):  # below one call a minute (5e-324: no call ever)
        r = c.post(url, json={"calls_per_second": tiny}, headers=h)
        assert r.status_code == 400, (tiny, r.json())
        assert r.json()["detail"].startswith(f"calls_per_second is {tiny!r}: use at least 1/60")
    row = web.store.run_control(CAMPAIGN)
    assert (row["max_concurrent"], row["calls_per_second"]) == (5, 1.5)


@backend_sqlite_only
def test_pacing_refuses_true_and_false_and_a_body_that_is_not_json(web) -> None:
    """Found by a probe: JSON's true was read as 1 (one call at a time, stored); a body that
    was not a JSON object answered "0: JSON decode error", naming no field and no fix."""
    c = web.client()
    h = {"X-CSRF-Token": login(c, "otto")}
    url = f"/api/campaigns/{CAMPAIGN}/pacing"
    before = web.store.run_control(CAMPAIGN)
    for body in ({"max_concurrent": True}, {"calls_per_second": False}):
        r = c.post(url, json=body, headers=h)
        assert r.status_code == 422 and "not true or false" in r.json()["detail"], r.text
    for kwargs in ({"content": b"max_concurrent=3",
                    "headers": {**h, "content-type": "application/json"}},
                   {"data": {"max_concurrent": "3"}, "headers": h}, {"headers": h}):
        r = c.post(url, **kwargs)  # type: ignore[arg-type]
        assert r.status_code == 422 and r.json()["detail"].startswith(
            "body: send a JSON object with Content-Type: application/json"), r.text
    assert web.store.run_control(CAMPAIGN) == before


def test_control_actions_write_the_desired_state(web) -> None:
    c = web.client()
    h = {"X-CSRF-Token": login(c, "otto")}
    url = f"/api/campaigns/{CAMPAIGN}/control"
    for action, desired in (("start", "running"), ("pause", "paused"), ("resume", "running"),
                            ("stop", "stopped"), ("hard_stop", "hard_stop")):
        assert c.post(url, json={"action": action}, headers=h).json()["desired"] == desired
        assert web.store.run_control(CAMPAIGN)["desired"] == desired
    assert c.post(url, json={"action": "explode"}, headers=h).status_code == 422
    assert c.post("/api/campaigns/nope/control", json={"action": "start"},
                  headers=h).status_code == 404


CSV = ("number,name\n"
       "+33199000010,Ann\n"
       "not-a-number,Bob\n"
       "0199000011,Cy\n"
       "+999,Dee\n")


def test_an_upload_imports_and_lists_its_rejects(web) -> None:
    c = web.client()
    h = {"X-CSRF-Token": login(c, "otto")}
    r = c.post(f"/api/campaigns/{CAMPAIGN}/contacts", headers=h,
               files={"file": ("list.csv", CSV.encode(), "text/csv")},
               data={"source": "members-2026", "basis": "member_file",
                     "acquired_on": "2026-11-01"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["added"] == 2 and body["rejected_total"] == 2
    assert [x["line"] for x in body["rejected"]] == [3, 5]
    lists = c.get(f"/api/campaigns/{CAMPAIGN}/contacts").json()["lists"]
    assert lists == [{"source": "members-2026", "basis": "member_file",
                      "acquired_on": "2026-11-01", "status": "pending", "n": 2}]
    r = c.post(f"/api/campaigns/{CAMPAIGN}/contacts", headers=h,
               files={"file": ("list.csv", CSV.encode(), "text/csv")},
               data={"source": "members-2026"})  # no basis: refused in one line
    assert r.status_code == 400 and "basis" in r.json()["detail"]
    audit = [(a["action"], a["actor"]) for a in web.store.audit_log(10)]
    assert ("import", "otto") in audit


@backend_sqlite_only
@pytest.mark.parametrize(("source", "said"), [("t" * 201, "source: 201 characters, at most 200"),
                                              ("a\nb", "source: it holds a line break")])
def test_an_upload_refuses_a_source_name_that_is_not_a_label(web, source: str,
                                                             said: str) -> None:
    """Found by a probe: a 1 MB name was stored and sent with every page of the campaign."""
    c = web.client()
    h = {"X-CSRF-Token": login(c, "otto")}
    r = c.post(f"/api/campaigns/{CAMPAIGN}/contacts", headers=h,
               files={"file": ("list.csv", CSV.encode(), "text/csv")},
               data={"source": source, "basis": "member_file", "acquired_on": "2026-11-01"})
    assert r.status_code == 400 and r.json()["detail"].startswith(said), r.text
    assert c.get(f"/api/campaigns/{CAMPAIGN}/contacts").json()["lists"] == []


@backend_sqlite_only
@pytest.mark.parametrize("route", ["api", "page"])
def test_after_an_erasure_no_overview_shows_the_number_from_its_cache(web, route: str) -> None:
    """Found in review: the overview kept in the console's cache (refreshed in the background
    once stale, the stale copy served meanwhile) showed the erased number once more, however
    long after the erasure the next visitor came."""
    contact = add_contact(web.store, "+33199000010", at=NOW, campaigns=(CAMPAIGN,))
    call = attempt(web.store, contact, CAMPAIGN, CALLER_ID, NOW)
    web.store.finish_unanswered(call["id"], "busy", "17", NOW + timedelta(seconds=30), None)
    c = web.client()
    token = login(c, "ada")
    numbers = [x["number"] for x in c.get(f"/api/campaigns/{CAMPAIGN}/overview").json()[
        "recent_calls"]]
    assert "+33199000010" in numbers  # kept in the cache now
    if route == "api":
        r = c.post("/api/numbers/+33199000010/erase", json={"confirm": "+33199000010"},
                   headers={"X-CSRF-Token": token})
    else:
        r = c.post(f"/c/{CAMPAIGN}/rights/erase", data={"number": "+33199000010",
                                                         "confirm": "+33199000010",
                                                         "csrf_token": token})
    assert r.status_code in (200, 303)
    shown = c.get(f"/api/campaigns/{CAMPAIGN}/overview").text
    assert "+33199000010" not in shown and "199000010" not in shown


def test_opposition_consent_export_and_erasure(web) -> None:
    c = web.client()
    h = {"X-CSRF-Token": login(c, "ada")}
    r = c.post("/api/optouts", json={"number": "01 99 00 00 10", "via": "email"}, headers=h)
    assert r.json() == {"number": "+33199000010", "added": True}
    look = c.get("/api/optouts/+33199000010").json()
    assert look["opted_out"] and look["via"] == "email"
    assert not c.get("/api/optouts/+33199000011").json()["opted_out"]
    assert c.get("/api/optouts/banana").status_code == 400
    proof = c.get("/api/numbers/+33199000010/consent").json()
    assert [p["kind"] for p in proof["proof"]] == ["optout"]
    r = c.post("/api/optouts/import", headers=h, data={"via": "post"},
               files={"file": ("o.csv", b"number\n+33199000012\nbad\n", "text/csv")})
    assert r.json()["added"] == 1 and [x["line"] for x in r.json()["rejected"]] == [3]
    export = c.get("/api/numbers/+33199000010/export")
    assert export.status_code == 200 and export.json()["number"] == "+33199000010"
    r = c.post("/api/numbers/+33199000010/erase", json={"confirm": "+33199000011"}, headers=h)
    assert r.status_code == 400 and r.json()["detail"].startswith("confirm:")
    r = c.post("/api/numbers/+33199000010/erase", json={"confirm": "0199000010"}, headers=h)
    assert r.status_code == 200 and r.json()["opposition_kept"] is True
    assert web.store.is_opted_out("+33199000010")
    actors = {(a["action"], a["actor"]) for a in web.store.audit_log(50)}
    assert {("optout_console", "ada"), ("consent_viewed", "ada"), ("gdpr_export", "ada"),
            ("gdpr_erase", "ada")} <= actors


@backend_sqlite_only  # the document: no store read
def test_openapi_documents_the_api(web) -> None:
    c = web.client()
    doc = c.get("/api/openapi.json").json()
    for path in ("/api/campaigns", "/api/campaigns/{campaign}/overview",
                 "/api/campaigns/{campaign}/control", "/api/campaigns/{campaign}/pacing",
                 "/api/campaigns/{campaign}/preflight", "/api/campaigns/{campaign}/contacts",
                 "/api/campaigns/{campaign}/report.csv", "/api/campaigns/{campaign}/report.json",
                 "/api/optouts", "/api/optouts/{number}", "/api/numbers/{number}/consent",
                 "/api/numbers/{number}/export", "/api/numbers/{number}/erase",
                 "/api/campaigns/{campaign}/events", "/api/campaigns/{campaign}/prompts"):
        assert path in doc["paths"], path
    assert not any(p.startswith("/c/") for p in doc["paths"])
    assert c.get("/api/docs").status_code == 200


def test_campaigns_lists_every_campaign_of_the_store(web) -> None:
    add_contact(web.store, "+33199000010", at=NOW, campaigns=("autumn",))
    c = web.client()
    login(c, "vera")
    assert c.get("/api/campaigns").json() == {"default": CAMPAIGN,
                                              "campaigns": ["autumn", CAMPAIGN]}
    assert c.get("/api/campaigns/autumn/overview").status_code == 200
    assert c.get("/api/campaigns/nope/overview").status_code == 404


def test_preflight_is_ivr_checks(web) -> None:
    c = web.client()
    login(c, "vera")
    body = c.get(f"/api/campaigns/{CAMPAIGN}/preflight").json()
    codes = {v["code"] for v in body["violations"]}
    assert "legal_mentions" in codes and body["errors"] >= 1  # the test config has no prompts


def test_another_campaigns_preflight_does_not_judge_it_by_this_consoles_prompts(web) -> None:
    """Before: B's preflight in A's console listed A's prompt errors (legal mentions, intro,
    slot) as B's, or, A's prompts being fine, said nothing was wrong with B's."""
    add_contact(web.store, "+33199000010", at=NOW, campaigns=("autumn",))
    c = web.client()
    login(c, "vera")
    body = c.get("/api/campaigns/autumn/preflight").json()
    codes = {v["code"] for v in body["violations"]}
    assert not codes & {"legal_mentions", "callback_line", "consent_first", "ask_slot"}
    (note,) = [v for v in body["violations"] if v["code"] == "other_campaign"]
    assert note["severity"] == "info" and "ivr check" in note["message"]
