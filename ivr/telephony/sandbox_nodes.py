"""Several sandbox Asterisk instances from the one cached root: `ivr pbx up --nodes N`.

Instance 1 is the sandbox of sandbox.py, unchanged (/etc/asterisk, AMI on pbx.port, SIP on
5060, .sandbox/asterisk.pid). Instance i > 1 runs from the same root with its own
`asterisk.conf` (-C /etc/asterisk-n<i>/asterisk.conf): its own etc, db, spool, run and log
directories, AMI on pbx.port + i - 1, SIP on 5060 + 2 (i - 1), pid file
.sandbox/asterisk-n<i>.pid. Modules and sounds are shared: prompts are installed
content-addressed (sounds/ivr/<campaign>/<name>-<sha12>.wav), so one sounds folder serves every
instance. Every instance has the same AMI users and secret, and the same [globals] (one FastAGI
URL): the controller's pool names them in pbx.nodes (README).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ivr.config import Config
from ivr.errors import SandboxError
from ivr.telephony.sandbox import Sandbox, Status

MAX_NODES = 9
PID_NAME = re.compile(r"asterisk-n(\d+)\.pid")


class SandboxNode(Sandbox):
    """Instance `index` (> 1) of the sandbox."""

    def __init__(self, cfg: Config, index: int) -> None:
        super().__init__(cfg)
        self.index = index
        self.pidfile = self.state / f"asterisk-n{index}.pid"
        self.logfile = self.state / f"asterisk-n{index}.log"
        self.ami_port = cfg.pbx.port + index - 1
        self.sip_port = 5060 + 2 * (index - 1)
        tag = f"asterisk-n{index}"
        self.dirs = (f"var/run/{tag}", f"var/log/{tag}", f"var/spool/{tag}", f"var/lib/{tag}db")
        self.conf_path = f"/etc/{tag}/asterisk.conf"

    @property
    def etc(self) -> Path:
        return self.root / f"etc/asterisk-n{self.index}"

    def asterisk(self, *args: str) -> list[str]:
        return super().asterisk("-C", self.conf_path, *args)

    def asterisk_conf(self, etc: str = "", db: str = "", spool: str = "", run: str = "",
                      log: str = "") -> str:
        tag = f"asterisk-n{self.index}"
        return super().asterisk_conf(f"/etc/{tag}", f"/var/lib/{tag}db", f"/var/spool/{tag}",
                                     f"/var/run/{tag}", f"/var/log/{tag}")

    def install(self, sim_timing: dict[str, float] | None = None) -> None:
        self.etc.mkdir(parents=True, exist_ok=True)
        super().install(sim_timing)


def instance(cfg: Config, index: int) -> Sandbox:
    return Sandbox(cfg) if index == 1 else SandboxNode(cfg, index)


def started(cfg: Config) -> list[int]:
    """The instances with a pid file (1 always listed first: it is the sandbox itself)."""
    state = cfg.path(cfg.pbx.sandbox_dir)
    found = sorted(int(m.group(1)) for p in state.glob("asterisk-n*.pid")
                   if (m := PID_NAME.fullmatch(p.name)) and int(m.group(1)) > 1)
    return [1, *found]


def up(cfg: Config, nodes: int, timeout: float, sim_timing: dict[str, float] | None,
       log: Callable[[str], None] = print) -> list[tuple[int, Status]]:
    """Exactly `nodes` instances up (idempotent): 1..nodes started or refreshed, any higher
    one left by an earlier `up --nodes` stopped."""
    if not 1 <= nodes <= MAX_NODES:
        raise SandboxError(f"--nodes {nodes}: use 1 to {MAX_NODES} instances")
    for extra in [i for i in started(cfg) if i > nodes]:
        instance(cfg, extra).down()
    return [(i, instance(cfg, i).up(timeout=timeout, sim_timing=sim_timing, log=log))
            for i in range(1, nodes + 1)]


def down(cfg: Config) -> list[tuple[int, bool]]:
    """Stop every instance `up` started (by their pid files), the extra ones first."""
    return [(i, instance(cfg, i).down()) for i in reversed(started(cfg))]


def status(cfg: Config) -> list[tuple[int, Sandbox, Status]]:
    return [(i, sb, sb.status()) for i in started(cfg) for sb in [instance(cfg, i)]]
