"""Does each PBX node take this controller's calls? `ivr check` asks it over AMI.

The config checks cannot see the PBX: an AMI user without the originate write class (every
Originate refused), a missing `#include ivr/ivr-outbound.conf` (context not found) or a
`[globals] IVR_AGI_URL` on another port (every opposition-line call fails) all passed
`ivr check` with 0 errors. Here each node (pbx.nodes, else the `pbx:` block) is logged in to
with the run's own user and secret and asked, read-only:

- `ListCommands`: the actions this user may send (Asterisk lists only those its write
  classes allow): Originate, Hangup, CoreShowChannels; DBGetTree (the failsafes' journal
  of oppositions), which an Asterisk older than 16.28, 18.14 or 19.6 does not have;
- `ShowDialPlan Context: …`: the outbound and the opposition-line contexts exist;
- `Getvar Variable: IVR_AGI_URL` (no channel: the global): this controller's FastAGI URL;
- `Getvar Variable: IVR_OPTOUT_DIGIT`: the key the opposition line's failsafe takes besides 1,
  which should be the campaign's flow.optout_key (a warning: one line serves one campaign).

`judge` reads the replies and is pure (the unit tests need no socket); `probe_pbx` does the I/O
through AmiNode/Ami (ivr/telephony/ami.py, the one place that speaks AMI). An action the PBX
does not know (the fake PBX answers "Invalid/unknown command") or this user may not send is
"not checked", a warning, never an error. A PBX that cannot be reached is a warning where the
run copes without it (the sandbox not started, one node of a pool refusing connections: it
joins when it answers), else an error, as the run refuses to start then.
"""
from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ivr.config import SINGLE_NODE, Config, NodeConfig
from ivr.errors import PbxError
from ivr.telephony.ami_node import AmiNode, env_secret, secret_env
from ivr.telephony.contract import (CALLBACK_CONTEXT, GLOBAL_AGI_URL, GLOBAL_OPTOUT_DIGIT,
                                    OUTBOUND_CONTEXT, agi_url)
from ivr.telephony.sandbox import Sandbox

ERROR, WARNING = "error", "warning"  # preflight's severities (compliance imports telephony)
CONNECT_S = 5.0  # login; the run waits 10 s, a preflight need not
ACTION_S = 5.0
# Each action the run sends, and the manager.conf write class that allows it (manager.c).
REQUIRED_ACTIONS = {"Originate": "originate", "Hangup": "call", "CoreShowChannels": "reporting"}
WRITE_LINE = "write = originate,call,reporting"  # the sandbox's manager.conf (README)
# The failsafes' journal of oppositions (campaign/optout_journal.py): `reporting` allows it too,
# but an Asterisk older than 16.28, 18.14 or 19.6 does not have it.
JOURNAL_ACTION = "DBGetTree"
# The shipped dialplans are named after their context, copied into an `ivr/` folder (README).
CONTEXTS = (OUTBOUND_CONTEXT, CALLBACK_CONTEXT)
WHAT_FAILS = {OUTBOUND_CONTEXT: "no call could be placed into it",
              CALLBACK_CONTEXT: "the opposition line would not answer"}
UNKNOWN = "invalid/unknown command"  # manager.c's answer to an action it does not have
DENIED = "permission denied"         # …and to one the user's write classes do not allow
DEFAULT_OPTOUT_DIGIT = "9"  # ivr-callback.conf's failsafe key when GLOBAL_OPTOUT_DIGIT is unset
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD = frozenset({"0.0.0.0", "::"})

Reply = Mapping[str, Any] | None  # an AMI reply's fields; None: no reply in time


@dataclass(frozen=True)
class Finding:
    code: str
    message: str  # one line: the node, what is wrong, what to do
    severity: str = ERROR


@dataclass(frozen=True)
class Target:
    """What this controller needs of one node."""
    node: str
    user: str
    agi_url: str     # agi://agi.host:agi.port
    sandbox: bool    # pbx.mode sandbox: `ivr pbx up` writes the PBX's whole config
    optout_key: str = DEFAULT_OPTOUT_DIGIT  # flow.optout_key


@dataclass(frozen=True)
class NodeReplies:
    commands: Reply = None                                  # ListCommands
    contexts: Mapping[str, Reply] = field(default_factory=dict)  # ShowDialPlan, by context
    agi_url: Reply = None                                   # Getvar IVR_AGI_URL
    optout_digit: Reply = None                              # Getvar IVR_OPTOUT_DIGIT


