"""Issue 14 items 3-4 on the real sandbox: `ivr pbx up --nodes 3`, one controller, a pool of three
Asterisk instances. The share of each node is counted from Asterisk's side (a second AMI
session per node, the sandbox's monitor user, counting OriginateResponse events); one node is
SIGKILLed mid-run and its calls are retried on the others. At the end the extra instances are
stopped (`ivr pbx down`) and the single-node sandbox the rest of the suite expects is restored.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ivr import app, config
from ivr.config import Config
from ivr.store.sqlite import Store, parse_utc
from ivr.telephony import sandbox_nodes
from ivr.telephony.ami import Ami
from ivr.telephony.sandbox import MONITOR_EVENTS, Sandbox

from .conftest import add_contacts, fiction, itest_config_dict

NODES = ("pbx", "pbx2", "pbx3")


def ivr(cfg_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ivr", "--config", str(cfg_file), *args], capture_output=True,
                          text=True, timeout=180)


@pytest.fixture(scope="module")
def pool_cfg(pbx_cfg: Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    """`ivr pbx up --nodes 3`; afterwards `ivr pbx down` and `ivr pbx up`: only instance 1,
    as the other tests expect."""
    base = tmp_path_factory.mktemp("pool")
    data = itest_config_dict(base)
    data["prompts"]["build_dir"] = str(pbx_cfg.path(pbx_cfg.prompts.build_dir))  # built once
    data["pbx"]["nodes"] = [{"name": n, "port": pbx_cfg.pbx.port + i}
                            for i, n in enumerate(NODES)]
    data["dialer"] |= {"max_concurrent": 30, "calls_per_second": 30, "amd": False}
    cfg_file = base / "pool.yaml"
    cfg_file.write_text(yaml.safe_dump(data))
    cfg = config.load(cfg_file)
    up = ivr(cfg_file, "pbx", "up", "--nodes", str(len(NODES)))
    assert up.returncode == 0, up.stderr
    try:
        status = ivr(cfg_file, "pbx", "status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        nodes = json.loads(status.stdout)["nodes"]
        assert [(n["node"], n["ami_port"], n["running"]) for n in nodes] == \
            [(i + 1, pbx_cfg.pbx.port + i, True) for i in range(len(NODES))]
        yield cfg
    finally:
        down = ivr(cfg_file, "pbx", "down")  # every instance, by its pid file
        assert down.returncode == 0 and "3 instances" in down.stdout, down.stdout + down.stderr
        assert sandbox_nodes.started(cfg) == [1] and not Sandbox(cfg).status().running
        again = ivr(cfg_file, "pbx", "up")  # the single-node sandbox, restored
        assert again.returncode == 0, again.stderr
        assert [i for i, _, st in sandbox_nodes.status(cfg) if st.running] == [1]


class Watch:
    """A second AMI session on each node: the Originates each one answered, from Asterisk."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.seen: dict[str, set[str]] = {n.name: set() for n in cfg.pbx.node_list()}
        self.amis: list[Ami] = []
        self.tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> "Watch":
        user = Sandbox(self.cfg).monitor_user
        for node in self.cfg.pbx.node_list():
            ami = Ami(node.host, node.port, user, app.ami_secret(self.cfg, node.name),
                      events=MONITOR_EVENTS)
            await ami.connect()
            self.amis.append(ami)
            self.tasks.append(asyncio.create_task(self._pump(node.name, ami)))
        return self

    async def _pump(self, name: str, ami: Ami) -> None:
        while True:
            ev = await ami.next_event(1.0)
            if ev is not None and ev.get("Event") == "OriginateResponse":
                self.seen[name].add(str(ev.get("Uniqueid")))

    async def __aexit__(self, *_: object) -> None:
        for task in self.tasks:
            task.cancel()
        for ami in self.amis:
            ami.close()


def _numbers(count: int, first_block: int) -> list[str]:
    """Callees that answer and press 1 during the intro (last two digits 10)."""
    return [fiction("10", f"{b:02d}") for b in range(first_block, first_block + count)]


