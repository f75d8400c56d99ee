"""A pool of PBX nodes, without root: several fake PBXs speak real AMI to real AmiNodes and
drive the real FastAGI server; the real dialer, run loop and SQLite store.

Spread by free capacity, one node crashing mid-run (its calls `error`, retried on the others),
the node rejoining once it listens again, the per-node AMI secret, orphaned attempts settled,
each node's own hold after a PBX fault (the other keeps dialling).
"""
from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from datetime import datetime, timezone
from typing import Any

import pytest

from ivr import app
from ivr.callflow.dispositions import NO_CAUSE_OUTCOME
from ivr.campaign import planning, pool_watch
from ivr.campaign import run as campaign_run
from ivr.campaign.clock import Clock, ManualClock
from ivr.campaign.nodes import FAULT_HOLD_S
from ivr.campaign import dialer as dialer_mod
from ivr.campaign import node_events
from ivr.campaign.nodes import InFlight, NodeState, pick
from ivr.errors import PbxError
from ivr.store.sqlite import Store, parse_utc
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import Callee, FakePbx, answer, no_answer
from ivr.telephony.node import OriginateRefused, OriginateRequest

from conftest import Backend
from conftest import make_config
from test_dialer import HASHES, SECRET, add_contacts, contact, fiction, make_cfg

FAST = {"busy": 0.2, "no_answer": 0.2, "congestion": 0.2}


@dataclass
class Pool:
    pbxs: list[FakePbx]
    ctl: app.Controller
    store: Store

    @property
    def dialer(self) -> Any:
        return self.ctl.dialer

    def calls(self) -> list[dict[str, Any]]:
        self.dialer.writer.flush()
        return self.store.q("SELECT * FROM calls ORDER BY id")

    async def settled(self) -> None:
        """The dialer's writes so far are in the store (PostgreSQL: from a worker thread)."""
        await self.dialer.writer.settled()

    async def run(self, timeout: float = 60) -> campaign_run.RunReport:
        return await asyncio.wait_for(campaign_run.run(
            self.ctl.cfg, self.store, self.dialer, self.ctl.clock, asyncio.Event(),
            asyncio.Event()), timeout)


@asynccontextmanager
async def pool(where: Path | Backend,
               callees: Mapping[str, Callee] | Callable[[str], Callee],
               numbers: list[str], caps: list[int], clock: Clock | None = None,
               secrets: Sequence[str] = (), ami: Mapping[str, Any] | None = None,
               **dialer: Any) -> AsyncIterator[Pool]:
    """`where`: the test's folder (SQLite) or its Backend (either store). `secrets`: each
    node's AMI secret as the controller gives it (default: the fake PBXs'); `ami`: AmiNode's
    options (heartbeat, action timeout)."""
    backend = where if isinstance(where, Backend) else Backend("sqlite", where)
    cfg = make_cfg(backend, FAST, **dialer)
    store = backend.open()
    add_contacts(store, numbers)
    async with AsyncExitStack() as stack:
        pbxs = [await stack.enter_async_context(FakePbx(callees, user="ivr", secret=SECRET))
                for _ in caps]
        keys = list(secrets) or [SECRET] * len(caps)
        nodes = [AmiNode(f"n{i + 1}", "127.0.0.1", p.ami_port, "ivr", key, max_channels=cap,
                         **(ami or {}))
                 for i, (p, cap, key) in enumerate(zip(pbxs, caps, keys))]
        ctl = await app.start(cfg, store, clock or Clock(), node=nodes, hashes=HASHES)
        try:
            yield Pool(pbxs, ctl, store)
        finally:
            await ctl.close()


class _Node:
    def __init__(self, name: str, cap: int, up: bool = True) -> None:
        self.name, self.max_channels, self.up = name, cap, up


def _state(name: str, cap: int, calls: int, up: bool = True) -> NodeState:
    ns = NodeState(_Node(name, cap, up), ManualClock())  # type: ignore[arg-type]
    ns.calls = {f"{name}-{i}": None for i in range(calls)}  # type: ignore[misc]
    return ns