def judge(target: Target, replies: NodeReplies) -> list[Finding]:
    """Every problem the node's replies show: errors, then one "not checked" warning per
    reason a reply said nothing (no reply, an action unknown to this PBX, not allowed)."""
    steps = [("the AMI user's write classes", replies.commands, _commands)]
    steps += [(f"context {c}", replies.contexts.get(c), _context) for c in CONTEXTS]
    steps += [(f"[globals] {GLOBAL_AGI_URL}", replies.agi_url, _agi_url),
              (f"[globals] {GLOBAL_OPTOUT_DIGIT}", replies.optout_digit, _optout_digit)]
    found: list[Finding] = []
    skipped: dict[str, list[str]] = {}
    for label, reply, check in steps:
        why = _unanswered(target, reply)
        if why:
            skipped.setdefault(why, []).append(label)
        elif reply is not None:
            found += check(target, label, reply)
    return found + [Finding("pbx_not_checked", f"node {target.node}: {', '.join(labels)} not "
                            f"checked: {why}", WARNING) for why, labels in skipped.items()]


def _fix(target: Target, external: str) -> str:
    """The sandbox's PBX config is written by `ivr pbx up`, from this config."""
    return "run `ivr pbx up` with this config" if target.sandbox else external


def _unanswered(target: Target, reply: Reply) -> str:
    """Why a reply says nothing about the node's setup: no reply, an action this PBX does not
    know (the fake PBX), one this user may not send; "" when it is to be judged."""
    if reply is None:
        return "no reply in time"
    message = str(reply.get("Message") or "").lower()
    if reply.get("Response") == "Success":
        return ""
    if message.startswith(DENIED):
        return (f"AMI user {target.user!r} may not ask (add reporting to its write classes to "
                "let `ivr check` ask)")
    return "this PBX does not know the AMI action" if message.startswith(UNKNOWN) else ""


def _other_error(target: Target, label: str, reply: Mapping[str, Any]) -> list[Finding]:
    return [Finding("pbx_not_checked", f"node {target.node}: {label} not checked: "
                    f"the PBX answered {reply.get('Message')!r}",
                    WARNING)]


def _commands(target: Target, label: str, reply: Mapping[str, Any]) -> list[Finding]:
    if reply.get("Response") != "Success":
        return _other_error(target, label, reply)
    missing = {a: c for a, c in REQUIRED_ACTIONS.items() if a not in reply}
    if not missing:
        # CoreShowChannels is allowed, so `reporting` is there: this Asterisk predates it.
        return [] if JOURNAL_ACTION in reply else [Finding("pbx_journal", (
            f"node {target.node}: this Asterisk has no {JOURNAL_ACTION} AMI action: people who "
            "object while no controller serves them would be told it is recorded, and never "
            "reach the opposition list; use Asterisk 16.28, 18.14, 19.6 or later"))]
    classes = ",".join(dict.fromkeys(missing.values()))
    harm = "no call can be placed" if "Originate" in missing else "calls cannot be settled"
    return [Finding("pbx_ami_user", (
        f"node {target.node}: AMI user {target.user!r} lacks the {classes} write class "
        f"({', '.join(missing)} refused: {harm}): "
        + _fix(target, f"set `{WRITE_LINE}` in its [{target.user}] section of manager.conf, "
                       "then `manager reload`")))]


def _context(target: Target, label: str, reply: Mapping[str, Any]) -> list[Finding]:
    if reply.get("Response") == "Success":
        return []
    message = str(reply.get("Message") or "")
    if not message.lower().startswith("did not find context"):
        return _other_error(target, label, reply)
    context = label.split()[-1]
    return [Finding("pbx_dialplan", (
        f"node {target.node}: context {context} not found ({WHAT_FAILS[context]}): "
        + _fix(target, f"add `#include ivr/{context}.conf` to extensions.conf, then "
                       "`dialplan reload`")))]


