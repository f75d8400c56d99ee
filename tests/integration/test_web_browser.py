"""The web console in a real browser (issue 15 item 7): Debian's chromium, headless, driven by
Playwright, against `ivr web` as a real process and, for the run, `ivr run --standby` on the
sandbox Asterisk. Each test saves a screenshot of its page into docs/screenshots/ (README shows
overview.png). One console and one browser for the module; each test logs in afresh."""
from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from ivr.campaign.run_control import PUBLISH_S
from ivr.config import Config
from ivr.demo import DEMO_BEHAVIOURS
from ivr.store.sqlite import utc

from .conftest import REPO, free_port, itest_config_dict, live_console

SHOTS = REPO / "docs" / "screenshots"
CAMPAIGN = "itest"
PASSWORDS = {"ada": "admin-pass-itest-1", "otto": "operator-pass-itest", "vera": "viewer-pass-itest"}
ROLES = {"ada": "admin", "otto": "operator", "vera": "viewer"}
# Simulated callees that press 2 (declined: final, never retried), one per block: +33199 00 BB 20.
# Four at 2 calls at once: two are in flight when Pause is clicked, two are left for Resume.
RUN_BLOCKS = ["71", "72", "73", "74"]
OPPOSED_BLOCK = "77"  # imported last, opposed in the console once the run is under way
UPLOAD_GOOD = ["01 99 00 78 20", "+33 1 99 00 79 20"]


@dataclass
class Console:
    url: str
    cfg_file: Path
    db: Path
    base: Path

    def ivr(self, *args: str, stdin: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["ivr", "--config", str(self.cfg_file), *args], input=stdin,
                              capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ))

    def q(self, sql: str, args: tuple = ()) -> list[tuple]:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
            return db.execute(sql, args).fetchall()

    def calls(self) -> int:
        return self.q("SELECT COUNT(*) FROM calls WHERE campaign = ?", (CAMPAIGN,))[0][0]

    def in_flight(self) -> int:
        return self.q("SELECT COUNT(*) FROM calls WHERE ended_at IS NULL")[0][0]

    def desired(self) -> str | None:
        rows = self.q("SELECT desired FROM run_control WHERE campaign = ?", (CAMPAIGN,))
        return rows[0][0] if rows else None


@pytest.fixture(scope="module")
def console(pbx_cfg: Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    base = tmp_path_factory.mktemp("web")
    data = itest_config_dict(base)
    data["prompts"]["build_dir"] = pbx_cfg.prompts.build_dir  # built and installed already
    data["dialer"].update(max_concurrent=2, calls_per_second=2)  # a run long enough to pause
    cfg_file = base / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True))
    c = Console("", cfg_file, base / "itest.db", base)
    for name, role in ROLES.items():  # through the real CLI, the password on stdin
        out = c.ivr("users", "add", name, "--role", role, stdin=PASSWORDS[name] + "\n")
        assert out.returncode == 0, out.stderr
    c.url, proc = live_console(cfg_file, base / "web.log")
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield c
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def page(browser: Any, console: Console) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def login(page: Any, console: Console, name: str, password: str | None = None) -> Any:
    page.goto(f"{console.url}/login")
    page.fill("#username", name)
    page.fill("#password", password or PASSWORDS[name])
    with page.expect_navigation():
        page.click("#login-submit")
    return page


def csrf(page: Any) -> str:
    return str(page.input_value("#csrf"))


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60,
              every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_login_works_and_a_wrong_password_is_refused(page: Any, console: Console) -> None:
    page.goto(f"{console.url}/c/{CAMPAIGN}/overview")
    assert page.url.startswith(f"{console.url}/login"), "no anonymous access"
    shot(page, "login")
    login(page, console, "ada", "not-the-password")
    assert page.locator("#login-error").is_visible()
    assert page.url.startswith(f"{console.url}/login")
    assert page.locator("#counts").count() == 0
    shot(page, "login-refused")
    login(page, console, "ada")
    assert page.url == f"{console.url}/c/{CAMPAIGN}/overview"
    assert page.locator("#counts").is_visible()
    assert "ada (administrateur)" in page.inner_text("header")  # the role in French


def test_a_viewer_cannot_start_a_run(page: Any, console: Console) -> None:
    login(page, console, "vera")
    page.goto(f"{console.url}/c/{CAMPAIGN}/run")
    assert page.locator("#preflight").is_visible()
    for button in ("#btn-start", "#btn-pause", "#btn-resume", "#btn-stop", "#btn-hard-stop"):
        assert page.locator(button).count() == 0, f"{button} shown to a viewer"
    shot(page, "run-viewer")
    before = console.desired()
    r = page.request.post(f"{console.url}/api/campaigns/{CAMPAIGN}/control",
                          data={"action": "start"}, headers={"X-CSRF-Token": csrf(page)})
    assert r.status == 403, r.text()
    assert console.desired() == before


