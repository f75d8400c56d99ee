"""Pool nodes that fail without dying: real AmiNodes over fake PBXs, the real dialer and run.

A node that hangs (socket open, nothing answered) or restarts with another AMI secret stays
down while its port listens: past their deadline the run stops waiting for its calls, so it
ends; those the node said it placed are settled `error` (`node-lost`) and retried on the
others, the others are left open for the node's reconciliation (a hung Asterisk may still place
them). A refused login names the node and the variable its secret was read from, once per
change, not at every retry. A call whose IVR session still runs is never cut at its deadline.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ivr import app
from ivr.campaign import deadline, planning, pool_watch
from ivr.campaign.clock import Clock
from ivr.errors import PbxError
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import Callee, FakePbx, answer

from conftest import Backend
from test_dialer import HASHES, SECRET, contact, fiction, make_cfg
from test_node_pool import FAST, Pool
from test_node_pool import pool as node_pool

DEADLINE_S = 3.0  # the longest call, short here: a down node's calls wait this long
FAST_AMI = {"heartbeat_s": 0.5, "action_timeout": 1.0}


@pytest.fixture(autouse=True)
def _no_secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secrets are given to the nodes: the variables named in messages are not set."""
    for name in ("IVR_AMI_SECRET", "IVR_AMI_SECRET_N1", "IVR_AMI_SECRET_N2"):
        monkeypatch.delenv(name, raising=False)


@asynccontextmanager
async def pool(where: Path | Backend, callees: Mapping[str, Callee], numbers: list[str],
               nodes: int = 3, secrets: Sequence[str] = (), **dialer: Any
               ) -> AsyncIterator[Pool]:
    """test_node_pool's pool, uncapped nodes with a fast heartbeat, and short calls."""
    async with node_pool(where, callees, numbers, [0] * nodes, secrets=secrets, ami=FAST_AMI,
                         **dialer) as p:
        p.dialer.deadline_s = DEADLINE_S
        yield p