def _agi_url(target: Target, label: str, reply: Mapping[str, Any]) -> list[Finding]:
    if reply.get("Response") != "Success":
        return _other_error(target, label, reply)
    have, want = str(reply.get("Value") or "").strip(), target.agi_url
    if have == want:
        return []
    fix = _fix(target, f"set `{GLOBAL_AGI_URL} = {want}` in the [globals] of extensions.conf, "
                       "then `dialplan reload`")
    where = f"node {target.node}: {label}"
    if not have:
        return [Finding("pbx_agi_url", f"{where} is not set (the opposition line would reach "
                        f"no controller, only its failsafe): {fix}")]
    ours, theirs = _host_port(want), _host_port(have)
    same = _same_host(theirs, ours)
    if same and theirs is not None and ours is not None and theirs[1] == ours[1]:
        return []  # one address written two ways (localhost, 127.0.0.1)
    if same and reply.get("Listening"):  # another FastAGI here: two controllers, one PBX
        return [Finding("pbx_agi_url", f"{where} is {have}, not this controller's {want} "
                        "(agi.host:agi.port), and a FastAGI listens there: the opposition "
                        "line reaches that controller, not this one; unless it serves the "
                        f"line, {fix}", WARNING)]
    if same is False:  # another machine's FastAGI: another controller may serve the line
        return [Finding("pbx_agi_url", f"{where} is {have}, not this controller's {want} "
                        "(agi.host:agi.port): the opposition line reaches that host, not this "
                        f"controller; unless another controller serves it there, {fix}",
                        WARNING)]
    return [Finding("pbx_agi_url", f"{where} is {have}, not this controller's {want} "
                    f"(agi.host:agi.port): every opposition-line call would fail: {fix}")]


def _optout_digit(target: Target, label: str, reply: Mapping[str, Any]) -> list[Finding]:
    """The opposition line's failsafe takes 1 or this key: another campaign's key, or 9 by
    default, and a caller who presses this campaign's when no controller answers is not
    put on the list (they hear the legal mentions, with the address to write to)."""
    if reply.get("Response") != "Success":
        return _other_error(target, label, reply)
    value = str(reply.get("Value") or "").strip()
    have, want = value or DEFAULT_OPTOUT_DIGIT, target.optout_key
    if have == want:
        return []
    what = f"is {value!r}" if value else f"is not set ({DEFAULT_OPTOUT_DIGIT} then)"
    return [Finding("pbx_optout_digit", (
        f"node {target.node}: {label} {what}, not this campaign's flow.optout_key {want!r}: "
        f"a caller who presses {want} on the opposition line while no controller answers "
        "hears the legal mentions and is not put on the opposition list: "
        + _fix(target, f"set `{GLOBAL_OPTOUT_DIGIT} = {want}` in the [globals] of "
                       "extensions.conf, then `dialplan reload`")), WARNING)]


def _host_port(url: str) -> tuple[str, str] | None:
    """agi://host:port[/…] -> (host, port); None when it is not such a URL."""
    if not url.lower().startswith("agi://"):
        return None
    hostport = url[len("agi://"):].split("/", 1)[0]
    host, colon, port = hostport.rpartition(":")
    if not colon or host.count(":") and not host.startswith("["):  # bare IPv6: no port
        return hostport.strip("[]").lower(), "4573"
    return host.strip("[]").lower(), port


def _same_host(have: tuple[str, str] | None, want: tuple[str, str] | None) -> bool | None:
    """Whether both URLs name this machine's one address: None when `have` is no agi:// URL."""
    if have is None or want is None:
        return None
    a, b = have[0], want[0]
    return a == b or b in WILDCARD or (_loopback(a) and _loopback(b))


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in LOOPBACK


# -- I/O ---------------------------------------------------------------------------------------
def node_secret(cfg: Config, node: str) -> str | None:
    """The secret the run would use (app.ami_secret), without making one: None if none."""
    env = env_secret(node)
    if env:
        return env
    if cfg.pbx.mode == "sandbox":
        sandbox = Sandbox(cfg)
        if sandbox.secret_file.exists():
            return sandbox.ami_secret()
    return None


async def ask_node(node: AmiNode) -> NodeReplies:
    """The replies of a logged-in AmiNode to the probe's read-only actions."""
    ami = node.ami

    async def ask(fields: dict[str, str]) -> Reply:
        try:  # as_list=False: a context not found is one Error, no list (Asterisk 22)
            return dict(await ami.action(fields, as_list=False, timeout=ACTION_S))
        except PbxError:  # timeout, link lost: said as "no reply in time"
            return None

    commands = await ask({"Action": "ListCommands"})
    contexts = {c: await ask({"Action": "ShowDialPlan", "Context": c}) for c in CONTEXTS}
    url = await ask({"Action": "Getvar", "Variable": GLOBAL_AGI_URL})
    digit = await ask({"Action": "Getvar", "Variable": GLOBAL_OPTOUT_DIGIT})
    return NodeReplies(commands, contexts, url, digit)