def test_an_upload_with_bad_rows_shows_the_rejects(page: Any, console: Console) -> None:
    body = "number,name\n" + f"{UPLOAD_GOOD[0]},Good\n" + "not a number,Bad\n" + \
        f"{UPLOAD_GOOD[1]},Good too\n" + "01 23,Too short\n"
    login(page, console, "otto")
    page.goto(f"{console.url}/c/{CAMPAIGN}/contacts")
    page.set_input_files("#upload-file", files=[{"name": "list.csv", "mimeType": "text/csv",
                                                 "buffer": body.encode()}])
    page.fill("#upload-source", "browser-upload")
    page.select_option("#upload-basis", "consent")
    with page.expect_navigation():
        page.click("#upload-submit")
    rejects = page.locator("#rejects")
    assert rejects.get_attribute("data-count") == "2"
    lines = page.locator("#rejects tbody tr td:first-child").all_inner_texts()
    assert lines == ["3", "5"], lines
    assert page.locator("#rejects-download").is_visible()
    assert "browser-upload" in page.inner_text("#lists")
    shot(page, "contacts-rejects")
    bound = console.q("SELECT number FROM campaign_contacts cc JOIN contacts c "
                      "ON c.id = cc.contact_id WHERE cc.source = 'browser-upload'")
    assert sorted(n for (n,) in bound) == ["+33199007820", "+33199007920"]


def test_a_post_without_its_csrf_token_is_refused(page: Any, console: Console) -> None:
    login(page, console, "otto")
    page.goto(f"{console.url}/c/{CAMPAIGN}/run")
    before = console.desired()
    page.evaluate("document.querySelectorAll('input[name=csrf_token]')"
                  ".forEach(function (e) { e.remove(); })")
    with page.expect_navigation() as nav:
        page.click("#btn-start")
    assert nav.value.status == 403
    assert "csrf_token" in page.content()
    shot(page, "csrf-refused")
    r = page.request.post(f"{console.url}/api/campaigns/{CAMPAIGN}/control",
                          data={"action": "start"})  # the API without X-CSRF-Token
    assert r.status == 403, r.text()
    assert console.desired() == before


def _publish_snapshot(console: Console, **fields: Any) -> None:
    """A controller's snapshot as `ivr run` publishes it (the store's upsert), stamped now."""
    snap = {"campaign": CAMPAIGN, "in_flight": 0, "max_concurrent": 2, "rate_per_min": 0.0,
            "status": "waiting", "stopped": False, "waiting": "", "holding": "", "paused": "",
            "console": "", "next_retry": None, "nodes": [], **fields}
    with sqlite3.connect(console.db) as db:
        db.execute("INSERT INTO run_snapshots (campaign, controller, at, snapshot) "
                   "VALUES (?, 'ctl-browser', ?, ?) ON CONFLICT (campaign, controller) DO "
                   "UPDATE SET at = excluded.at, snapshot = excluded.snapshot",
                   (CAMPAIGN, utc(datetime.now(timezone.utc)), json.dumps(snap)))


@contextmanager
def _publishing(console: Console) -> Iterator[None]:
    """A controller running: its snapshot stamped again every PUBLISH_S, as `ivr run` does
    (stamped once, it is stale after service.STALE_S, which a loaded machine's log-in and two
    pages may take)."""
    stop = threading.Event()

    def publish() -> None:
        while not stop.wait(PUBLISH_S):
            _publish_snapshot(console)
    _publish_snapshot(console)
    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    try:
        yield
    finally:
        stop.set()
        publisher.join()


def test_open_pages_say_when_the_controller_is_gone(page: Any, console: Console) -> None:
    """The overview and run pages drawn while a controller ran say « Aucun contrôleur
    actif » in the same tab once it stops publishing (before: only a page drawn after)."""
    run = page.context.new_page()
    try:
        with _publishing(console):
            login(page, console, "vera")
            page.goto(f"{console.url}/c/{CAMPAIGN}/overview")
            run.goto(f"{console.url}/c/{CAMPAIGN}/run")
            # A page may be drawn from an overview computed before the snapshot (served up
            # to OVERVIEW_STALE_MAX_S while it refreshes: CI once drew it so); its live
            # updates then hide the line within a second or two.
            for tab in (page, run):
                assert tab.locator("#no-controller").count() == 1
                wait_for("#no-controller hidden",
                         lambda t=tab: not t.locator("#no-controller").is_visible(), timeout=15)
        _publish_snapshot(console, stopped=True)  # its last one (a stale one: the same)
        for tab in (page, run):
            wait_for("#no-controller shown", tab.locator("#no-controller").is_visible,
                     timeout=15)
            assert tab.inner_text("#no-controller").strip().startswith("Aucun contrôleur actif")
    finally:
        run.close()
        with sqlite3.connect(console.db) as db:
            db.execute("DELETE FROM run_snapshots WHERE controller = 'ctl-browser'")


