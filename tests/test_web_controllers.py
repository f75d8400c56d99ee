"""One console controls every controller of a campaign, on both backends: the console's control
API (start, pause, pacing, resume, stop, hard stop) is read by two controllers' run-control
readers (ivr/campaign/run_control.py), each on its own store connection as two `ivr run`
processes would be; their snapshots come back to the console's overview. And the console over
a PostgreSQL store: overview, control and report.json (the bytes of `ivr report`)."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient

import web_fixture
from conftest import CALLER_ID, add_contact, attempt, make_config
from web_fixture import CAMPAIGN, NOW, PASSWORDS, ROLES, login
from ivr.campaign.clock import Clock
from ivr.campaign.run_control import PAUSED, RunControl
from ivr.campaign.state import RunState
from ivr.cli import cli
from ivr.store import CallResult
from ivr.web import create_app
from ivr.web_users import hash_password

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
PG_KEY = b"test-key"


@dataclass
class Console:
    backend: str
    seed: Any  # the test's own connection: rows written as an import and a run would
    open: Callable[[], Any]  # a new connection: the console's threads, each controller
    cfg: Any
    app: Any
    store_section: dict[str, str]


@pytest.fixture(params=["sqlite", "postgresql"])
def console(request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Console]:
    monkeypatch.setenv("IVR_WEB_SECRET", "test-secret-" + "x" * 20)
    if request.param == "sqlite":
        section, seed, opener = web_fixture.sqlite_console_store(tmp_path / "t.db")
    else:
        from ivr.store.pg import PgStore
        from store_sql import PgTestStore
        url = request.getfixturevalue("pg_store_url")
        section = {"url": url}
        seed = PgTestStore.open(url, optout_key=PG_KEY)

        def opener() -> Any:
            return PgStore.open(url, optout_key=PG_KEY)
    cfg = make_config(tmp_path, campaign={"name": CAMPAIGN, "caller_id": CALLER_ID},
                      store=section)
    for name in ("otto", "vera"):
        if name not in web_fixture._HASHES:
            web_fixture._HASHES[name] = hash_password(PASSWORDS[name])
        seed.add_user(name, ROLES[name], web_fixture._HASHES[name], NOW)
    app = create_app(cfg, opener)
    try:
        yield Console(request.param, seed, opener, cfg, app, section)
    finally:
        close = getattr(seed, "close", None)
        if callable(close):
            close()


class Controller:
    """What one `ivr run` process reads of the console: its own store connection, its own
    RunControl over a RunState, the real clock (its snapshots must be fresh for the console)."""

    def __init__(self, console: Console, name: str) -> None:
        self.store = console.open()
        self.stop, self.hard_stop = asyncio.Event(), asyncio.Event()
        self.state = RunState(CAMPAIGN, self.store, Clock(),
                              max_concurrent=console.cfg.dialer.max_concurrent)
        self.rc = RunControl(console.cfg, self.store, Clock(), self.stop, self.hard_stop,
                             self.state, controller=name)

    async def tick(self) -> None:
        """One tick of `watch`: read the run control, publish the snapshot."""
        await self.rc.read()
        self.state.snapshot()  # what the run loop does as it changes: the latest is kept
        await self.rc.publish(force=True)

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if callable(close):
            close()

    def seen(self) -> tuple[str, int, float, bool, bool]:
        rc = self.rc
        return (rc.desired, rc.max_concurrent, rc.calls_per_second, self.stop.is_set(),
                self.hard_stop.is_set())


def test_one_console_drives_two_controllers(console: Console) -> None:
    c = TestClient(console.app, follow_redirects=False)
    h = {"X-CSRF-Token": login(c, "otto")}
    base = f"/api/campaigns/{CAMPAIGN}"
    top = console.cfg.dialer  # the config's pacing: the bounds

    def act(path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = c.post(f"{base}/{path}", json=body, headers=h)
        assert r.status_code == 200, r.text
        return r.json()

    async def scenario() -> list[tuple[str, list[Any]]]:
        ctls = [Controller(console, "ctl-a"), Controller(console, "ctl-b")]
        seen: list[tuple[str, list[Any]]] = []

        async def step(label: str) -> None:
            for ctl in ctls:
                await ctl.tick()
            seen.append((label, [ctl.seen() for ctl in ctls]))
        try:
            act("control", {"action": "start"})
            await step("start")
            act("control", {"action": "pause"})
            await step("pause")
            assert all(ctl.rc.paused and ctl.state.snapshot().console == PAUSED
                       for ctl in ctls)
            console.app.state.overviews.drop(CAMPAIGN)  # kept up to a second: fresh now
            o = c.get(f"{base}/overview").json()
            assert sorted(x["controller"] for x in o["controllers"]) == ["ctl-a", "ctl-b"]
            assert o["desired"] == "paused" and o["why_waiting"] == PAUSED
            act("pacing", {"max_concurrent": 5, "calls_per_second": 2.5})
            await step("pacing")
            act("control", {"action": "resume"})
            await step("resume")
            assert not any(ctl.rc.paused for ctl in ctls)
            assert all(ctl.rc.interval == 0.4 for ctl in ctls)
            act("control", {"action": "stop"})
            await step("stop")
            act("control", {"action": "hard_stop"})
            await step("hard_stop")
        finally:
            for ctl in ctls:
                ctl.close()
        return seen

    seen = asyncio.run(scenario())
    n, r = top.max_concurrent, top.calls_per_second
    assert seen == [
        ("start", [("running", n, r, False, False)] * 2),
        ("pause", [("paused", n, r, False, False)] * 2),
        ("pacing", [("paused", 5, 2.5, False, False)] * 2),
        ("resume", [("running", 5, 2.5, False, False)] * 2),
        ("stop", [("stopped", 5, 2.5, True, False)] * 2),
        ("hard_stop", [("hard_stop", 5, 2.5, True, True)] * 2),
    ]
    actions = [a["detail"] for a in console.seed.audit_log(20)
               if a["action"] == "run_control" and a["actor"] == "otto"]
    assert len(actions) == 6  # every click audited with its user


def _calls(store: Any) -> None:
    """Four contacts: two answered (a consent, a refusal), one busy, one still pending."""
    for i, outcome in enumerate(("message_played", "declined", "busy", None)):
        contact = add_contact(store, f"+3319900002{i}", at=NOW, campaigns=(CAMPAIGN,))
        if outcome is None:
            continue
        call = attempt(store, contact, CAMPAIGN, CALLER_ID, NOW + timedelta(seconds=i))
        if outcome == "busy":
            store.finish_unanswered(call["id"], "busy", "17", NOW + timedelta(seconds=30), None)
            continue
        store.mark_answered(call["id"], NOW)
        choice = "consent" if outcome == "message_played" else "refusal"
        store.finish_answered(call["id"], CallResult(outcome, "end", "1", {}, choice=choice),
                              NOW + timedelta(seconds=40))


def test_the_console_over_each_backend_overview_control_and_report(
        console: Console, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _calls(console.seed)
    c = TestClient(console.app, follow_redirects=False)
    h = {"X-CSRF-Token": login(c, "otto")}
    base = f"/api/campaigns/{CAMPAIGN}"
    o = c.get(f"{base}/overview").json()
    assert {k: v for k, v in o["counts"].items() if v} == {
        "message_played": 1, "declined": 1, "busy": 1}
    assert o["contacts"] == {"pending": 1, "done": 2, "exhausted": 1, "opted_out": 0}
    assert o["percent_complete"] == 75.0  # the busy one has no retry planned: exhausted
    assert "+33199000022" in [x["number"] for x in o["recent_calls"]]
    assert c.post(f"{base}/control", json={"action": "pause"}, headers=h).json()[
        "desired"] == "paused"
    assert console.seed.run_control(CAMPAIGN)["desired"] == "paused"  # through the store
    page = c.get(f"/c/{CAMPAIGN}/overview").text
    assert '<td data-outcome="message_played">1</td>' in page
    # report.json: the bytes `ivr report --format json` prints over the same store
    # the store's own key (web_fixture's b"k", PG_KEY): another is refused at open
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" if console.backend == "sqlite" else PG_KEY.decode())
    cfg_path = tmp_path / "cli.yaml"
    cfg_path.write_text(yaml.safe_dump({"campaign": {"name": CAMPAIGN, "caller_id": CALLER_ID},
                                        "store": console.store_section}))
    out = CliRunner().invoke(cli, ["--config", str(cfg_path), "report", "--format", "json"])
    assert out.exit_code == 0, out.output
    body = c.get(f"{base}/report.json")
    assert body.status_code == 200 and body.content == out.stdout_bytes
    assert json.loads(body.content)["outcomes"] == {"message_played": 1, "declined": 1,
                                                    "busy": 1}
