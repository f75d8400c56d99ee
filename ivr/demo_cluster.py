"""`ivr demo --nodes N --controllers M` (issue 14 item 5): the private PostgreSQL, N sandbox
Asterisk nodes, the demo's fiction numbers, M `ivr run` processes on one campaign (each its own
FastAGI port), then which node and which controller placed each call, and the totals."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import yaml
from rich.console import Console

from ivr.config import Config, load
from ivr.errors import IvrError

DEMO_DB = "demo"  # the demo's own database in the private cluster, fresh each time
BLOCKS = 3  # each fiction behaviour three times (+33 1 99 00 BB SS): enough calls to spread
MAX_CONTROLLERS = 8
RUN = "from ivr.cli import main; main()"  # `ivr` of this very interpreter


def run_cluster_demo(cfg: Config, config_path: Path, console: Console, nodes: int,
                     controllers: int) -> Config:
    """The five steps of the demo, on PostgreSQL with `nodes` nodes and `controllers` runs.
    Returns the first controller's config (the demo's store), for `--web`."""
    from ivr.app import sandbox_sim_timing
    from ivr.prompts.install import install_prompts_to_pbx
    from ivr.store.factory import cluster_for
    from ivr.prompts.build import build_prompts
    from ivr.telephony import sandbox_nodes

    if not 1 <= controllers <= MAX_CONTROLLERS:
        raise IvrError(f"--controllers {controllers}: use 1 to {MAX_CONTROLLERS} processes")
    say: Callable[[str], None] = lambda m: console.print(m, highlight=False)  # noqa: E731
    say("1/5 building the prompts (offline TTS)")
    build_prompts(cfg, log=lambda m: say(f"    {m}"))
    say("2/5 starting the private PostgreSQL and the sandbox nodes")
    cluster = cluster_for(cfg)
    st = cluster.up()
    os.environ["PGPASSFILE"] = str(cluster.pgpass_file)  # the controllers' password, via libpq
    cluster.drop_database(DEMO_DB)
    cluster.create_database(DEMO_DB)
    url = cluster.url_for(DEMO_DB)
    say(f"    PostgreSQL pid {st.pid}: store.url {url}")
    for i, status in sandbox_nodes.up(cfg, nodes, 60, sandbox_sim_timing(cfg), log=say):
        say(f"    node {node_name(i)}: Asterisk pid {status.pid}, AMI port {cfg.pbx.port + i - 1}")
    install_prompts_to_pbx(cfg)  # into every node's own sounds folder
    files = controller_files(cfg, config_path, url, nodes, controllers)
    demo_cfg = load(files[0])
    store = _import(demo_cfg, say)
    say(f"4/5 running {controllers} controllers on campaign {cfg.campaign.name!r}")
    pids = _run_controllers(files, say)
    say("5/5 who placed each call")
    names = {str(k["id"]): pids.get(int(k["pid"]), str(k["id"]))
             for k in store.controllers(cfg.campaign.name)}
    print_calls(store.recent_calls(cfg.campaign.name, limit=100_000)[::-1], say, names)
    from ivr.records import report
    console.print(report.render(report.summary(store, cfg.campaign.name)))
    say(f"store.url: {url}  (export PGPASSFILE={cluster.pgpass_file}; "
        f"configs in {files[0].parent})")
    return demo_cfg


def node_name(index: int) -> str:
    return "pbx" if index == 1 else f"pbx{index}"


def controller_files(cfg: Config, config_path: Path, url: str, nodes: int,
                     controllers: int) -> list[Path]:
    """One config per controller beside the sandbox: the operator's config with the demo's
    store, the node pool and its own FastAGI port (agi.port + i); paths made absolute."""
    raw: dict[str, Any] = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    out = cfg.path(cfg.pbx.sandbox_dir) / "demo-cluster"
    out.mkdir(parents=True, exist_ok=True)
    # Every controller hashes the opposition list with the same key: the operator's, or one
    # the demo keeps beside its configs.
    key = cfg.path(cfg.store.optout_key_file) if cfg.store.optout_key_file else out / "optout.key"
    raw["store"] = {"url": url, "optout_key_file": str(key)}
    prompts = raw.setdefault("prompts", {})
    for key in ("sources_dir", "build_dir", "archive_dir"):  # the folders the config names
        if getattr(cfg.prompts, key):
            prompts[key] = str(cfg.path(getattr(cfg.prompts, key)))
    pbx = raw.setdefault("pbx", {})
    pbx["sandbox_dir"] = str(cfg.path(cfg.pbx.sandbox_dir))
    pbx["nodes"] = [{"name": node_name(i), "host": cfg.pbx.host, "port": cfg.pbx.port + i - 1,
                     "user": cfg.pbx.user} for i in range(1, nodes + 1)]
    files = []
    for i in range(controllers):
        raw.setdefault("agi", {})["port"] = cfg.agi.port + i
        path = out / f"controller-{i + 1}.yaml"
        path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        files.append(path)
    return files


def _import(cfg: Config, say: Callable[[str], None]) -> Any:
    from ivr.app import open_store
    from ivr.demo import import_demo_list
    store = open_store(cfg)
    say("3/5 importing fiction numbers")
    import_demo_list(cfg, store, say, blocks=BLOCKS)
    return store


def _run_controllers(files: list[Path], say: Callable[[str], None]) -> dict[int, str]:
    """`ivr run` per config, at once; each one's last line (its run summary) when it ends.
    Returns each process's name (its config's) by pid: the controllers table keeps the pid.
    When one fails, the others are stopped (SIGTERM: calls in flight finish) and waited for:
    the demo never leaves a controller dialling behind it."""
    procs: list[subprocess.Popen[bytes]] = []
    failed = ""
    try:
        for f in files:
            with f.with_suffix(".log").open("w") as log:  # the child keeps its own copy
                procs.append(subprocess.Popen([sys.executable, "-c", RUN, "--config", str(f),
                                               "run"], stdout=log, stderr=subprocess.STDOUT))
            say(f"    controller {f.stem}: pid {procs[-1].pid}, log {f.with_suffix('.log')}")
        running = dict(zip(procs, files))
        while running:  # in the order they end: any one failing stops the others at once
            for p, f in list(running.items()):
                if (code := p.poll()) is None:
                    continue
                del running[p]
                lines = f.with_suffix(".log").read_text(errors="replace").strip().splitlines()
                say(f"    {f.stem} ended ({code}): {lines[-1] if lines else '(no output)'}")
                if code != 0 and not failed:
                    failed = f"{f.stem} failed (exit {code}): see {f.with_suffix('.log')}"
                    _stop(procs)
            time.sleep(0.2)
    except KeyboardInterrupt:
        # The terminal's Ctrl-C reached every controller too (one process group): each drains
        # its calls. A SIGTERM now would count as a second signal and hang them up.
        _wait(procs)
        raise
    finally:
        _stop(procs)  # an error above: the others too
        _wait(procs)
    if failed:
        raise IvrError(failed)
    return {p.pid: f.stem for f, p in zip(files, procs)}


def _wait(procs: list[subprocess.Popen[bytes]]) -> None:
    """Wait for every controller; another Ctrl-C meanwhile stops them at once, as it would a
    lone `ivr run`."""
    while True:
        try:
            for p in procs:
                p.wait()
            return
        except KeyboardInterrupt:
            _stop(procs)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()


def print_calls(calls: list[dict[str, Any]], say: Callable[[str], None],
                names: dict[str, str]) -> None:
    """One line per call (node, controller), then the totals per node and per controller.
    `names`: controller id -> the name the demo gave its process."""
    names = {str(c["controller"]): names.get(str(c["controller"]), str(c["controller"]))
             for c in calls}
    for c in calls:
        say(f"    {c['number']}  attempt {c['attempt']}  node {c['node'] or '-':5}  "
            f"{names[str(c['controller'])]} ({c['controller']})  {c['outcome']}")
    for title, counts in (("node", Counter(str(c["node"]) for c in calls)),
                          ("controller", Counter(names[str(c["controller"])] for c in calls))):
        say(f"    per {title}: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