def test_pick_takes_the_most_free_relative_to_its_cap_and_ties_in_turn() -> None:
    small, big = _state("a", 2, 1), _state("b", 6, 2)  # 50 % free vs 67 % free
    assert pick([small, big], 10, 0).name == "b"
    assert pick([small, _state("c", 6, 4)], 10, 0).name == "a"  # 50 % vs 33 %
    # No cap of its own: the campaign's max_concurrent is its cap.
    assert pick([_state("d", 0, 5), _state("e", 4, 1)], 10, 0).name == "e"
    equal = [_state(n, 4, 1) for n in "xyz"]
    assert [pick(equal, 10, t).name for t in range(4)] == ["x", "y", "z", "x"]
    # Down or full nodes are never picked while another is ready.
    assert pick([_state("down", 4, 0, up=False), _state("full", 1, 1), _state("ok", 9, 8)],
                10, 0).name == "ok"


def test_calls_spread_evenly_over_equal_nodes(backend: Backend) -> None:
    numbers = [fiction(i) for i in range(30)]

    async def scenario() -> tuple[list[int], list[dict[str, Any]]]:
        async with pool(backend, {n: answer(["1"], prompt_s=0.05) for n in numbers},
                        numbers, caps=[0, 0, 0], max_concurrent=6,
                        calls_per_second=100) as p:
            await p.run()
            return [len(x.originates) for x in p.pbxs], p.calls()
    counts, calls = asyncio.run(scenario())
    assert sum(counts) == 30 and all(8 <= c <= 12 for c in counts), counts
    assert {c["outcome"] for c in calls} == {"message_played"}
    assert Counter(c["node"] for c in calls) == {"n1": counts[0], "n2": counts[1],
                                                 "n3": counts[2]}


def test_calls_spread_by_free_capacity_and_each_cap_holds(tmp_path: Path) -> None:
    """max_channels counts the node's attempts in flight, as the controller knows them: each
    Originate is sent with at most that many on the node, itself included. (The PBX may still
    be tearing down the channel of an attempt whose IVR has just reported: not counted.)"""
    numbers = [fiction(i) for i in range(24)]

    async def scenario() -> tuple[list[FakePbx], dict[str, int]]:
        async with pool(tmp_path, {n: answer(["1"], delay_s=0.2, prompt_s=0.1)
                                   for n in numbers},
                        numbers, caps=[2, 6], max_concurrent=8, calls_per_second=200) as p:
            most = {name: 0 for name in p.dialer.nodes}
            for ns in p.dialer.nodes.values():
                send = ns.node.originate

                async def counted(request: Any, ns: Any = ns, send: Any = send) -> None:
                    most[ns.name] = max(most[ns.name], len(ns.calls))
                    await send(request)
                ns.node.originate = counted
            await p.run()
            return p.pbxs, most
    (small, big), most = asyncio.run(scenario())
    assert most == {"n1": 2, "n2": 6}  # each cap reached, never passed
    assert big.max_live >= 4  # the big node was used beyond the small one's cap
    assert len(big.originates) > 2 * len(small.originates) > 0


def test_a_node_that_crashes_mid_run_has_its_calls_retried_on_the_others_and_rejoins(
        backend: Backend) -> None:
    numbers = [fiction(i) for i in range(60)]

    async def scenario() -> tuple[list[dict[str, Any]], int, int, dict[str, Any]]:
        async with pool(backend, {n: answer(["1"], delay_s=0.6, prompt_s=0.05)
                                   for n in numbers},
                        numbers, caps=[0, 0, 0], max_concurrent=9, calls_per_second=15,
                        ring_timeout_s=2) as p:
            victim = p.pbxs[1]
            state: dict[str, Any] = {}

            async def fault() -> None:
                while len(victim.live) < 2:  # calls ringing there
                    await asyncio.sleep(0.01)
                state["in_flight"] = set(victim.live)
                state["crash"] = datetime.now(timezone.utc)
                await victim.crash()
                await asyncio.sleep(2.0)
                state["before_restart"] = len(victim.originates)
                state["restart"] = datetime.now(timezone.utc)
                await victim.start()  # same port: its AMI reconnects
            task = asyncio.ensure_future(fault())
            await p.run()
            await task
            lost = [c for c in p.calls() if c["channel_id"] in state["in_flight"]]
            assert lost
            return (p.calls(), len(state["in_flight"]),
                    len(victim.originates) - state["before_restart"], state)
    calls, lost_n, after_restart, state = asyncio.run(scenario())
    by_number: dict[str, list[dict[str, Any]]] = {}
    for c in calls:
        by_number.setdefault(c["number"], []).append(c)
    lost = [c for c in calls if c["stage"] == "node-lost"]
    assert len(lost) == lost_n
    for c in lost:
        assert c["node"] == "n2" and c["outcome"] == "error" and c["retry_at"], c
        retry = by_number[c["number"]][-1]
        assert retry["id"] > c["id"] and retry["outcome"] == "message_played"
        assert parse_utc(retry["started_at"]) >= parse_utc(c["retry_at"])
    # While n2 was away nothing went to it (the retries included, when they came due then;
    # retries join the end of the plan, so they may come after its return, and go anywhere).
    away = [c for c in calls if state["crash"] < parse_utc(c["started_at"]) < state["restart"]]
    assert away and all(c["node"] != "n2" for c in away), away
    # Every number ends with its callee's outcome, nobody dialled twice at once.
    assert {n: cs[-1]["outcome"] for n, cs in by_number.items()} == \
        {n: "message_played" for n in numbers}
    assert after_restart > 0  # it rejoined and got calls again


