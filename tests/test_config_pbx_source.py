"""`ivr check` asks agi.allowed_peers for the address a PBX really opens FastAGI from:
- a PBX on this machine dialling a loopback agi.host connects from the loopback of that host's
  family only (agi://127.0.0.1 from 127.0.0.1, agi://[::1] from ::1): the other twin in
  agi.allowed_peers admits none of its sessions, every callee would hear only the failsafe;
- a PBX addressed by one of this machine's own network addresses (AMI bound to the LAN IP) is
  on this machine: a loopback agi.host reaches it, and it connects from that loopback.
"""
from __future__ import annotations

import ipaddress
import json
import socket
import subprocess

import pytest

from ivr import config, config_network
from test_config_bounds_hunt import refused  # one line naming the key


# -- 1. a loopback PBX connects from the loopback of agi.host's family -----------------------

@pytest.mark.parametrize("agi_host,peers,source", [
    ("127.0.0.1", ["::1"], "127.0.0.1"),  # the review's peers.py
    ("::1", ["127.0.0.1"], "::1"),
    ("localhost", ["::1"], "127.0.0.1"),
    ("0.0.0.0", ["::1"], "127.0.0.1"),
    ("::", ["127.0.0.0/8"], "::1"),
])
def test_the_other_loopback_twin_does_not_admit_a_local_pbx(agi_host: str, peers: list[str],
                                                            source: str) -> None:
    text = refused({"agi": {"host": agi_host, "allowed_peers": peers}}, "agi.allowed_peers")
    assert "pbx.host 127.0.0.1" in text and f"add {source} to agi.allowed_peers" in text


@pytest.mark.parametrize("agi_host,peers", [
    ("127.0.0.1", ["127.0.0.1"]), ("::1", ["::1"]), ("::", ["::1"]),
    ("localhost", ["127.0.0.1"]), ("127.0.0.2", ["127.0.0.1"]), ("0.0.0.0", ["127.0.0.0/8"]),
])
def test_the_loopback_a_local_pbx_dials_from_is_accepted(agi_host: str,
                                                         peers: list[str]) -> None:
    cfg = config.from_dict({"agi": {"host": agi_host, "allowed_peers": peers}})
    assert (cfg.agi.host, cfg.agi.allowed_peers) == (agi_host, peers)


@pytest.mark.parametrize("dest,family", [("127.0.0.1", socket.AF_INET),
                                         ("::1", socket.AF_INET6)])
def test_a_connection_to_a_loopback_comes_from_that_loopback(dest: str, family: int) -> None:
    """What the check rests on: a FastAGI server bound to both twins sees the dialled one."""
    try:
        server = socket.create_server(("", 0), family=family, dualstack_ipv6=False)
    except OSError:
        pytest.skip(f"no {dest} on this machine")
    with server, socket.create_connection((dest, server.getsockname()[1])):
        conn, peer = server.accept()
        conn.close()
    assert peer[0] == dest


# -- 2. a PBX at one of this machine's own network addresses is on this machine --------------

def test_a_pbx_at_an_address_this_machine_holds_is_local(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setattr(config_network, "_is_local_ip", lambda ip: ip == "10.9.9.9",
                        raising=False)
    local = {"pbx": {"mode": "external", "host": "10.9.9.9"}}
    config.from_dict({**local, "agi": {"allowed_peers": ["127.0.0.1"]}})
    config.from_dict({**local, "agi": {"host": "::1", "allowed_peers": ["::1"]}})
    text = refused({**local, "agi": {"allowed_peers": ["10.9.9.9"]}}, "agi.allowed_peers")
    assert "pbx.host 10.9.9.9" in text and "from 127.0.0.1" in text and "add 127.0.0.1" in text
    # A pool with a remote node: the local one reaches the network agi.host from that address.
    pool = {"pbx": {"mode": "external", "nodes": [{"name": "a", "host": "10.9.9.9"},
                                                  {"name": "b", "host": "10.0.0.13"}]}}
    config.from_dict({**pool, "agi": {"host": "10.0.0.2",
                                      "allowed_peers": ["10.0.0.2", "10.0.0.13"]}})
    text = refused({**pool, "agi": {"host": "10.0.0.2", "allowed_peers": ["10.9.9.9", "10.0.0.13"]
                                    }}, "agi.allowed_peers")
    assert "pbx.nodes[0].host 10.9.9.9" in text and "add 10.0.0.2" in text
    # Another machine is still refused a loopback agi.host it would dial as itself.
    text = refused({"pbx": {"mode": "external", "host": "10.9.9.8"},
                    "agi": {"allowed_peers": ["10.9.9.8"]}}, "agi.host")
    assert "10.9.9.8" in text


def _own_network_address() -> str | None:
    """One non-loopback address of this machine: the source of a route off it (no packet),
    else the first global address `ip -j addr` lists."""
    for family, dest in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect((dest, 9))
            except OSError:
                continue
            mine = probe.getsockname()[0]
            if mine != dest and not ipaddress.ip_address(mine).is_loopback:
                return str(mine)
    try:
        links = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True,
                                          text=True, timeout=10).stdout or "[]")
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return next((a["local"] for link in links for a in link.get("addr_info", [])
                 if a.get("scope") == "global"), None)


def test_a_pbx_at_this_machines_real_address_reaches_a_loopback_agi_host() -> None:
    """The review's samehost.py: AMI bound to the LAN IP, FastAGI on loopback."""
    mine = _own_network_address()
    if mine is None:
        pytest.skip("this machine has no address but loopback")
    local = {"pbx": {"mode": "external", "host": mine}}
    for peers in (["127.0.0.1"], ["127.0.0.1", mine]):
        config.from_dict({**local, "agi": {"host": "127.0.0.1", "allowed_peers": peers}})
    assert config_network._is_local_ip(mine)
    text = refused({**local, "agi": {"allowed_peers": [mine]}}, "agi.allowed_peers")
    assert f"pbx.host {mine}" in text and "add 127.0.0.1" in text
    # A documentation address no machine holds is still another machine.
    assert not config_network._is_local_ip("203.0.113.77" if ":" not in mine else "2001:db8::77")
