"""The config's network checks: host and AMI user names that are safe to write into Asterisk's
files, FastAGI's admitted peers, and whether every PBX can reach the FastAGI URL its calls
carry. Apart from config_checks.py (bounds and rules of every other value) to keep both
readable; each error is one line naming its key."""
from __future__ import annotations

import ipaddress
import re
import socket
from typing import TYPE_CHECKING

from ivr.errors import ConfigError
from ivr.telephony.contract import agi_url

if TYPE_CHECKING:  # ivr.config imports config_checks, which imports this module
    from ivr.config import Config


# Hosts and AMI users are written into the sandbox's manager.conf and extensions.conf and into
# AMI actions: a newline or a bracket would add a section (an AMI user with `read = all`).
# An AMI user may hold more than a host name may (ivr@campaign): only what breaks the file.
AMI_USER = re.compile(r"[^\s\[\]=;,\\\x00-\x1f\x7f]+")
HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")  # _: compose names
IP_TEXT = re.compile(r"[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?")  # ip_address() takes any zone id


def check_host(where: str, host: str) -> None:
    try:
        ipaddress.ip_address(host)
        if IP_TEXT.fullmatch(host):
            return
    except ValueError:
        pass
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if not host or len(host) > 253 or not all(HOST_LABEL.fullmatch(x) for x in labels):
        raise ConfigError(f"{where}: {host!r} is not a host: give an IP address or a host "
                          "name, e.g. 127.0.0.1 or pbx1.example.org")


def check_ami_user(where: str, user: str) -> None:
    if not AMI_USER.fullmatch(user):
        raise ConfigError(f"{where}: {user!r} is not an AMI user name: no spaces, brackets, "
                          "=, ;, comma or backslash (it is a [section] of manager.conf)")


def validate_peers(peers: list[str]) -> None:
    """FastAGI admits these addresses or networks only: a host name cannot be matched (the
    server would refuse to start with a traceback)."""
    for i, peer in enumerate(peers):
        try:
            ipaddress.ip_network(peer, strict=False)
        except ValueError:
            raise ConfigError(f"agi.allowed_peers[{i}]: {peer!r} is not an IP address or "
                              "network: give the PBX's address, e.g. 10.0.0.5 or 10.0.0.0/24"
                              ) from None


def _ip(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None  # a host name, not resolved here (no DNS at start-up)


def _is_local_ip(ip: str) -> bool:
    """Whether this machine holds `ip` (AMI bound to the LAN IP): the kernel's local route makes
    it its own source; a UDP connect sends nothing, and no DNS (bind() takes a multicast too)."""
    addr = ipaddress.ip_address(ip)
    try:
        with socket.socket(socket.AF_INET6 if addr.version == 6 else socket.AF_INET,
                           socket.SOCK_DGRAM) as probe:
            probe.connect((ip, 9))
            return ipaddress.ip_address(probe.getsockname()[0]) == addr
    except (OSError, ValueError):
        return False  # no route to it: not here


def _here(host: str) -> bool:
    """Whether the PBX at `host`, as the controller reads it, runs on this machine."""
    return _own_machine(host) is not None or _ip(host) is not None and _is_local_ip(host)


def _pbx_sources(host: str, agi_host: str) -> tuple[str, ...] | None:
    """The address a PBX at `host` opens FastAGI to agi.host from; None for a host name. On
    this machine: a network agi.host (10.0.0.2) from that very address (the kernel's local
    route picks it); a loopback or wildcard one from the loopback of its family only (::1 for
    :: or ::1, else 127.0.0.1), so ::1 in agi.allowed_peers does not admit agi://127.0.0.1."""
    if not _here(host):
        return None if _ip(host) is None else (str(_ip(host)),)
    if _own_machine(agi_host) is None:  # an agi.host name, not resolved: either loopback
        return (str(_ip(agi_host)),) if _ip(agi_host) else ("127.0.0.1", "::1")
    return ("::1",) if ":" in agi_host else ("127.0.0.1",)


def _pbx_hosts(cfg: Config, node_label: str) -> list[tuple[str, str]]:
    """(how an error names it, host) of each PBX: pbx.host, or each of pbx.nodes labelled by
    `node_label` (formatted with its index `i` and `name`)."""
    if not cfg.pbx.nodes:
        return [("pbx.host", cfg.pbx.host)]
    return [(node_label.format(i=i, name=n.name), n.host) for i, n in enumerate(cfg.pbx.nodes)]


def check_pbx_peers(cfg: Config) -> None:
    """A PBX left out of agi.allowed_peers has every session refused: each callee would answer
    into the dialplan's failsafe, never the IVR."""
    nets = [ipaddress.ip_network(p, strict=False) for p in cfg.agi.allowed_peers]
    for where, host in _pbx_hosts(cfg, "pbx.nodes[{i}].host"):
        sources = _pbx_sources(host, cfg.agi.host)
        if sources is not None and not any(ipaddress.ip_address(a) in n
                                           for a in sources for n in nets):
            via = f" (on this machine, it reaches agi.host {cfg.agi.host} from " \
                f"{sources[0]})" if _here(host) and sources[0] != host else ""
            raise ConfigError(f"agi.allowed_peers: {where} {host} is not in it{via}, so every "
                              "FastAGI session from that PBX would be refused: add "
                              f"{sources[0]} to agi.allowed_peers")


def _own_machine(host: str) -> str | None:
    """Why `host`, read on the machine that dials it, is that machine ("a loopback address",
    "a wildcard address"); None for another address or a host name (not resolved here)."""
    if host.lower().rstrip(".") == "localhost":
        return "a loopback address"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    if addr.is_loopback:
        return "a loopback address"
    return "a wildcard address" if addr.is_unspecified else None


def check_agi_reachable(cfg: Config) -> None:
    """Every call carries one FastAGI URL, agi://<agi.host>:<agi.port> (contract.agi_url, set
    in each Originate). A PBX on another machine reads a loopback or wildcard host (0.0.0.0, ::
    connect to the local machine) as itself: it would dial its own FastAGI, and each person it
    calls would hear only the failsafe, never the consent question. agi.host is also the address
    FastAGI listens on, so it must be one the remote PBX reaches. Only an external PBX: the
    sandbox's instances all run here (`ivr pbx up`, AMI bound to 127.0.0.1)."""
    why = _own_machine(cfg.agi.host)
    if why is None or cfg.pbx.mode != "external":
        return
    for node, host in _pbx_hosts(cfg, "pbx.nodes[{i}] {name!r}"):
        if _ip(host) is None or _here(host):
            continue  # a host name (nothing to compare without DNS), or on this machine
        raise ConfigError(f"agi.host: {cfg.agi.host} is {why}, but {node} is at {host}: every "
                          f"call carries {agi_url(cfg.agi.host, cfg.agi.port)}, which that PBX "
                          "would dial on its own machine (its callees would hear only the "
                          f"failsafe): set agi.host to this controller's address that {host} "
                          "reaches (a private network or VPN)")
