"""`ivr demo`: build prompts offline, start the sandbox, import fiction numbers, run, report."""
from __future__ import annotations

import csv
import dataclasses
import os
import secrets
import socket
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from ivr.config import Config
from ivr.errors import IvrError

# One fiction number (+33 1 99 00 xx xx, reserved by ARCEP) per simulated-callee behaviour.
DEMO_BEHAVIOURS = {
    "10": "presses 1 during the introduction",
    "11": "presses 1 after the introduction",
    "20": "presses 2",
    "30": "presses nothing",
    "40": "presses 7, then 1",
    "50": "hangs up during the introduction",
    "51": "presses 1, hangs up during the message",
    "52": "presses 2, hangs up during the legal mentions",
    "60": "presses 9 (the key that objects to further calls)",
    "70": "busy",
    "71": "never answers",
    "72": "congestion",
    "80": "answering machine",
    "99": "anything else: presses 1",
}


def demo_numbers() -> list[str]:
    return [f"01 99 00 00 {suffix}" for suffix in DEMO_BEHAVIOURS]


def write_demo_csv(path: Path, blocks: int = 1) -> Path:
    """Each behaviour once per block (+33 1 99 00 BB SS, BB from 00): more calls to spread."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["number", "name", "behaviour"])
        for block in range(blocks):
            for suffix, behaviour in DEMO_BEHAVIOURS.items():
                w.writerow([f"01 99 00 {block:02d} {suffix}", f"Fiction {suffix}", behaviour])
    return path


def import_demo_list(cfg: Config, store: Any, say: Callable[[str], None],
                     blocks: int = 1) -> None:
    """The fiction list into `store` (made now: dated today), its counts said, then the
    campaign's checks said and an error raised (both demos)."""
    from ivr.compliance.campaign_check import check_campaign, raise_on_errors
    from ivr.records.contacts import import_csv
    now = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory() as tmp:
        result = import_csv(store, write_demo_csv(Path(tmp) / "demo.csv", blocks=blocks),
                            campaign=cfg.campaign.name, source="demo-fiction",
                            basis="consent", acquired_on=now.date().isoformat(),
                            default_region=cfg.default_region, now=now,
                            default_tz=cfg.schedule.timezone)
    say(f"    {result.summary()}")
    violations = check_campaign(cfg, store)
    for v in violations:
        say(f"    {v.severity}: {v.message}")
    raise_on_errors(violations)


def run_demo(cfg: Config, console: Console, web: bool = False, nodes: int = 1,
             controllers: int = 1, config_path: Path | None = None) -> None:
    """The demo; with `web`, the console is left running over the demo's store afterwards
    (serve_console) until Ctrl-C. More than one node or controller: the PostgreSQL cluster
    demo (demo_cluster), from the operator's config file at `config_path`."""
    if web:  # a busy port fails now, before the five steps, in one line
        _check_port(cfg.web.host, cfg.web.port)
    if nodes > 1 or controllers > 1:
        from ivr.demo_cluster import run_cluster_demo
        if config_path is None:
            raise IvrError("ivr demo --nodes/--controllers: the config file is needed")
        cfg = run_cluster_demo(cfg, config_path, console, nodes, controllers)
    else:
        cfg = _demo(cfg, console)
    if web:
        serve_console(cfg, console)


def _demo(cfg: Config, console: Console) -> Config:
    from ivr.records import report
    from ivr.app import open_store, run, run_campaign, sandbox_sim_timing
    from ivr.prompts.install import install_prompts_to_pbx
    from ivr.campaign.progress import Progress
    from ivr.prompts.build import build_prompts
    from ivr.telephony.sandbox import Sandbox

    say = lambda m: console.print(m, highlight=False)  # noqa: E731
    say("1/5 building the prompts (offline TTS)")
    build_prompts(cfg, log=lambda m: say(f"    {m}"))
    say("2/5 starting the sandbox PBX")
    status = Sandbox(cfg).up(sim_timing=sandbox_sim_timing(cfg), log=say)
    install_prompts_to_pbx(cfg)
    say(f"    Asterisk pid {status.pid}: {status.detail}")

    # The demo keeps its own store, fresh each time, so it always has something to call.
    db = cfg.path(cfg.pbx.sandbox_dir) / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    cfg = dataclasses.replace(cfg, store=dataclasses.replace(cfg.store, path=str(db)))
    store = open_store(cfg)
    say(f"3/5 importing {len(DEMO_BEHAVIOURS)} fiction numbers into {db}")
    import_demo_list(cfg, store, say)
    say("4/5 running the campaign")
    with Progress(console) as progress:
        run(run_campaign(cfg, store, on_snapshot=progress.show))
    final = progress.last  # the run's final snapshot
    assert final is not None and final.stopped
    say(f"    run {final.stopped_by}: {final.originated} call(s); {final.why}")
    say("5/5 report")
    console.print(report.render(report.summary(store, cfg.campaign.name)))
    say(f"store: {db}  (ivr report --format json reads config.yaml's store.path instead)")
    return cfg


# -- `ivr demo --web` ------------------------------------------------------------------------------
DEMO_ADMIN = "admin"


def _check_port(host: str, port: int) -> None:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise IvrError(f"web.port: {host}:{port} is taken ({exc.strerror}): stop what "
                           "listens there or set another web.port") from None


def demo_admin(cfg: Config) -> str:
    """A one-time admin of the demo's (fresh) store: its password is generated here, hashed
    through the users code, and only returned (the caller prints it once; never logged)."""
    from ivr.app import open_store
    from ivr.web_users import hash_password
    password = secrets.token_urlsafe(18)  # 24 characters, above the users code's minimum
    open_store(cfg).add_user(DEMO_ADMIN, "admin", hash_password(password),
                             datetime.now(timezone.utc))
    return password


def serve_console(cfg: Config, console: Console) -> None:
    """`ivr web` over the demo's store, on web.host:web.port, until Ctrl-C."""
    import uvicorn

    from ivr.app import open_store
    from ivr.web import create_app
    from ivr.web.app import SECRET_ENV
    password = demo_admin(cfg)
    # The demo's sessions end with it: a random signing key for this process only.
    os.environ.setdefault(SECRET_ENV, secrets.token_hex(32))
    app = create_app(cfg, lambda: open_store(cfg))
    url = f"http://{cfg.web.host}:{cfg.web.port}/"
    line = (f"console: {url}  user {DEMO_ADMIN}, one-time password {password}  "
            "(valid until the next demo; Ctrl-C stops)")

    class Announced(uvicorn.Server):
        """Says the URL once it answers: after the console's warm-up and the socket's bind
        (printed before, the URL could be refused for a while)."""
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                console.print(line, highlight=False)
    Announced(uvicorn.Config(app, host=cfg.web.host, port=cfg.web.port,
                             log_level="warning")).run()