async def _probe_node(cfg: Config, n: NodeConfig, want: str) -> list[Finding] | None:
    """The node's findings; None when nothing listens on its AMI port (judged by the caller,
    who knows whether other nodes answer)."""
    try:
        secret = node_secret(cfg, n.name)
    except PbxError as exc:  # a secret that is not one line: this node's finding, not the end
        return [Finding("pbx_ami_login", str(exc))]
    if secret is None:
        return [Finding("pbx_not_checked", f"node {n.name}: PBX not checked: neither "
                        f"{secret_env(n.name)} nor IVR_AMI_SECRET is set (export it, as for "
                        "`ivr run`)", WARNING)]
    node = AmiNode(n.name, n.host, n.port, n.user, secret, events=(), action_timeout=ACTION_S)
    try:
        if await node.gone():
            return None
        try:
            await node.connect(CONNECT_S)
        except PbxError as exc:  # login refused, no answer: the run refuses to start too
            return [Finding("pbx_ami_login", str(exc))]
        target = Target(n.name, n.user, want, cfg.pbx.mode == "sandbox", cfg.flow.optout_key)
        return judge(target, await _with_listening(await ask_node(node), want))
    finally:
        node.close()


async def _with_listening(replies: NodeReplies, want: str) -> NodeReplies:
    """An IVR_AGI_URL on this machine's address but another port: whether a FastAGI accepts
    there (`Listening` in its reply), since two controllers on one machine may share a PBX,
    the opposition line served by one of them; nothing listening, every such call fails."""
    reply = replies.agi_url
    if not isinstance(reply, Mapping) or reply.get("Response") != "Success":
        return replies
    have = _host_port(str(reply.get("Value") or "").strip())
    if have is None or not _same_host(have, _host_port(want)) or have == _host_port(want):
        return replies
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(have[0], int(have[1])), 1.0)
        writer.close()
        listening = True
    except (OSError, ValueError, asyncio.TimeoutError):
        listening = False
    return replace(replies, agi_url={**reply, "Listening": listening})


def unreachable(cfg: Config, n: NodeConfig, others_up: bool) -> Finding:
    """Nothing listens on the node's AMI port. The run starts without such a node of a pool
    while another answers (it joins later), and the sandbox may just not be up: warnings;
    otherwise `ivr run` would refuse, so `ivr check` does."""
    where = f"node {n.name}: AMI unreachable at {n.host}:{n.port} (connection refused)"
    if cfg.pbx.mode == "sandbox":
        return Finding("pbx_not_checked", f"PBX not checked: {where}: `ivr pbx up` starts it",
                       WARNING)
    if others_up:
        return Finding("pbx_not_checked", f"PBX not checked: {where}: the run starts without "
                       "it, it joins when it answers", WARNING)
    keys = "pbx.host/pbx.port" if n.name == SINGLE_NODE and not cfg.pbx.nodes else \
        f"pbx.nodes[{n.name}].host/port"
    return Finding("pbx_unreachable", f"{where}: start its Asterisk or correct {keys}")


async def probe_nodes(cfg: Config) -> list[Finding]:
    """Every node of the pool, at once."""
    nodes = cfg.pbx.node_list()
    want = agi_url(cfg.agi.host, cfg.agi.port)
    results = await asyncio.gather(*(_probe_node(cfg, n, want) for n in nodes))
    others_up = any(r is not None for r in results)
    found: list[Finding] = []
    for n, result in zip(nodes, results):
        found += [unreachable(cfg, n, others_up)] if result is None else result
    return found


def probe_pbx(cfg: Config) -> list[Finding]:
    """`ivr check`'s PBX findings. The sandbox is only asked once `ivr pbx up` has started it
    for this config (its pid file): a test's or an offline `ivr check` is told, not failed."""
    if cfg.pbx.mode == "sandbox":
        pidfile = Sandbox(cfg).pidfile
        if not pidfile.exists():
            return [Finding("pbx_not_checked", "PBX not checked: the sandbox is not running "
                            f"(no {pidfile}): `ivr pbx up` starts it", WARNING)]
    return asyncio.run(probe_nodes(cfg))
