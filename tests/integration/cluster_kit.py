"""Shared parts of the cluster tests (issue 14 item 6): three sandbox nodes, `ivr run`
controllers as real processes on one PostgreSQL store, and a watcher that sees every call from
Asterisk's side over its own AMI session per node (the sandbox's monitor user)."""
from __future__ import annotations

import asyncio
import csv
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml

from ivr import app
from ivr.config import Config
from ivr.telephony.ami import Ami
from ivr.telephony.sandbox import Sandbox

from .conftest import free_port, itest_config_dict

NODES = ("pbx", "pbx2", "pbx3")
LOCAL = re.compile(r"Local/(\+\d+)@ivr-sim-[0-9a-f]+;1$")  # the IVR half of an attempt


def ivr(cfg_file: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ivr", "--config", str(cfg_file), *args], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ))


def controller_config(base: Path, pbx_cfg: Config, url: str, name: str,
                      campaign: str = "itest", **dialer: Any) -> Path:
    """One controller's config: the PostgreSQL store, the three nodes, its own FastAGI port."""
    data = itest_config_dict(base)
    data["prompts"]["build_dir"] = str(pbx_cfg.path(pbx_cfg.prompts.build_dir))  # built once
    data["store"] = {"url": url, "optout_key_file": str(base / "optout.key")}  # shared
    data["campaign"]["name"] = campaign
    data["pbx"]["nodes"] = [{"name": n, "port": pbx_cfg.pbx.port + i}
                            for i, n in enumerate(NODES)]
    data["agi"]["port"] = free_port()
    data["dialer"] |= {"max_concurrent": 30, "calls_per_second": 30, "amd": False, **dialer}
    path = base / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def import_list(cfg_file: Path, numbers: list[str], source: str = "itest") -> None:
    lst = cfg_file.with_name(f"{source}-{cfg_file.stem}.csv")
    with lst.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["number", "name"])
        w.writerows([n, f"P{i}"] for i, n in enumerate(numbers))
    out = ivr(cfg_file, "contacts", "import", str(lst), "--source", source,
              "--basis", "consent")
    assert out.returncode == 0, out.stderr


def start_controller(cfg_file: Path) -> subprocess.Popen[bytes]:
    log = cfg_file.with_suffix(".log").open("ab")
    return subprocess.Popen(["ivr", "--config", str(cfg_file), "run"], stdout=log,
                            stderr=subprocess.STDOUT, env=dict(os.environ))


def wait_all(procs: list[subprocess.Popen[bytes]], timeout: float = 240) -> list[int | None]:
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:  # none left behind to dial into the next test
                if q.poll() is None:
                    q.kill()
                    q.wait()
            raise AssertionError(f"a controller ran past {timeout} s: {p.args}")
    return [p.returncode for p in procs]


def wait_until(check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    """check()'s first true value within `timeout` s (at least one try), else None: the
    caller asserts on the real values."""
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value or None
        time.sleep(every)


def rows(url: str, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """The test's own read of the store (PGPASSFILE from the pg_url fixture)."""
    from psycopg.rows import dict_row
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return list(conn.execute(sql, args).fetchall())


@dataclass
class Seen:
    """One attempt as Asterisk showed it: which node, which number, from when to when."""
    node: str
    number: str
    start: float
    end: float | None = None
    keys: str = ""


@dataclass
class Watch:
    """A second AMI session on each node: Newchannel/Hangup/DTMFEnd of every attempt's IVR
    half (Local/<number>@ivr-sim;1), timed on receipt."""
    cfg: Config
    calls: dict[str, Seen] = field(default_factory=dict)  # by Uniqueid
    amis: list[Ami] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def __aenter__(self) -> "Watch":
        user = Sandbox(self.cfg).monitor_user
        for node in self.cfg.pbx.node_list():
            ami = Ami(node.host, node.port, user, app.ami_secret(self.cfg, node.name),
                      events=("Newchannel", "Hangup", "DTMFEnd"))
            await ami.connect()
            self.amis.append(ami)
            self.tasks.append(asyncio.create_task(self._pump(node.name, ami)))
        return self

    async def _pump(self, node: str, ami: Ami) -> None:
        while True:
            try:
                ev = await ami.next_event(1.0)
            except Exception:  # a killed node: its link is down until it is back
                await asyncio.sleep(0.5)
                continue
            if ev is not None:
                self._note(node, ev)

    def _note(self, node: str, ev: Any) -> None:
        uid, kind = str(ev.get("Uniqueid")), ev.get("Event")
        if kind == "Newchannel":
            m = LOCAL.match(str(ev.get("Channel", "")))
            if m:
                self.calls[uid] = Seen(node, m.group(1), time.monotonic())
        elif uid in self.calls and kind == "Hangup":
            self.calls[uid].end = time.monotonic()
        elif uid in self.calls and kind == "DTMFEnd" and ev.get("Direction") == "Received":
            self.calls[uid].keys += str(ev.get("Digit"))

    def cut(self, node: str, at: float) -> list[Seen]:
        """A node killed at `at` (monotonic), called once its last events have been read: its
        open calls end at `at` (Asterisk will never say so). A call whose events were read
        after `at` was created, or ended, before it: they were still in the socket."""
        mine = [c for c in self.calls.values() if c.node == node]
        open_ = [c for c in mine if c.end is None]
        for c in mine:
            c.start = min(c.start, at)
            c.end = at if c.end is None else min(c.end, at)
        return open_

    async def __aexit__(self, *_: object) -> None:
        await asyncio.sleep(1.0)  # the last Hangups reach the watchers
        for task in self.tasks:
            task.cancel()
        for ami in self.amis:
            ami.close()

    def per_number(self) -> dict[str, list[Seen]]:
        out: dict[str, list[Seen]] = {}
        for c in sorted(self.calls.values(), key=lambda c: c.start):
            out.setdefault(c.number, []).append(c)
        return out

    def assert_no_overlap(self) -> None:
        """Never two attempts of one number in flight at once, on any node."""
        for number, seen in self.per_number().items():
            assert all(c.end is not None for c in seen), (number, seen)
            for a, b in zip(seen, seen[1:]):
                assert b.start >= a.end, (number, a, b)  # type: ignore[operator]
