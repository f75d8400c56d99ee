"""Composition root: wires config, store, the PBX node, FastAGI, the flow handler, the dialer
and the run state."""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from ivr.campaign import deadline, pool_watch
from ivr.campaign import run as campaign_run
from ivr.callflow.agi_callback import CallbackHandler
from ivr.callflow.agi_gate import SessionGate
from ivr.callflow.agi_ivr import IvrHandler
from ivr.campaign.clock import Clock
from ivr.campaign.state import RunState, Snapshot
from ivr.campaign.stopping import Interrupted, Stopper
from ivr.telephony.agi_auth import callback_secret
from ivr.telephony import contract
from ivr.telephony.ami_node import AmiNode, env_secret, secret_env
from ivr.telephony.fastagi import AgiApplication, serve
from ivr.telephony.node import PbxNode
from ivr.config import Config
from ivr.campaign.dialer import Dialer
from ivr.campaign.run_control import poll_opposed
from ivr.errors import PbxError
from ivr.callflow.flow import FlowOptions
from ivr.prompts import archive
from ivr.prompts.build import MANIFEST_NAME, load_manifest
from ivr.prompts.live import LivePrompts
from ivr.prompts.manifest import load_playable
from ivr.records import webhooks
from ivr.records.run_audit import record_rules
from ivr.callback_line import STORE_SETTLE_S, drain_callbacks, settle_writes, utcnow
from ivr.telephony.sandbox import Sandbox
from ivr.store import factory
from ivr.store.base import RunOwner
from ivr.store.sqlite import Store

log = logging.getLogger(__name__)
T = TypeVar("T")
CLOSE_TIMEOUT_S = 2.0
# The collector's youngest generation during a run (CPython's default: 700 objects). Hundreds of
# calls in flight allocate 700 objects in a few ms, and each pass promotes the live calls'
# objects for the older passes to walk again: at 10,000 the collector's CPU per call fell from
# 0.18-0.22 ms to 0.05-0.06 (bench/bench_baseline.py, gc_ms_per_call), in 7-8 passes of a few ms
# each over a 1,000-call run instead of ~150 shorter ones and a full one.
GC_YOUNG = 10_000


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run the controller on uvloop: the same asyncio API, with the loop and the socket layer
    in C, which cut the CPU per call by about a tenth (bench/bench_ivr.py, README)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def open_store(cfg: Config, busy_timeout_s: float = 30.0) -> Store:
    """SQLite for store.path, PostgreSQL for store.url (ivr.store.factory)."""
    return factory.open_store(cfg, busy_timeout_s)  # type: ignore[return-value]


def ami_secret(cfg: Config, node: str | None = None) -> str:
    """The AMI secret of `node` (default: the first of the pool): IVR_AMI_SECRET_<NAME>, else
    IVR_AMI_SECRET, else (sandbox) the file `ivr pbx up` wrote into every instance."""
    name = node or cfg.pbx.node_list()[0].name
    env = env_secret(name)
    if env:
        return env
    if cfg.pbx.mode == "sandbox":
        return Sandbox(cfg).ami_secret()
    raise PbxError(f"neither {secret_env(name)} nor IVR_AMI_SECRET is set: export the AMI "
                   f"secret of node {name!r} before running")


def flow_options(cfg: Config) -> FlowOptions:
    f = cfg.flow
    return FlowOptions(yes_key=f.yes_key, no_key=f.no_key, optout_key=f.optout_key,
                       input_timeout_s=f.input_timeout_s, max_repeats=f.max_repeats,
                       ask_slot=f.ask_slot, slots=dict(f.slots),
                       on_machine=cfg.dialer.on_machine)


def prompt_hashes(cfg: Config) -> dict[str, str]:
    """Never a build made for other flow keys than cfg's (OtherFlowKeys: prompts/live.py)."""
    return {k: v["sha256"] for k, v in load_playable(cfg)["prompts"].items()}


def call_deadline_s(cfg: Config) -> float:
    """The longest possible call, from the prompts' durations in the manifest (a prompt it
    lacks counts as prompts.max_duration_s); computed once per run."""
    return deadline.longest_call_s(cfg, sandbox_sim_timing(cfg))


def build_nodes(cfg: Config) -> list[PbxNode]:
    """The PBX nodes of `cfg.pbx` (pbx.nodes, else the single block as node "pbx"): one Asterisk
    each over AMI. Names are stored with each attempt (calls.node), so they must stay stable
    across runs: reconciliation asks a node for its own attempts only."""
    return [AmiNode(n.name, n.host, n.port, n.user, ami_secret(cfg, n.name),
                    max_channels=n.max_channels) for n in cfg.pbx.node_list()]


