"""Integration tests run against the real sandbox Asterisk (never skipped: a missing PBX fails).

The session fixture builds short prompts, brings the sandbox up (idempotent) and installs them,
so the simulated callees' timings follow these prompts.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import uvloop

from ivr import app
from ivr.prompts.install import install_prompts_to_pbx
from ivr import config
from ivr.config import Config
from ivr.prompts.build import build_prompts
from ivr.telephony.contract import EVENT_FAILSAFE, EVENT_JOURNALED
from ivr.telephony.sandbox import Sandbox
from ivr.store.sqlite import Store, utc

REPO = Path(__file__).resolve().parents[2]
AGI_PORT = 4590  # not the default: a demo may run beside the tests

LEGAL = {"sender": "Marie Dupont", "postal_address": "1 rue Haute, Paris",
         "email": "stop@dupont.example.fr"}
# Short: every call of the suite plays them in real time (intro 8.5 s and legal mentions 5.6 s
# before; about 4.8 and 4.0 s now). The intro stays over 4 s: a callee "during the introduction"
# presses ~2.2 s into it (SIM_EARLY_S); the message keeps its 3 s, cut mid-way by a PBX
# restart (test_stop_and_choice). Each still passes the legal checks (sender, address,
# e-mail; the opt-out key and a way to say it in one sentence; a question with both keys).
TEXTS = {
    "intro": "Ici Marie Dupont. Stop, tapez 9. Mon message ? Oui, 1. Non, 2.",
    "message": "Merci. Je veux une ville plus verte et plus juste pour tous.",
    "legal": "Marie Dupont, 1 rue Haute, Paris, stop@dupont.example.fr.",
    "goodbye": "Au revoir.",
    "invalid": "Choix non valide.",
    "no_input": "Je n'ai rien entendu.",
    "optout_confirm": "Vous ne serez plus appelé.",
    "slot_question": "Le matin, tapez 1. L'après-midi, tapez 2.",
    "callback_notice": "Pour ne plus être appelé, appuyez sur 1.",
}


def itest_config_dict(base: Path, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "campaign": {"name": "itest", "caller_id": "+33199000000", "caller_name": "Itest"},
        "legal": LEGAL,
        "prompts": {"build_dir": str(base / "build"), "engine": "espeak",
                    "items": {k: {"text": v} for k, v in TEXTS.items()}},
        "flow": {"input_timeout_s": 3, "max_repeats": 1, "ask_slot": False},
        "store": {"path": str(base / "itest.db")},
        "pbx": {"sandbox_dir": str(REPO / ".sandbox")},
        "agi": {"port": AGI_PORT},
        "dialer": {"max_concurrent": 50, "calls_per_second": 50, "ring_timeout_s": 5,
                   "dial_string": "Local/{number}@ivr-sim", "amd": True},
        "retry": {"max_attempts": 2, "delay_s": {"busy": 1, "no_answer": 1, "congestion": 1}},
        "schedule": {"demo_any_hour": True},
    }
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        data[section][key] = value
    return data


@pytest.fixture(scope="module", autouse=True)
def production_event_loop() -> Iterator[None]:
    """`ivr run` runs on uvloop (app.run): the controller is tested on the same loop. Per
    module, so that the unit tests keep the default loop."""
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    yield
    asyncio.set_event_loop_policy(previous)


@pytest.fixture(scope="session")
def pbx_cfg(tmp_path_factory: pytest.TempPathFactory) -> Config:
    base = tmp_path_factory.mktemp("itest")
    cfg = config.from_dict(itest_config_dict(base), base)
    build_prompts(cfg)
    Sandbox(cfg).up(sim_timing=app.sandbox_sim_timing(cfg))
    install_prompts_to_pbx(cfg)
    return cfg


def now() -> datetime:
    return datetime.now(timezone.utc)


def add_contacts(store: Store, numbers: Iterable[str], source: str = "itest",
                 campaign: str = "itest") -> None:
    """Contacts as an import under `campaign` (the itest config's) leaves them."""
    at = now()
    ts, numbers = utc(at), list(numbers)
    for n in numbers:
        store.db.execute("INSERT OR IGNORE INTO contacts (number, source, basis, created_at, "
                         "updated_at) VALUES (?, ?, 'consent', ?, ?)", (n, source, ts, ts))
    store.bind_contacts(numbers, campaign=campaign, source=source, basis="consent",
                        acquired_on=None, now=at)


def fiction(suffix: str, block: str = "00") -> str:
    """+33 1 99 00 BB SS: the ARCEP fiction range; the last two digits pick the behaviour."""
    return f"+3319900{block}{suffix}"


async def place_calls(cfg: Config, store: Store, numbers: list[str],
                      timeout: float = 150) -> list[dict[str, Any]]:
    """Originate one attempt per number through the real controller; wait for every outcome."""
    add_contacts(store, numbers)
    ctl = await app.start(cfg, store)
    try:
        for n in numbers:
            contact = store.one("SELECT * FROM contacts WHERE number = ?", (n,))
            await ctl.dialer.dial(contact)
        deadline = time.monotonic() + timeout
        while ctl.dialer.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        await ctl.close()
    return store.q("SELECT * FROM calls ORDER BY id")


async def failsafe_times(watch: Any, channel: str, wanted: set[str], limit_s: float,
                         ctl: app.Controller | None = None) -> dict[str, float]:
    """When (monotonic) a second AMI session `watch` saw the channel's failsafe UserEvent
    ("failsafe"), its journal UserEvent ("journaled") and its Hangup ("hangup"), and when
    `ctl`'s dialer had no call in flight ("settled"); until every name in `wanted` is seen,
    or `limit_s`."""
    seen: dict[str, float] = {}
    t0 = time.monotonic()
    while not wanted <= seen.keys() and time.monotonic() - t0 < limit_s:
        if ctl is not None and not ctl.dialer.inflight and "settled" not in seen:
            seen["settled"] = time.monotonic()
        ev = await watch.next_event(0.1)
        if ev is None or ev.get("Uniqueid") != channel:
            continue
        if ev.get("Event") == "UserEvent" and ev.get("UserEvent") == EVENT_FAILSAFE:
            seen["failsafe"] = time.monotonic()
        elif ev.get("Event") == "UserEvent" and ev.get("UserEvent") == EVENT_JOURNALED:
            seen["journaled"] = time.monotonic()
        elif ev.get("Event") == "Hangup":
            seen["hangup"] = time.monotonic()
    return seen


async def originate_and_wait(cfg: Config, fields: dict[str, Any], timeout: float = 30) -> None:
    """Originate over a separate AMI session (never the controller's own event queue) and
    return once the originated channel has hung up."""
    from ivr.telephony.ami import Ami
    channel_id = fields["ChannelId"]
    watch = Ami(cfg.pbx.host, cfg.pbx.port, cfg.pbx.user, app.ami_secret(cfg))
    await watch.connect()
    try:
        await watch.action({"Action": "Originate", "Priority": "1", "Async": "true",
                            "Timeout": "5000", **fields})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ev = await watch.next_event(0.1)
            if ev is not None and ev.get("Event") == "Hangup" and \
                    ev.get("Uniqueid") == channel_id:
                break
        await asyncio.sleep(0.3)  # let the AGI side finish its last write
    finally:
        watch.close()


# -- the web console in a real browser (tests/integration/test_web_browser.py) -------------------
CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/setup.sh); never Playwright's download


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright; one per module. Missing: skipped on a
    developer's machine, a failure in CI (CI set)."""
    import os
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: run scripts/setup.sh (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing: run scripts/setup.sh to run the browser tests")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        # --no-sandbox: chromium refuses to run as root otherwise (CI and this machine are root)
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox"])
        yield chromium
        chromium.close()


def free_port() -> int:
    import ports  # tests/ports.py: below the ephemeral range
    return ports.free_port()


def live_console(cfg_file: Path, log: Path, timeout: float = 30) -> tuple[str, Any]:
    """`ivr web` as a real process on a free loopback port: (its URL, the process). The caller
    stops it (terminate)."""
    import os
    import subprocess
    import urllib.request
    port = free_port()
    env = {**os.environ, "IVR_WEB_SECRET": "itest-" + os.urandom(16).hex()}
    proc = subprocess.Popen(["ivr", "--config", str(cfg_file), "web", "--port", str(port)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ivr web ended ({proc.returncode}): {log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/login", timeout=2) as r:
                if r.status == 200:
                    return url, proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise AssertionError(f"ivr web did not answer within {timeout} s: {log.read_text()}")