def test_each_node_has_its_own_secret_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config(tmp_path, pbx={"mode": "external", "nodes": [
        {"name": "paris-1", "port": 5038}, {"name": "lyon", "port": 5039, "max_channels": 50}]})
    for var in ("IVR_AMI_SECRET", "IVR_AMI_SECRET_PARIS_1", "IVR_AMI_SECRET_LYON"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(PbxError, match="IVR_AMI_SECRET_PARIS_1"):
        app.ami_secret(cfg, "paris-1")
    monkeypatch.setenv("IVR_AMI_SECRET", "common")
    monkeypatch.setenv("IVR_AMI_SECRET_PARIS_1", "paris-secret")
    assert app.ami_secret(cfg, "paris-1") == "paris-secret"
    assert app.ami_secret(cfg, "lyon") == "common"
    nodes = app.build_nodes(cfg)
    assert [(n.name, n.max_channels) for n in nodes] == [("paris-1", 0), ("lyon", 50)]
    assert [n._args for n in nodes] == [("127.0.0.1", 5038, "ivr", "paris-secret"),
                                        ("127.0.0.1", 5039, "ivr", "common")]
    single = make_config(tmp_path, pbx={"mode": "external", "port": 5040})
    monkeypatch.setenv("IVR_AMI_SECRET_PBX", "own")
    (node,) = app.build_nodes(single)  # the single block: one node named "pbx"
    assert node.name == "pbx" and node._args == ("127.0.0.1", 5040, "ivr", "own")


@pytest.mark.parametrize("entry, message", [
    ({"name": "Paris"}, r"pbx.nodes\[1\].name: 'Paris' is not a node name"),
    ({"name": "a"}, r"pbx.nodes\[1\].name: 'a' is already the name of another node"),
    ({"name": "b", "port": 70000}, r"pbx.nodes\[1\].port is 70000"),
    ({"name": "b", "max_channels": -1}, r"pbx.nodes\[1\].max_channels is -1"),
    ({"name": "b", "secret": "x"}, r"pbx.nodes\[1\].secret: unknown key"),
])
def test_a_bad_node_entry_is_one_line_naming_its_key(entry: dict[str, Any],
                                                     message: str) -> None:
    from ivr.errors import ConfigError
    with pytest.raises(ConfigError, match=message) as exc:
        make_config(pbx={"nodes": [{"name": "a"}, entry]})
    assert "\n" not in str(exc.value)


def test_orphaned_attempts_are_settled_unless_live_on_one_of_our_nodes(
        backend: Backend) -> None:
    live_n, gone_n = fiction(10), fiction(11)

    async def scenario() -> tuple[bool, list[dict[str, Any]]]:
        async with pool(backend, {live_n: no_answer(), gone_n: answer()}, [live_n, gone_n],
                        caps=[0, 0]) as p:
            cfg, now = p.ctl.cfg, p.ctl.clock.now()
            # Two attempts of another controller, never registered or long gone: one still
            # rings on n2, one is gone with it.
            p.store.controller_id = "dead-controller"
            rows = [planning.claim(cfg, p.store, contact(p.store, n), "n2", now).call
                    for n in (live_n, gone_n)]
            p.store.controller_id = None  # not a registered controller: judges nobody
            assert await pool_watch.settle_orphans(p.dialer) == 0
            p.store.controller_id = "this-controller"
            other = AmiNode("other", "127.0.0.1", p.pbxs[1].ami_port, "ivr", SECRET)
            await other.connect()
            try:
                await other.originate(OriginateRequest(
                    f"Local/{live_n}@ivr-sim", rows[0]["channel_id"], "x", 1500,
                    "ivr-outbound", "s"))
                assert [c["id"] for c in p.store.orphaned_calls("utest", now)] == \
                    [r["id"] for r in rows]
                settled = await pool_watch.settle_orphans(p.dialer)
                assert settled == 1
                adopted = rows[0]["id"] in p.dialer.by_call
                loop = asyncio.get_running_loop()
                end = loop.time() + 10
                while p.dialer.in_flight() and loop.time() < end:
                    await asyncio.sleep(0.05)
            finally:
                other.close()
            await p.settled()
            return adopted, p.calls()
    adopted, calls = asyncio.run(scenario())
    by_number = {c["number"]: c for c in calls}
    assert adopted
    gone = by_number[gone_n]
    assert (gone["outcome"], gone["stage"]) == ("error", "orphaned") and gone["retry_at"]
    # The live one was waited for and got its real outcome, not `error`.
    assert by_number[live_n]["outcome"] == "no_answer"


def test_an_originate_its_node_never_got_is_withdrawn_not_charged(tmp_path: Path) -> None:
    """Found in review: the claim went to a node whose link dropped before its Originate left.
    Nothing was sent, yet the attempt was left to the reconciliation, which charged it as
    `error` (node-lost): one attempt of the cap gone for a call never dialled. Now the
    attempt is withdrawn (its row removed), so the contact is due again, on another node."""
    number = fiction(0)

    async def scenario() -> tuple[int, list[dict[str, Any]], int, bool]:
        async with pool(tmp_path, {number: answer(["1"], prompt_s=0.05)}, [number],
                        caps=[0, 0]) as p:
            claim, send = await p.dialer.place(contact(p.store, number))
            assert claim.call is not None and send is not None
            flight = p.dialer.by_call[int(claim.call["id"])]
            pbx = p.pbxs[int(flight.node[1:]) - 1]
            await pbx.crash()
            node = p.dialer.nodes[flight.node].node
            loop = asyncio.get_running_loop()
            end = loop.time() + 5
            while node.up and loop.time() < end:
                await asyncio.sleep(0.02)
            with pytest.raises(PbxError):  # the link is down: the run holds, as before
                await send
            await p.settled()
            return len(pbx.originates), p.calls(), len(p.dialer.by_call), \
                p.dialer.idle.is_set()
    sent, calls, in_flight, idle = asyncio.run(scenario())
    assert sent == 0 and calls == [] and in_flight == 0 and idle


def test_a_node_long_down_does_not_make_every_hangup_a_pbx_fault(tmp_path: Path) -> None:
    """The IVR asks whether the PBX went down when a call is cut: in a pool, a node that died
    minutes ago says nothing about a call ending now on another node; one going down now does."""
    async def scenario() -> tuple[bool, bool]:
        async with pool(tmp_path, {}, [], caps=[0, 0]) as p:
            await p.pbxs[1].crash()
            n2 = p.dialer.nodes["n2"]
            loop = asyncio.get_running_loop()
            end = loop.time() + 5
            while n2.down_since is None and loop.time() < end:
                await asyncio.sleep(0.05)
            n2.down_since -= 60  # down for a minute
            long_down = await p.dialer.pbx_went_down(within_s=0.5)
            going = asyncio.ensure_future(p.dialer.pbx_went_down(within_s=3.0))
            await p.pbxs[0].crash()
            return long_down, await going
    assert asyncio.run(scenario()) == (False, True)


def test_another_node_going_down_says_nothing_of_a_call_on_this_one(tmp_path: Path) -> None:
    """A no-cause failure on n1 while n2 restarts is the carrier's (congestion, retried and
    counted by the breaker), not a PBX fault: the question is asked of the call's own node."""
    async def scenario() -> tuple[bool, bool, bool]:
        async with pool(tmp_path, {}, [], caps=[0, 0]) as p:
            going = asyncio.ensure_future(p.dialer.pbx_went_down(within_s=3.0, node="n2"))
            await p.pbxs[1].crash()
            own = await going
            other = await p.dialer.pbx_went_down(within_s=0.5, node="n1")
            return own, other, await p.dialer.pbx_went_down(within_s=0.5)
    assert asyncio.run(scenario()) == (True, False, True)


def test_a_no_cause_failure_asks_about_its_own_node() -> None:
    """node_events settles a no-cause failure on the answer for the call's node (n1 here,
    up), as the carrier's: before, any node of the pool down just now made it a PBX fault."""
    settled: list[tuple[str, Any]] = []

    class Dialer:  # what _settle_no_cause reads of the Dialer
        def __init__(self) -> None:
            self.by_call: dict[int, Any] = {}
            self.asked: list[str | None] = []

        async def pbx_went_down(self, within_s: float = 2.0, node: str | None = None) -> bool:
            self.asked.append(node)
            return node != "n1"  # n2 went down just now; n1 is up

        def _settle_unanswered(self, flight: Any, outcome: str, cause: Any) -> None:
            settled.append(("unanswered", outcome))

        def _settle_error(self, flight: Any, stage: str) -> None:
            settled.append(("error", stage))

        def pbx_fault(self) -> None:
            settled.append(("fault", None))
    dialer = Dialer()
    flight = InFlight(call_id=7, channel_id="ch-7", number="+33612345678", node="n1",
                      failed=True, reason=0)
    dialer.by_call[7] = flight
    asyncio.run(node_events._settle_no_cause(dialer, flight, {"ch-7"}))  # type: ignore[arg-type]
    assert dialer.asked == ["n1"] and settled == [("unanswered", NO_CAUSE_OUTCOME)]


def test_gone_tells_a_dead_asterisk_from_a_dropped_link() -> None:
    """A refused connection on the AMI port: the process is gone, and its channels with it.
    A listener (even one that will not log us in) is not taken for a dead node."""
    async def scenario() -> tuple[bool, bool]:
        async with FakePbx({}, user="ivr", secret=SECRET) as pbx:
            node = AmiNode("n1", "127.0.0.1", pbx.ami_port, "ivr", "wrong-secret")
            listening = await node.gone()
            await pbx.stop()
            return listening, await node.gone()
    assert asyncio.run(scenario()) == (False, True)


def test_a_node_down_at_start_joins_when_it_answers(tmp_path: Path) -> None:
    """The run starts on the nodes that answer; one whose AMI port refuses connections joins
    in the background, is reconciled, then gets calls."""
    numbers = [fiction(i) for i in range(40)]

    async def scenario() -> tuple[int, int, list[dict[str, Any]]]:
        cfg = make_cfg(tmp_path, FAST, max_concurrent=6, calls_per_second=12)
        store = Store.open(tmp_path / "ivr.db")
        add_contacts(store, numbers)
        callees = {n: answer(["1"], prompt_s=0.05) for n in numbers}
        async with FakePbx(callees, user="ivr", secret=SECRET) as one, \
                FakePbx(callees, user="ivr", secret=SECRET) as two:
            await two.stop()  # down before the run starts
            nodes = [AmiNode(f"n{i + 1}", "127.0.0.1", p.ami_port, "ivr", SECRET)
                     for i, p in enumerate((one, two))]
            ctl = await app.start(cfg, store, Clock(), node=nodes, hashes=HASHES)
            try:
                at_start = len(two.originates)

                async def back() -> None:
                    await asyncio.sleep(1.0)
                    await two.start()
                task = asyncio.ensure_future(back())
                await Pool([one, two], ctl, store).run()
                await task
            finally:
                await ctl.close()
            return at_start, len(two.originates), store.q("SELECT * FROM calls")
    at_start, joined, calls = asyncio.run(scenario())
    assert at_start == 0 and joined > 0
    assert {c["number"] for c in calls} == set(numbers)
    assert {c["outcome"] for c in calls} == {"message_played"}
    assert Counter(c["node"] for c in calls)["n2"] == joined


def test_a_node_that_refuses_our_login_stops_the_start(tmp_path: Path) -> None:
    """Only a node whose Asterisk is not running may join later: a wrong secret is an error."""
    async def scenario() -> None:
        cfg = make_cfg(tmp_path, FAST)
        store = Store.open(tmp_path / "ivr.db")
        async with FakePbx({}, user="ivr", secret=SECRET) as one, \
                FakePbx({}, user="ivr", secret=SECRET) as two:
            nodes = [AmiNode("n1", "127.0.0.1", one.ami_port, "ivr", SECRET),
                     AmiNode("n2", "127.0.0.1", two.ami_port, "ivr", "wrong")]
            await app.start(cfg, store, Clock(), node=nodes, hashes=HASHES)
    with pytest.raises(PbxError, match="AMI login refused"):
        asyncio.run(scenario())


def test_each_node_has_its_own_hold_the_other_keeps_dialling(backend: Backend) -> None:
    """Node A answers an Originate with "Asterisk is shutting down": that attempt is `error`
    and A is held FAULT_HOLD_S. Meanwhile node B takes every call; once the hold has run out
    (and A takes calls again) A gets its share back."""
    numbers = [fiction(i) for i in range(12)]
    clock = ManualClock()

    async def wait(cond: Callable[[], bool]) -> None:
        for _ in range(2000):  # the calls' timers run on the manual clock: a few ms per step
            if cond():
                return
            clock.advance(0.005)
            await asyncio.sleep(0.002)
        raise AssertionError("never happened")

    async def dial(p: Pool, number: str) -> str:
        """The node an Originate for `number` went to ("refused": it was refused)."""
        sent = [len(x.originates) for x in p.pbxs]
        try:
            await p.dialer.dial(contact(p.store, number))
        except OriginateRefused:
            return "refused"
        return next(f"n{i + 1}" for i, x in enumerate(p.pbxs) if len(x.originates) > sent[i])

    async def scenario() -> tuple[list[str], list[str], list[str], list[dict[str, Any]]]:
        async with pool(backend, {n: answer(["1"], prompt_s=0.01) for n in numbers},
                        numbers, caps=[0, 0], clock=clock) as p:
            a, b = p.dialer.nodes["n1"], p.dialer.nodes["n2"]
            p.pbxs[0].shutting_down = True
            first, queue = [], list(numbers)
            while not a.holding():  # ties go in turn: A's refusal comes within two calls
                first.append(await dial(p, queue.pop(0)))
            assert first[-1] == "refused" and len(p.pbxs[0].originates) == 1
            assert not b.holding() and p.dialer.ready()  # B's hold is its own
            during = [await dial(p, queue.pop(0)) for _ in range(4)]  # clock stands still
            assert a.holding()
            p.pbxs[0].shutting_down = False  # A is back, its hold still runs
            await wait(lambda: not p.dialer.inflight)
            clock.advance(FAULT_HOLD_S)
            assert a.ready() and b.ready()
            after = [await dial(p, n) for n in queue[:4]]
            await wait(lambda: not p.dialer.inflight)
            await p.settled()
            return first, during, after, p.calls()
    first, during, after, calls = asyncio.run(scenario())
    assert during == ["n2"] * 4, during
    assert sorted(after) == ["n1", "n1", "n2", "n2"], after
    refused = [c for c in calls if c["node"] == "n1" and c["outcome"] == "error"]
    assert len(refused) == 1 and refused[0]["retry_at"], calls
    assert [c["outcome"] for c in calls if c["id"] != refused[0]["id"]] == \
        ["message_played"] * (len(calls) - 1), calls


def test_nodes_full_under_max_concurrent_wait_for_a_call_to_end_not_replan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review: two nodes of max_channels 1 under max_concurrent 10: once both were
    full the run re-planned every half second (a whole plan, on SQLite on the event loop)
    instead of waiting for a call to end. It waits now, as it does when max_concurrent is
    reached."""
    numbers = [fiction(i) for i in range(8)]
    plans = []
    real = campaign_run.plan

    def counted(*args: Any, **kwargs: Any) -> Any:
        plans.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(campaign_run, "plan", counted)

    async def scenario() -> list[dict[str, Any]]:
        async with pool(tmp_path, {n: answer(["1"], prompt_s=0.3) for n in numbers}, numbers,
                        caps=[1, 1], max_concurrent=10, calls_per_second=50) as p:
            await p.run()
            return p.calls()
    calls = asyncio.run(scenario())
    assert sorted(c["number"] for c in calls) == sorted(numbers)
    assert {c["outcome"] for c in calls} == {"message_played"}
    assert len(plans) <= 4, len(plans)


def test_a_stop_does_not_wait_for_a_dead_pool_to_come_back(tmp_path: Path) -> None:
    """Found in review: a failed Originate with every node down waited 30 s for one to come
    back (the run's node wait 5 s), a stop or hard stop included."""
    async def scenario() -> tuple[bool, float, bool]:
        async with pool(tmp_path, {}, [], caps=[0, 0]) as p:
            for pbx in p.pbxs:
                await pbx.crash()
            loop = asyncio.get_running_loop()
            end = loop.time() + 5
            while p.dialer.up() and loop.time() < end:
                await asyncio.sleep(0.02)
            stop = asyncio.Event()
            waiting = asyncio.ensure_future(p.dialer.wait_up(30, stop))
            await asyncio.sleep(0.2)
            t0 = loop.time()
            stop.set()
            back = await asyncio.wait_for(waiting, 5)
            return back, loop.time() - t0, p.dialer.up()
    back, took, up = asyncio.run(scenario())
    assert (back, up) == (False, False) and took < 1.0


def test_a_failing_reconciliation_stops_retrying_once_the_controller_closes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review: a reconciliation that failed retried every RETRY_S through the clock,
    against closed nodes, with a WARNING each time, for as long as the loop lived."""
    from ivr.campaign import reconcile
    tries: list[float] = []

    async def fails(dialer: Any, ns: Any) -> int:
        tries.append(asyncio.get_running_loop().time())
        raise PbxError("link dropped again")
    monkeypatch.setattr(reconcile, "RETRY_S", 0.1)

    async def scenario() -> tuple[int, int]:
        async with pool(tmp_path, {}, [], caps=[0]) as p:
            monkeypatch.setattr(reconcile, "node", fails)  # once started
            p.dialer._reconcile_soon(p.dialer.nodes["n1"])
            await asyncio.sleep(0.35)
            while_open = len(tries)
        await asyncio.sleep(0.5)  # closed: no retry
        return while_open, len(tries) - while_open
    while_open, after = asyncio.run(scenario())
    assert while_open >= 2 and after == 0



def _hung_at_reconcile(monkeypatch: pytest.MonkeyPatch, which: slice) -> None:
    """The pool's fake PBXs in `which` (in the order made) answer no action from the start's
    reconciliation on: logged in, then hung."""
    made: list[FakePbx] = []
    entered, reconcile = FakePbx.__aenter__, dialer_mod.Dialer.reconcile

    async def kept(self: FakePbx) -> FakePbx:
        made.append(self)
        return await entered(self)

    async def hang_first(self: dialer_mod.Dialer) -> int:
        for pbx in made[which]:
            pbx.silent = True
        return await reconcile(self)
    monkeypatch.setattr(FakePbx, "__aenter__", kept)
    monkeypatch.setattr(dialer_mod.Dialer, "reconcile", hang_first)


def test_a_node_that_hangs_during_the_starts_reconciliation_does_not_stop_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """n2 logs in, then answers no action (a hung Asterisk) before the start reconciles it:
    the run starts and finishes on n1. Before, its CoreShowChannels timing out aborted
    `ivr run`, healthy nodes and all."""
    number = fiction(60)
    _hung_at_reconcile(monkeypatch, slice(1, 2))

    async def go() -> tuple[Any, list[dict[str, Any]]]:
        async with pool(tmp_path, {number: answer(["1"])}, [number], caps=[0, 0],
                        ami={"action_timeout": 1.0}) as p:
            report = await p.run()
            return report, p.calls()
    with caplog.at_level("WARNING"):
        report, calls = asyncio.run(go())
    assert [(c["node"], c["outcome"]) for c in calls] == [("n1", "message_played")], calls
    assert report.originated == 1
    assert "node n2: reconciliation at start failed" in caplog.text


def test_every_node_failing_at_the_start_still_stops_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _hung_at_reconcile(monkeypatch, slice(None))

    async def go() -> None:
        async with pool(tmp_path, {}, [fiction(60)], caps=[0, 0],
                        ami={"action_timeout": 1.0}):
            pass
    with pytest.raises(PbxError):
        asyncio.run(go())