def test_the_live_overview_rewrites_only_what_changed(page: Any, console: Console) -> None:
    """Events every second over a campaign nobody runs: the chart, the reason, the figures
    and the tables are not touched, so a screen reader keeps its place (before: the chart and
    the reason were drawn again on every event)."""
    login(page, console, "vera")
    page.goto(f"{console.url}/c/{CAMPAIGN}/overview")
    wait_for("the live overview", lambda: page.evaluate("document.body.dataset.updated"),
             timeout=15)
    page.evaluate("""() => {
        window.touched = [];
        const seen = new MutationObserver((records) => {
            records.forEach((r) => { window.touched.push(r.target.id || r.target.nodeName); });
        });
        ['chart', 'why-waiting', 'counts', 'recent-calls', 'desired', 'in-flight']
            .forEach((id) => seen.observe(document.getElementById(id),
                {childList: true, characterData: true, subtree: true}));
        window.seenEvents = 0;  // the page's own stream is in its script: a second one counts
        const events = new EventSource('/api/campaigns/' + document.body.dataset.campaign +
                                       '/events?lang=fr');
        events.onmessage = () => { window.seenEvents += 1; };
    }""")
    wait_for("three more events", lambda: page.evaluate("window.seenEvents") >= 3, timeout=20)
    assert page.evaluate("window.touched") == []
    assert page.locator("a.skip").get_attribute("href") == "#main"


def test_a_page_warns_five_minutes_before_the_session_ends(page: Any,
                                                           console: Console) -> None:
    """The page's own clock run forward: nothing said until 5 minutes before the 12 hours
    after login, then the alert."""
    login(page, console, "vera")
    page.clock.install()
    page.goto(f"{console.url}/c/{CAMPAIGN}/reports")
    left = int(page.evaluate("document.body.dataset.sessionLeft"))
    assert 12 * 3600 - 600 < left <= 12 * 3600
    page.clock.run_for((left - 310) * 1000)
    assert not page.locator("#session-ending").is_visible()
    page.clock.run_for(20_000)
    assert page.locator("#session-ending").is_visible()
    assert page.inner_text("#session-ending").startswith("Votre session se termine")


def _logout_elsewhere(page: Any, console: Console) -> None:
    """A logout in another tab of the same browser: every session of the user ends."""
    other = page.context.new_page()
    other.goto(f"{console.url}/c/{CAMPAIGN}/reports")
    with other.expect_navigation():
        other.click("#logout")
    other.close()


def test_a_live_page_goes_to_the_login_once_the_session_ended(page: Any,
                                                             console: Console) -> None:
    """The overview left open after a logout in another tab: the login, then the overview
    again (before: it stopped updating and said nothing). The reports page's downloads: the
    login too, then the reports page (before: a failed download)."""
    login(page, console, "vera")
    page.goto(f"{console.url}/c/{CAMPAIGN}/reports")
    with page.expect_download() as got:
        page.click("#report-json")
    assert got.value.failure() is None and page.url.endswith("/reports")
    page.goto(f"{console.url}/c/{CAMPAIGN}/overview")
    wait_for("the live overview", lambda: page.evaluate("document.body.dataset.updated"),
             timeout=15)
    _logout_elsewhere(page, console)
    # the events stream checks the session before every event, then its reconnection is refused
    page.wait_for_url(f"{console.url}/login?next=/c/{CAMPAIGN}/overview", timeout=60_000)
    page.fill("#username", "vera")
    page.fill("#password", PASSWORDS["vera"])
    with page.expect_navigation():
        page.click("#login-submit")
    assert page.url == f"{console.url}/c/{CAMPAIGN}/overview"
    page.goto(f"{console.url}/c/{CAMPAIGN}/reports")
    _logout_elsewhere(page, console)
    with page.expect_navigation():
        page.click("#report-csv")
    assert page.url == f"{console.url}/login?next=/c/{CAMPAIGN}/reports"