def build_node(cfg: Config) -> PbxNode:
    """The first node of the pool (the only one without pbx.nodes)."""
    return build_nodes(cfg)[0]


@dataclass
class Controller:
    cfg: Config
    store: Store
    nodes: list[PbxNode]
    dialer: Dialer
    agi: AgiApplication
    server: asyncio.AbstractServer
    pumps: list[asyncio.Task]
    clock: Clock

    @property
    def node(self) -> PbxNode:
        return self.nodes[0]

    @property
    def ami(self) -> Any:
        """The first node's AMI link (reconnect counters for tests and benchmarks)."""
        return getattr(self.node, "ami", None)

    async def close(self, interrupt: asyncio.Event | None = None) -> None:
        """`interrupt` (a second Ctrl-C): stop waiting for the opposition line's callers and
        for writes a store that is away has not taken yet."""
        self.server.close()  # no new session; a caller already on the opposition line finishes
        await drain_callbacks(self.agi, interrupt)
        # a remote store's last batch lands before the end; one the store could not take yet
        # (locked, restarting) is retried a while: it may be a caller's opposition
        await settle_writes(self.dialer.writer, STORE_SETTLE_S, interrupt)
        for pump in self.pumps:
            pump.cancel()
        await self.dialer.close()
        try:  # bounded: a stop must end whatever the peers do
            await asyncio.wait_for(self.server.wait_closed(), CLOSE_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.warning("FastAGI server not closed within %g s", CLOSE_TIMEOUT_S)
        for node in self.nodes:
            node.close()


async def start(cfg: Config, store: Store, clock: Clock | None = None, agi: bool = True,
                node: PbxNode | Sequence[PbxNode] | None = None,
                hashes: dict[str, str] | None = None,
                on_settled: Sequence[Callable[[int], None]] = ()) -> Controller:
    """Connect every node, start FastAGI (one server for the whole pool: each call carries its
    URL), reconcile attempts left open by an earlier run. `node` (one or several) and `hashes`
    (the prompts' fingerprints) default to those of `cfg`; `on_settled` hears every outcome."""
    nodes = build_nodes(cfg) if node is None else \
        [node] if isinstance(node, PbxNode) else list(node)
    try:
        await _connect(nodes)
        return await _start(cfg, store, clock or Clock(), agi, nodes, hashes, on_settled)
    except BaseException:
        for n in nodes:
            n.close()
        raise


async def _connect(nodes: list[PbxNode]) -> None:
    """Connect every node. In a pool, a node whose Asterisk is not running (its AMI port
    refuses connections) joins later, in the background; any other failure (a wrong secret,
    a host that does not answer) stops the start with its one-line error, as does the whole
    pool being down."""
    later: list[Any] = []
    if len(nodes) > 1:
        probes = [getattr(n, "gone", None) for n in nodes]
        down = await asyncio.gather(*(p() for p in probes if p is not None))
        later = [n for n, p in zip(nodes, probes) if p is not None and down.pop(0)]
        if len(later) == len(nodes):
            later = []  # none up: the first one's error says what to fix
    await asyncio.gather(*(n.connect() for n in nodes if n not in later))
    for n in later:
        log.warning("node %s is down (its AMI port refuses connections): the run starts "
                    "without it, it joins when it answers", n.name)
        n.join_later()


async def _start(cfg: Config, store: Store, clock: Clock, agi: bool, nodes: list[PbxNode],
                 hashes: dict[str, str] | None,
                 on_settled: Sequence[Callable[[int], None]] = ()) -> Controller:
    # the per-call URL as the globals' one: an IPv6 literal needs its brackets
    agi_url = contract.agi_url(cfg.agi.host, cfg.agi.port)
    dialer = Dialer(cfg, store, nodes, clock, agi_url, deadline_s=call_deadline_s(cfg))
    dialer.on_settled.extend(on_settled)  # before the reconciliation, whose outcomes count too
    app = agi_app(cfg, store, dialer, clock, hashes)
    try:
        server = await serve(app, cfg.agi.host, cfg.agi.port) if agi else None
    except OSError as exc:
        raise PbxError(f"cannot listen for FastAGI on {cfg.agi.host}:{cfg.agi.port} "
                       f"({exc.strerror}): is `ivr serve` or another `ivr run` active? stop it, or "
                       "set agi.port") from None
    if server is None:  # used by tests of the dialplan failsafe: no AGI server at all
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    try:
        if dialer.opposed is not None:  # before adopting: an adopted call may answer at once
            await dialer.off_loop(poll_opposed, dialer.opposed, store, clock.now())
        await dialer.reconcile()
    except BaseException:
        server.close()
        raise
    pumps = [asyncio.create_task(dialer.consume(ns)) for ns in dialer.nodes.values()]
    pumps.append(asyncio.create_task(deadline.watch(dialer)))
    pumps.append(asyncio.create_task(pool_watch.watch(dialer)))
    return Controller(cfg, store, nodes, dialer, app, server, pumps, clock)


def agi_app(cfg: Config, store: Store, dialer: Dialer, clock: Clock,
            hashes: dict[str, str] | None = None) -> AgiApplication:
    """The FastAGI routes: the IVR (settling through the dialer) and the opposition line."""
    app = AgiApplication(allowed_peers=cfg.agi.allowed_peers,
                         pbx_hosts=[n.host for n in cfg.pbx.node_list()])
    given, hashes = hashes, (prompt_hashes(cfg) if hashes is None else hashes)
    # The second gate after allowed_peers: the attempt's token, in flight here, its channel.
    gate = SessionGate(store.call, dialer.by_call, dialer.ivr_active, known=dialer.claimed,
                       read_off_loop=lambda call_id: dialer.off_loop(store.call, call_id))
    live = live_prompts(cfg, hashes, follow=given is None)
    flow = flow_options(cfg)
    handler = IvrHandler(store, hashes, flow, clock.now, versions=live.current,
                         retry_at=dialer.retry_at, on_finished=dialer.finished,
                         write=dialer.writer.write, on_pbx_fault=dialer.pbx_fault,
                         pbx_went_down=dialer.pbx_went_down, gate=gate,
                         causes=dialer.stored_causes,
                         cut_by_run=dialer.cut_by_run.__contains__,
                         commit=dialer.writer.committed,
                         session_limit_s=deadline.session_limit_s(
                             dialer.deadline_s, flow.hold_wait))
    dialer.opposed = handler.opposed  # kept up to date by the run's tick (run_control.py)
    dialer.sounds = lambda: live.current().sounds  # the outbound failsafe's
    app.add_route("ivr", handler)
    app.add_route("callback", CallbackHandler(store, cfg.default_region, clock.now,
                                              commit=dialer.writer.committed,
                                              secret=callback_secret(cfg),
                                              optout_key=cfg.flow.optout_key))
    return app


def live_prompts(cfg: Config, hashes: dict[str, str], follow: bool) -> LivePrompts:
    """The versions calls play. Following the build's manifest, a rebuild during the run
    reaches new calls once its files are installed (prompts/live.py); given hashes (tests,
    benchmarks) stay fixed."""
    lengths = archive.lengths(cfg)  # which key came once a question was heard out
    if not follow:
        return LivePrompts(cfg.campaign.name, hashes, lengths=lengths)
    manifest = cfg.path(cfg.prompts.build_dir) / MANIFEST_NAME
    if cfg.pbx.mode == "sandbox":  # every instance plays from its own sounds folder
        from ivr.telephony import sandbox_nodes
        return LivePrompts(cfg.campaign.name, hashes, load=lambda: prompt_hashes(cfg),
                           manifest=manifest,
                           installed_dirs=lambda: sandbox_nodes.sounds_dirs(cfg),
                           lengths=lengths)
    installed = Path(cfg.pbx.sounds_dir) if cfg.pbx.sounds_dir else None
    return LivePrompts(cfg.campaign.name, hashes, load=lambda: prompt_hashes(cfg),
                       manifest=manifest, installed_dir=installed, lengths=lengths)


async def run_campaign(cfg: Config, store: Store, *,
                       on_tick: Callable[[Controller], None] = lambda ctl: None,
                       on_snapshot: Callable[[Snapshot], None] | None = None,
                       clock: Clock | None = None, stop: asyncio.Event | None = None,
                       node: PbxNode | Sequence[PbxNode] | None = None,
                       hashes: dict[str, str] | None = None, standby: bool = False,
                       wait: bool = False, resume: bool = False
                       ) -> tuple[campaign_run.RunReport, Any]:
    """One run: the controller, its RunState (snapshots to `on_snapshot`), the run loop;
    `standby`: no call before the web console's Start (campaign/run_control.py); `wait`: for
    the next allowed time when nobody can be called now (campaign/window_wait.py); `resume`:
    start over the console's pause (without it the run joins it).
    The store is held for the campaign for the whole run (first: a second run of the campaign
    is refused before it touches the PBX, whose live calls it would otherwise adopt and wait
    for forever; another campaign's run may share the store)."""
    clock = clock or Clock()
    with store.hold_run(RunOwner.this_process(utcnow()), cfg.campaign.name):
        # held first: a second run refused above must not record its config's span
        record_rules(cfg, store, utcnow())  # how far back its rules read: `ivr purge` keeps it
        async with webhooks.running(cfg, store) as hooks:  # refused here without its secret
            return await _run_campaign(cfg, store, on_tick, on_snapshot, clock, stop, node,
                                       hashes, standby, hooks, wait, resume)


async def _run_campaign(cfg: Config, store: Store, on_tick: Callable[[Controller], None],
                        on_snapshot: Callable[[Snapshot], None] | None, clock: Clock,
                        stop: asyncio.Event | None, node: PbxNode | Sequence[PbxNode] | None,
                        hashes: dict[str, str] | None, standby: bool = False,
                        hooks: webhooks.Webhooks | None = None, wait: bool = False,
                        resume: bool = False) -> tuple[campaign_run.RunReport, Any]:
    # each outcome to webhooks.url, the start's reconciliation's too; offer() never waits
    ctl = await start(cfg, store, clock, node=node, hashes=hashes,
                      on_settled=[hooks.offer] if hooks is not None else [])
    stopper = Stopper(stop)  # Ctrl-C and SIGTERM: a graceful stop, then a hard one
    try:  # from here a failure (the store gone) still closes the links, servers and signals
        stopper.install()
        with collector_for_a_run():
            return await _drive(cfg, store, on_tick, on_snapshot, clock, ctl, stopper,
                                standby, wait, resume)
    finally:
        # before the signals go back to their defaults: a second Ctrl-C cuts the waits short
        await ctl.close(interrupt=stopper.again)
        stopper.close()


@contextlib.contextmanager
def collector_for_a_run() -> Iterator[None]:
    """The garbage collector tuned for a run, put back as it was after it."""
    # Modules, phone-number metadata and holiday tables live for the whole run: keep them out
    # of every garbage collection, which would otherwise rescan them as calls come and go.
    gc.freeze()
    kept = gc.get_threshold()
    gc.set_threshold(max(GC_YOUNG, kept[0]), *kept[1:])
    try:
        yield
    finally:
        gc.set_threshold(*kept)


async def _drive(cfg: Config, store: Store, on_tick: Callable[[Controller], None],
                 on_snapshot: Callable[[Snapshot], None] | None, clock: Clock,
                 ctl: Controller, stopper: Stopper, standby: bool, wait: bool,
                 resume: bool) -> tuple[campaign_run.RunReport, Any]:
    """The run itself, until it ends; the links and servers are closed by the caller."""
    # This campaign's: no round trip on the loop
    since_id = await ctl.dialer.off_loop(store.last_call_id, cfg.campaign.name)
    state = RunState(cfg.campaign.name, store, clock,
                     max_concurrent=cfg.dialer.max_concurrent,
                     nodes=ctl.dialer.node_snapshots, since_id=since_id)
    if on_snapshot is not None:
        state.subscribe(on_snapshot)
    task = asyncio.ensure_future(campaign_run.run(
        cfg, store, ctl.dialer, clock, stopper.stop, stopper.hard, state,
        on_tick=lambda: on_tick(ctl), standby=standby, wait=wait, resume=resume))
    report = await stopper.until_done(  # outcomes not yet written leave calls open
        task, open_calls=lambda: ctl.dialer.in_flight() + len(ctl.dialer.writer.pending))
    left = ctl.dialer.in_flight()
    if left:  # a hard stop gave up on them (PBX away): not a clean end
        raise Interrupted(f"stopped with {left} call(s) still open: the next `ivr run` "
                          "reconciles them")
    return report, ctl


def sandbox_sim_timing(cfg: Config) -> dict[str, float]:
    try:
        manifest = load_manifest(cfg)
    except Exception:
        return {}
    return {k: float(v["duration_s"]) for k, v in manifest["prompts"].items()}