async def until(cond: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond() and loop.time() < end:
        await asyncio.sleep(0.02)


def lines(caplog: pytest.LogCaptureFixture, text: str,
          level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if text in r.getMessage() and r.levelno >= level]


def test_a_node_that_hangs_is_named_and_the_run_ends_without_dialling_its_calls_again(
        backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    """n2 stops answering with its socket open as a call is sent to it: the link drops, the
    re-login is never answered, the port listens. The run ends, naming the node it waited on.
    That call is not retried: n2 never said it placed it, and a hung Asterisk may still read
    the Originate and place the call when it recovers (found in review: the retry and the late
    Originate rang the same number, an opposed one included). Its attempt stays open for n2's
    reconciliation; the other numbers are called on the nodes that answer."""
    numbers = [fiction(i) for i in range(6)]
    callees = {n: answer(["1"], delay_s=0.5, prompt_s=0.05) for n in numbers}

    async def scenario() -> tuple[list[dict[str, Any]], str, str]:
        async with pool(backend, callees, numbers, max_concurrent=6, calls_per_second=20,
                        ring_timeout_s=3) as p:
            victim, seen = p.pbxs[1], {"why": ""}

            async def hang() -> None:
                await until(lambda: bool(victim.originates), 10)
                victim.silent = True  # a hung Asterisk: no reply, no event, socket open
                n2 = p.dialer.nodes["n2"]
                await until(lambda: not n2.node.up)
                seen["why"] = n2.why_not_ready()
            task = asyncio.ensure_future(hang())
            report = await p.run(timeout=30)
            await task
            await p.settled()
            return p.calls(), report.stopped_by, seen["why"]
    with caplog.at_level(logging.INFO):
        calls, stopped_by, why = asyncio.run(scenario())
    assert stopped_by == "finished"
    left = [c for c in calls if c["node"] == "n2" and c["outcome"] is None]
    assert left  # sent to n2 once it hung: left for n2's reconciliation
    for call in left:  # not dialled again while n2 may still place it
        assert [c["id"] for c in calls if c["number"] == call["number"]] == [call["id"]]
    done = {c["number"] for c in calls if c["outcome"] == "message_played"}
    assert done == set(numbers) - {c["number"] for c in left}
    assert why.startswith("node n2 down (") and "wait for it" in why
    assert lines(caplog, "node n2 is down with")
    assert lines(caplog, "left open for its reconciliation")


def test_a_call_left_open_on_a_hung_node_is_settled_and_announced_when_it_recovers(
        tmp_path: Path) -> None:
    """Its reconciliation settles it and its outcome's hooks (the webhook) fire then: found in
    review, the call was settled `reconciled` but no webhook was ever sent for it."""
    numbers = [fiction(i) for i in range(6)]
    callees = {n: answer(["1"], delay_s=0.5, prompt_s=0.05) for n in numbers}
    hooked: list[int] = []

    async def scenario() -> tuple[list[int], list[dict[str, Any]]]:
        async with pool(tmp_path, callees, numbers, max_concurrent=6, calls_per_second=20,
                        ring_timeout_s=3) as p:
            p.dialer.on_settled.append(hooked.append)
            victim = p.pbxs[1]

            async def hang() -> None:
                await until(lambda: bool(victim.originates), 10)
                victim.silent = True
            task = asyncio.ensure_future(hang())
            await p.run(timeout=30)
            await task
            await p.settled()
            left = [c["id"] for c in p.calls() if c["outcome"] is None]
            victim.silent = False
            victim.drop()  # recovered: its sessions closed, the client logs in again
            n2 = p.dialer.nodes["n2"]
            await until(lambda: n2.node.up, 15)
            await p.dialer.reconcile_node(n2)
            await p.settled()
            return left, [c for c in p.calls() if c["id"] in left]
    left, after = asyncio.run(scenario())
    assert left and all(c["outcome"] == "error" for c in after)
    assert set(left) <= set(hooked)


def test_a_call_still_in_its_ivr_past_its_deadline_is_not_asked_about_every_second(
        tmp_path: Path) -> None:
    yes = fiction(1)
    asked: list[float] = []

    async def scenario() -> None:
        async with pool(tmp_path, {yes: answer(["1"], delay_s=0.3, prompt_s=4)}, [yes], nodes=1,
                        max_concurrent=4, calls_per_second=20, ring_timeout_s=3) as p:
            p.dialer.deadline_s = 2.0
            node = p.dialer.nodes["n1"].node
            channels = node.channels

            async def counted() -> Any:
                asked.append(asyncio.get_running_loop().time())
                return await channels()
            node.channels = counted
            await p.run(timeout=60)
    asyncio.run(scenario())
    assert len(asked) <= 2  # was one CoreShowChannels a second while the call talked


def test_a_node_restarted_with_another_secret_says_so_once_and_its_calls_end(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """n2 restarts within a second with a changed AMI secret: one line names the node, its
    address, its user key and secret variable, however often the re-login is refused; the
    library's reconnect lines are not repeated at every try; its calls are settled as above."""
    numbers = [fiction(i) for i in range(6)]
    callees = {n: answer(["1"], delay_s=1.0, prompt_s=0.05) for n in numbers}

    async def scenario() -> tuple[list[dict[str, Any]], int]:
        async with pool(tmp_path, callees, numbers, max_concurrent=6, calls_per_second=20,
                        ring_timeout_s=3) as p:
            victim = p.pbxs[1]

            async def restart() -> None:
                await until(lambda: bool(victim.originates), 10)
                await victim.crash()
                victim.secret = "changed by the admin"
                await asyncio.sleep(0.3)
                await victim.start()
            task = asyncio.ensure_future(restart())
            await p.run(timeout=30)
            await task
            await asyncio.sleep(2.5)  # more refused re-logins
            refused = sum(1 for a in victim.actions if a.get("Action") == "Login")
            return p.calls(), refused
    with caplog.at_level(logging.INFO):
        calls, refused = asyncio.run(scenario())
    said = lines(caplog, "AMI login refused", logging.ERROR)
    assert refused >= 3
    assert len(said) == 1, said
    assert said[0].startswith("node n2: AMI login refused at 127.0.0.1:")
    assert said[0].endswith(": check pbx.nodes[n2].user and IVR_AMI_SECRET_N2 "
                            "(or IVR_AMI_SECRET)")
    assert len(lines(caplog, "node n2: Connection lost")) == 1  # the rest at debug level
    lost = [c for c in calls if c["stage"] == "node-lost"]
    assert lost and all(c["node"] == "n2" and c["retry_at"] for c in lost)
    assert {c["number"] for c in calls if c["outcome"] == "message_played"} == set(numbers)


@pytest.mark.parametrize("env, variable", [
    ({}, "IVR_AMI_SECRET_N2 (or IVR_AMI_SECRET)"),
    ({"IVR_AMI_SECRET_N2": "x"}, "IVR_AMI_SECRET_N2"),
    ({"IVR_AMI_SECRET": "x"}, "IVR_AMI_SECRET (IVR_AMI_SECRET_N2 is not set)")])
def test_a_refused_login_at_start_names_the_node_and_the_variable_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
        variable: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    async def scenario() -> None:
        async with pool(tmp_path, {}, [], secrets=[SECRET, "wrong", SECRET]):
            pass
    with pytest.raises(PbxError) as exc:
        asyncio.run(scenario())
    message = str(exc.value)
    assert message.startswith("node n2: AMI login refused at 127.0.0.1:")
    assert message.endswith(f": check pbx.nodes[n2].user and {variable}")
    assert "\n" not in message


def test_the_single_node_names_pbx_user_and_a_silent_node_is_named() -> None:
    async def scenario() -> tuple[str, str]:
        async with FakePbx({}, user="ivr", secret=SECRET) as pbx:
            single = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", "wrong")
            with pytest.raises(PbxError) as refused:
                await single.connect(2.0)
            single.close()
            pbx.silent = True
            hung = AmiNode("n3", "127.0.0.1", pbx.ami_port, "ivr", SECRET)
            with pytest.raises(PbxError) as late:
                await hung.connect(0.5)
            hung.close()
            return str(refused.value), str(late.value)
    refused, late = asyncio.run(scenario())
    assert refused.startswith("node pbx: AMI login refused") and \
        refused.endswith("check pbx.user and IVR_AMI_SECRET_PBX (or IVR_AMI_SECRET)")
    assert late.startswith("node n3: cannot reach AMI at 127.0.0.1:")


def test_a_node_joining_with_a_wrong_secret_says_so_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Down at start, n2 listens later but refuses our login: one error naming the node and
    what to check, not one per try."""
    async def scenario() -> int:
        async with FakePbx({}, user="ivr", secret=SECRET) as good, \
                FakePbx({}, user="ivr", secret="the node's real one") as late:
            await late.stop()
            nodes = [AmiNode("n1", "127.0.0.1", good.ami_port, "ivr", SECRET),
                     AmiNode("n2", "127.0.0.1", late.ami_port, "ivr", SECRET)]
            store = Backend("sqlite", tmp_path).open()
            ctl = await app.start(make_cfg(tmp_path, FAST), store, Clock(), node=nodes,
                                  hashes=HASHES)
            try:
                await late.start()
                await until(lambda: sum(
                    1 for a in late.actions if a.get("Action") == "Login") >= 3, 12)
            finally:
                await ctl.close()
            return sum(1 for a in late.actions if a.get("Action") == "Login")
    with caplog.at_level(logging.INFO):
        tries = asyncio.run(scenario())
    said = lines(caplog, "AMI login refused", logging.ERROR)
    assert tries >= 3 and len(said) == 1, said
    assert said[0].startswith("node n2: AMI login refused at 127.0.0.1:")
    assert "check pbx.nodes[n2].user and IVR_AMI_SECRET_N2 (or IVR_AMI_SECRET)" in said[0]
    assert not lines(caplog, "Connection lost", logging.WARNING)


def test_an_earlier_runs_attempt_on_a_node_still_down_is_left_for_its_reconciliation(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """An open attempt of a dead controller on n2, which is down: nobody can ask n2, and a
    hung Asterisk may still place its Originate when it recovers, so it is never settled on a
    guess (a retry would dial the number twice), however old: n2's reconciliation settles it."""
    old_n, new_n = fiction(20), fiction(21)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with pool(backend, {}, [old_n, new_n], nodes=2) as p:
            p.dialer.deadline_s = 30.0  # calls last 30 s at most; a node down 1 s is lost
            monkeypatch.setattr(deadline, "LOST_GRACE_S", 1.0)
            cfg, now = p.ctl.cfg, p.ctl.clock.now()
            p.store.controller_id = "dead-controller"
            old = planning.claim(cfg, p.store, contact(p.store, old_n), "n2",
                                 now - timedelta(seconds=60)).call
            new = planning.claim(cfg, p.store, contact(p.store, new_n), "n2", now).call
            p.store.controller_id = "this-controller"
            await p.pbxs[1].crash()
            n2 = p.dialer.nodes["n2"]
            await until(lambda: not n2.node.up)
            await pool_watch.settle_orphans(p.dialer)
            await p.settled()
            early = p.store.call(old["id"])
            await asyncio.sleep(1.3)
            await pool_watch.settle_orphans(p.dialer)
            await p.settled()
            return early, p.store.call(old["id"]), p.store.call(new["id"])
    early, late, recent = asyncio.run(scenario())
    assert early["outcome"] is None and late["outcome"] is None and recent["outcome"] is None

def test_a_call_still_in_its_ivr_is_not_cut_at_a_deadline_set_for_shorter_prompts(
        tmp_path: Path) -> None:
    """The deadline is computed once per run from the prompts then built; a rebuild mid-run
    (longer prompts) reaches new calls at once. A call whose IVR session still runs past that
    deadline is talking, not lost: found in review, it was hung up and its refusal or consent
    thrown away, and the callee called again."""
    yes, no = fiction(1), fiction(2)
    callees = {yes: answer(["1"], delay_s=0.3, prompt_s=1.5),
               no: answer(["2"], delay_s=0.3, prompt_s=1.5)}

    async def scenario() -> list[dict[str, Any]]:
        async with pool(tmp_path, callees, [yes, no], nodes=1, max_concurrent=4,
                        calls_per_second=20, ring_timeout_s=3) as p:
            p.dialer.deadline_s = 2.0  # the calls last ~5 s: their prompts grew since
            await p.run(timeout=60)
            await p.settled()
            return p.calls()
    calls = asyncio.run(scenario())
    assert sorted((c["number"], c["outcome"], c["attempt"]) for c in calls) == [
        (yes, "message_played", 1), (no, "declined", 1)]