def _run_list(console: Console) -> list[str]:
    path = console.base / "run.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["number"])
        for block in [*RUN_BLOCKS, OPPOSED_BLOCK]:
            w.writerow([f"01 99 00 {block} 20"])
    out = console.ivr("contacts", "import", str(path), "--source", "run-list", "--basis",
                      "consent")
    assert out.returncode == 0, out.stderr
    return [f"+3319900{b}20" for b in RUN_BLOCKS]


def _overview(page: Any, console: Console) -> dict[str, Any]:
    r = page.request.get(f"{console.url}/api/campaigns/{CAMPAIGN}/overview")
    assert r.ok, r.text()
    return r.json()  # type: ignore[no-any-return]


def _click(page: Any, console: Console, button: str) -> None:
    page.goto(f"{console.url}/c/{CAMPAIGN}/run")
    with page.expect_navigation():
        page.click(button)
    assert page.locator("#flash.ok").is_visible(), page.inner_text("main")


def _oppose(page: Any, console: Console, number: str) -> None:
    page.goto(f"{console.url}/c/{CAMPAIGN}/rights")
    page.fill("#optout-number", number)
    page.select_option("#optout-via", "phone")
    with page.expect_navigation():
        page.click("#optout-submit")
    assert page.locator("#lookup-result").get_attribute("data-opted-out") == "true"
    shot(page, "rights-optout")


def _paused_means_no_new_calls(page: Any, console: Console, total: int) -> int:
    _click(page, console, "#btn-pause")
    assert console.desired() == "paused"
    wait_for("the calls in flight finish after the pause", lambda: console.in_flight() == 0)
    placed = console.calls()
    assert placed < total, "the run ended before the pause: nothing left to hold"
    time.sleep(4)  # eight reads of the run control, eight dialling chances at 2 calls/s
    assert console.calls() == placed, "a call was placed while paused"
    page.goto(f"{console.url}/c/{CAMPAIGN}/run")
    assert page.inner_text("#desired") == "en pause"  # the French page's word
    assert page.locator("#desired").get_attribute("data-state") == "paused"
    shot(page, "run-paused")
    return placed