async def _run(cfg: Config, store: Store, during: Any = None) -> tuple[Any, dict[str, set[str]]]:
    async with Watch(cfg) as watch:
        side = asyncio.ensure_future(during(watch)) if during else None
        try:
            report, _ = await app.run_campaign(cfg, store)
        finally:
            if side is not None:
                side.cancel()
        await asyncio.sleep(0.5)  # the last OriginateResponses reach the watchers
    return report, watch.seen


def _no_overlap(calls: list[dict[str, Any]]) -> None:
    """Never two attempts of one number in flight at once."""
    by_number: dict[str, list[dict[str, Any]]] = {}
    for c in calls:
        by_number.setdefault(c["number"], []).append(c)
    for attempts in by_number.values():
        for a, b in zip(attempts, attempts[1:]):
            assert parse_utc(b["started_at"]) >= parse_utc(a["ended_at"]), (a, b)


def test_sixty_contacts_spread_over_three_nodes_within_a_quarter(pool_cfg: Config,
                                                                 tmp_path: Path) -> None:
    store = Store.open(tmp_path / "pool.db")
    numbers = _numbers(60, 10)
    add_contacts(store, numbers)
    report, seen = asyncio.run(_run(pool_cfg, store))
    calls = store.q("SELECT * FROM calls ORDER BY id")
    assert report.originated == 60 and len(calls) == 60
    assert {c["outcome"] for c in calls} == {"message_played"}
    ours = {c["channel_id"] for c in calls}
    per_node = {name: len(uids & ours) for name, uids in seen.items()}
    assert sum(per_node.values()) == 60, per_node  # Asterisk answered every Originate
    assert all(15 <= n <= 25 for n in per_node.values()), per_node  # 20 each, within 25 %
    # The store's calls.node agrees with what each Asterisk saw.
    assert Counter(c["node"] for c in calls) == Counter(per_node)
    _no_overlap(calls)


def test_a_node_sigkilled_mid_run_has_its_calls_retried_on_the_others(pool_cfg: Config,
                                                                      tmp_path: Path) -> None:
    store = Store.open(tmp_path / "kill.db")
    numbers = _numbers(45, 10)
    add_contacts(store, numbers)
    victim = sandbox_nodes.instance(pool_cfg, 3)
    pid = victim._pid()
    assert pid is not None
    killed: dict[str, set[str]] = {}

    async def kill_when_busy(watch: Watch) -> None:
        while len(watch.seen["pbx3"]) < 3:  # calls answered there, in their flow
            await asyncio.sleep(0.05)
        killed["at"] = set(watch.seen["pbx3"])
        os.kill(pid, signal.SIGKILL)
    try:
        report, seen = asyncio.run(_run(pool_cfg, store, kill_when_busy))
    finally:
        victim.down()  # reaps it, clears its pid file
        victim.up(sim_timing=app.sandbox_sim_timing(pool_cfg))  # back for the next test
    assert "at" in killed, "the node was never busy"
    calls = store.q("SELECT * FROM calls ORDER BY id")
    assert all(c["outcome"] for c in calls), [c for c in calls if not c["outcome"]]
    last = {c["number"]: c for c in calls}
    assert {c["outcome"] for c in last.values()} == {"message_played"}
    assert set(last) == set(numbers)
    cut = [c for c in calls if c["node"] == "pbx3" and c["outcome"] == "error"]
    assert cut, "no call of the killed node was cut"
    for c in cut:
        assert c["retry_at"], c
        retried = [r for r in calls if r["number"] == c["number"] and r["id"] > c["id"]]
        assert retried and retried[-1]["outcome"] == "message_played", c
        assert all(r["node"] in ("pbx", "pbx2") for r in retried), retried
    _no_overlap(calls)
    # After the kill, new calls went to the two others only.
    late = [c for c in calls if c["id"] > max(x["id"] for x in cut)]
    assert late and {c["node"] for c in late} <= {"pbx", "pbx2"}
