"""Who may open a FastAGI session: the configured peers (agi.allowed_peers), and the nodes'
addresses whose refusals are always told (ivr/telephony/fastagi.py's AgiApplication).

FastAGI has no authentication of its own (the attempt's token, agi_auth.py, is checked once the
headers are in): the peer's address is the first gate, before a byte is read."""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(peers: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(p, strict=False) for p in peers]


def addresses(hosts: Iterable[str]) -> set[str]:
    """The IP addresses among `hosts` (localhost as its two); a host name is not resolved
    here (no DNS at start-up): its refusals share the common log budget."""
    out: set[str] = set()
    for host in hosts:
        if host.lower() == "localhost":
            out |= {"127.0.0.1", "::1"}
            continue
        try:
            out.add(str(ipaddress.ip_address(host)))
        except ValueError:
            pass
    return out


def peer_allowed(peer: Any, allowed: list[Network]) -> bool:
    """Only configured peers (the PBX) may open a FastAGI session."""
    if not peer:
        return False
    try:
        addr = ipaddress.ip_address(peer[0])
    except ValueError:
        return False
    return any(addr in net for net in allowed)
