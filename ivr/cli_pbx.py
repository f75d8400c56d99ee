"""`ivr pbx up|down|status|cli`: the sandbox Asterisk, one instance or several (`--nodes N`,
ivr/telephony/sandbox_nodes.py). A group of its own, registered on the main `ivr` group by
ivr/cli.py; errors are IvrErrors, which the main group turns into one line."""
from __future__ import annotations

import json
import sys

import click
from rich.console import Console

from ivr.cli_guard import Seconds
from ivr.config import Config
from ivr.errors import IvrError, SandboxError

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def _sandbox_cfg(obj) -> Config:  # type: ignore[no-untyped-def]
    if obj.cfg.pbx.mode != "sandbox":
        raise IvrError("pbx.mode is external: the sandbox commands manage only the sandbox")
    return obj.cfg


@click.group("pbx")
def pbx() -> None:
    """The sandbox Asterisk (or an external one)."""


@pbx.command("up")
@click.option("--timeout", default=60.0, show_default=True, type=Seconds(),
              help="Seconds to wait for boot.")
@click.option("--nodes", default=1, show_default=True,
              help="How many Asterisk instances (AMI on pbx.port, pbx.port + 1, ...).")
@click.pass_obj
def pbx_up(obj, timeout: float, nodes: int) -> None:  # type: ignore[no-untyped-def]
    """Build (once), configure and start the sandbox Asterisk; idempotent."""
    from ivr.app import sandbox_sim_timing
    from ivr.prompts.install import install_prompts_to_pbx
    from ivr.telephony import sandbox_nodes
    cfg = _sandbox_cfg(obj)
    up = sandbox_nodes.up(cfg, nodes, timeout, sandbox_sim_timing(cfg),
                          log=lambda m: err_console.print(m, highlight=False))
    try:
        install_prompts_to_pbx(cfg)  # into every instance's own sounds folder
    except IvrError as exc:
        err_console.print(f"note: prompts not installed yet ({exc})", highlight=False)
    for i, status in up:
        name = "sandbox PBX" if i == 1 else f"sandbox PBX node {i}"
        console.print(f"{name} up (pid {status.pid}): {status.detail}", highlight=False)


@pbx.command("down")
@click.pass_obj
def pbx_down(obj) -> None:  # type: ignore[no-untyped-def]
    """Stop the sandbox Asterisk instances started by `pbx up` (and nothing else)."""
    from ivr.telephony import sandbox_nodes
    stopped = [i for i, done in sandbox_nodes.down(_sandbox_cfg(obj)) if done]
    if not stopped:
        console.print("sandbox PBX was not running")
    elif stopped == [1]:
        console.print("sandbox PBX stopped")
    else:
        console.print(f"sandbox PBX stopped ({len(stopped)} instances)")


@pbx.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def pbx_status(obj, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    """Is the sandbox running, and how busy is it? Every instance, one line each."""
    from ivr.telephony import sandbox_nodes
    found = sandbox_nodes.status(_sandbox_cfg(obj))
    first = found[0][2]
    if as_json:
        # Instance 1's fields at the top level, as before; every instance under "nodes".
        nodes = [{"node": i, "ami_port": sb.ami_port, **st.as_dict()} for i, sb, st in found]
        console.print_json(json.dumps(first.as_dict() | {"nodes": nodes}))
    else:
        for i, sb, st in found:
            state = "running" if st.running else "stopped"
            label = "" if len(found) == 1 else f"node {i} (AMI {sb.ami_port}): "
            console.print(f"{label}{state}; pid {st.pid}; AMI port open: {st.ami_port_open}; "
                          f"{st.detail}", highlight=False)
    sys.exit(0 if all(st.running for _, _, st in found) else 3)


@pbx.command("cli", context_settings={"ignore_unknown_options": True})
@click.option("--node", default=1, show_default=True, help="Which instance.")
@click.argument("command", nargs=-1, required=True)
@click.pass_obj
def pbx_cli(obj, node: int, command: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    """Run an Asterisk CLI command in the sandbox, e.g. `ivr pbx cli core show channels`."""
    from ivr.telephony import sandbox_nodes
    sandbox = sandbox_nodes.instance(_sandbox_cfg(obj), node)
    try:
        out = sandbox.cli(" ".join(command))
    except SandboxError:
        if node != 1 and not sandbox.status().running:  # not "the sandbox": this instance
            raise SandboxError(f"instance {node} is not running: run `ivr pbx up --nodes "
                               f"{node}`") from None
        raise
    console.print(out, end="", highlight=False, markup=False)