def test_a_run_started_paused_and_resumed_from_the_console(page: Any, console: Console) -> None:
    """Start (a standby controller), opposition mid-run, pause, resume, the counts at the end
    equal `ivr report --format json`."""
    called = _run_list(console)
    opposed = f"+3319900{OPPOSED_BLOCK}20"
    ctl = subprocess.Popen(["ivr", "--config", str(console.cfg_file), "run", "--standby"],
                           stdout=(console.base / "run.log").open("w"),
                           stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        login(page, console, "otto")
        wait_for("the standby controller publishes", lambda: _overview(page, console)
                 ["controllers"], timeout=30)
        assert console.calls() == 0, "a standby controller dialled before Start"
        pending = console.q("SELECT COUNT(*) FROM campaign_contacts WHERE campaign = ? AND "
                            "status = 'pending'", (CAMPAIGN,))[0][0]
        _click(page, console, "#btn-start")
        wait_for("the first call", lambda: console.calls() > 0)
        _oppose(page, console, opposed)
        placed = _paused_means_no_new_calls(page, console, pending)
        _click(page, console, "#btn-resume")
        wait_for("a call after resume", lambda: console.calls() > placed, timeout=20)
        wait_for("the run ends", lambda: ctl.poll() is not None, timeout=120)
        assert ctl.returncode == 0, (console.base / "run.log").read_text()
    finally:
        if ctl.poll() is None:
            ctl.terminate()
            ctl.wait(30)
    assert console.q("SELECT COUNT(*) FROM calls WHERE number = ?", (opposed,)) == [(0,)]
    dialled = {n for (n,) in console.q("SELECT number FROM calls")}
    assert set(called) <= dialled
    _counts_equal_the_report(page, console)


def _counts_equal_the_report(page: Any, console: Console) -> None:
    out = console.ivr("report", "--format", "json")
    assert out.returncode == 0, out.stderr
    outcomes = json.loads(out.stdout)["outcomes"]
    assert outcomes.get("declined", 0) >= len(RUN_BLOCKS), outcomes
    page.goto(f"{console.url}/c/{CAMPAIGN}/overview")

    def shown() -> dict[str, int]:
        cells = page.locator("#counts [data-outcome]")
        return {cells.nth(i).get_attribute("data-outcome"): int(cells.nth(i).inner_text())
                for i in range(cells.count())}
    # The SSE updates the page in place. The run's final snapshot (none in flight) is published
    # after its last outcome is committed, so an update may bring the final counts with the
    # snapshot before it (CI, 2026-12-06: "2" in flight): the next one brings both.
    wait_for("the live counts reach the report's, none in flight",
             lambda: {k: v for k, v in shown().items() if v} == outcomes
             and page.inner_text("#in-flight") == "0", timeout=15)
    shot(page, "overview")


@pytest.mark.parametrize("section", ["overview", "run", "contacts", "prompts", "rights",
                                     "reports"])
def test_every_page_in_french_and_english(page: Any, console: Console, section: str) -> None:
    login(page, console, "ada")
    page.goto(f"{console.url}/c/{CAMPAIGN}/{section}")
    assert page.locator(f"#nav-{section}.current").is_visible()
    assert page.inner_text("#nav-run") == "Pilotage"
    if section != "overview":  # the overview's screenshot is the run's, with its counts
        shot(page, section)
    with page.expect_navigation():
        page.click("#lang-switch")
    assert page.url == f"{console.url}/c/{CAMPAIGN}/{section}"
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.inner_text("#nav-run") == "Run control"


def test_demo_web_leaves_the_console_running(browser: Any, pbx_cfg: Config,
                                             tmp_path: Path) -> None:
    """`ivr demo --web`: after the demo the console answers on web.port; its one-time admin
    password is printed once and found in no file the demo wrote."""
    data = itest_config_dict(tmp_path)
    data["prompts"]["build_dir"] = pbx_cfg.prompts.build_dir
    data["web"] = {"port": free_port()}
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True))
    demo = subprocess.Popen(["ivr", "--config", str(cfg_file), "demo", "--web"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={k: v for k, v in os.environ.items() if k != "IVR_WEB_SECRET"})
    seen: list[str] = []
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            seen.append(line)
            if line.startswith("console: "):
                break
        words = seen[-1].split()
        assert words[0] == "console:", "".join(seen)
        url, password = words[1].rstrip("/"), words[words.index("password") + 1]
        assert url == f"http://127.0.0.1:{data['web']['port']}"
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(f"{url}/login")
        page.fill("#username", "admin")
        page.fill("#password", password)
        with page.expect_navigation():
            page.click("#login-submit")
        assert page.url == f"{url}/c/{CAMPAIGN}/overview"
        cells = page.locator("#counts [data-outcome]").all_inner_texts()
        assert sum(int(n) for n in cells) >= len(DEMO_BEHAVIOURS)  # each number called
        context.close()
    finally:
        demo.terminate()
        rest, _ = demo.communicate(timeout=30)
    sandbox = Path(pbx_cfg.pbx.sandbox_dir)
    written = [p for p in [*sandbox.glob("demo.db*"), *sandbox.glob("*.log"), cfg_file]
               if p.is_file()]
    assert any(p.name == "demo.db" for p in written)
    for path in written:
        assert password.encode() not in path.read_bytes(), f"the password is in {path}"
    assert password not in rest and "".join(seen).count(password) == 1


def test_report_csv_in_the_browser_is_the_reports_bytes(page: Any, console: Console) -> None:
    """chromium asks for zstd (and gzip): the frames of the kept blocks decode to the very
    bytes of `ivr report --format csv`, before and after a commit (one block compressed again,
    the others sent as kept). gzip, which a browser cannot be made to prefer, is checked over
    HTTP in tests/test_web_report_gzip.py."""
    with sqlite3.connect(console.db) as db:  # calls in two blocks of 8,192 ids, odd values
        for call_id, outcome in ((900_001, "=cmd"), (900_002, 'say "no", twice'),
                                 (909_000, "busy")):
            db.execute("INSERT INTO calls (id, number, attempt, campaign, started_at, outcome) "
                       "VALUES (?, '+33199000099', 1, ?, '2026-12-01T10:00:00.000Z', ?)",
                       (call_id, CAMPAIGN, outcome))
    login(page, console, "vera")
    fetch = """async (url) => { const r = await fetch(url);
        const b = new Uint8Array(await r.arrayBuffer());
        return {enc: r.headers.get('content-encoding'), body: Array.from(b)}; }"""

    def cli_csv() -> bytes:
        out = subprocess.run(["ivr", "--config", str(console.cfg_file), "report", "--format",
                              "csv"], capture_output=True, timeout=120, env=dict(os.environ))
        assert out.returncode == 0, out.stderr
        return out.stdout
    for change in (None, "UPDATE calls SET hangup_cause = '=16' WHERE id = 909000"):
        if change:
            with sqlite3.connect(console.db) as db:
                db.execute(change)
        got = page.evaluate(fetch, f"{console.url}/api/campaigns/{CAMPAIGN}/report.csv")
        expected = cli_csv()
        assert got["enc"] == "zstd" and bytes(got["body"]) == expected
        assert b"'=cmd" in expected and (change is None or b"'=16" in expected)
