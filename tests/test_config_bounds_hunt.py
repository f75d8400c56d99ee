"""Config values a hunt found accepted although the campaign cannot work with them: each is
now one line naming its key (at load, so in `ivr check` too), never a traceback.

- a PBX on another machine told to reach FastAGI at a loopback or wildcard agi.host: every
  call carries agi://<agi.host>:<agi.port>, so that PBX dials itself and each person it calls
  hears only the failsafe, never the consent question;
- a webhooks.url urlsplit cannot read (traceback on every command), or with a bad port;
- a retry delay beyond a year (OverflowError in the dialer: the outcome never written);
- a prompts.max_duration_s no phone prompt needs (1e9: a misleading ffmpeg error);
- two pbx.nodes on one host:port (one Asterisk given twice its channel cap).
"""
from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import ivr
from ivr import config
from ivr.errors import ConfigError
from ivr.telephony.contract import agi_url

REPO = Path(ivr.__file__).resolve().parents[1]  # the ivr under test (a worktree's too)
YEAR_S = 366 * 86400


def refused(data: dict[str, Any], key: str) -> str:
    with pytest.raises(ConfigError) as info:
        config.from_dict(data)
    text = str(info.value)
    assert text.startswith(key) and "\n" not in text, text
    return text


def ivr_check(tmp_path: Path, data: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """`ivr check` as a user runs it, on a config file written from `data`."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", "from ivr.cli import main; main()",
                           "--config", str(path), "check"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


# -- 1. a remote PBX and a FastAGI URL only this machine can use -----------------------------

def remote_pool(agi_host: str, peers: list[str] | None = None) -> dict[str, Any]:
    """The hunt's remote.yaml: one local node, one on 10.0.0.13, both allowed to connect."""
    return {"pbx": {"mode": "external", "nodes": [
                {"name": "pbx", "host": "127.0.0.1", "port": 5038},
                {"name": "pbx3", "host": "10.0.0.13", "port": 5038}]},
            "agi": {"host": agi_host,
                    "allowed_peers": peers or ["127.0.0.1", "::1", "10.0.0.0/24"]}}


@pytest.mark.parametrize("agi_host", ["127.0.0.1", "localhost", "::1", "127.0.0.2",
                                      "0.0.0.0", "::"])
def test_a_remote_node_with_a_loopback_or_wildcard_agi_host_is_refused(agi_host: str) -> None:
    text = refused(remote_pool(agi_host), "agi.host")
    assert "pbx.nodes[1]" in text and "pbx3" in text and "10.0.0.13" in text
    assert agi_url(agi_host, 4573) in text  # the URL that node would dial: itself


def test_a_single_remote_pbx_with_a_loopback_agi_host_is_refused() -> None:
    text = refused({"pbx": {"mode": "external", "host": "10.0.0.5"},
                    "agi": {"allowed_peers": ["10.0.0.5"]}}, "agi.host")
    assert "pbx.host" in text and "10.0.0.5" in text


def test_the_hunts_remote_yaml_is_refused_by_ivr_check_in_one_line(tmp_path: Path) -> None:
    """As the hunter wrote it (allowed_peers 127.0.0.1 only): 821366e's allowed_peers check
    already refuses it; with the node's address added, agi.host is refused."""
    for peers, key in ((["127.0.0.1"], "agi.allowed_peers"),
                       (["127.0.0.1", "10.0.0.13"], "agi.host")):
        out = ivr_check(tmp_path, remote_pool("127.0.0.1", peers))
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        (line,) = out.stderr.strip().splitlines()
        assert line.startswith(f"error: {key}") and "10.0.0.13" in line, line


@pytest.mark.parametrize("data", [
    remote_pool("10.0.0.2"),  # the controller's address the node reaches (README: adding a node)
    remote_pool("ctl1.lan"),  # a host name is not resolved at load: nothing to compare
    {"pbx": {"mode": "external", "nodes": [{"name": "a", "host": "127.0.0.1", "port": 5038},
                                           {"name": "b", "host": "localhost", "port": 5039}]}},
    {"pbx": {"mode": "external", "nodes": [{"name": "a", "host": "pbx1.lan"}]},
     "agi": {"allowed_peers": ["127.0.0.1"]}},  # a host name: not resolved either
    {"pbx": {"mode": "external", "host": "10.0.0.5"},
     "agi": {"host": "10.0.0.2", "allowed_peers": ["10.0.0.5"]}},
    {"agi": {"host": "0.0.0.0"}},  # a local PBX dials 0.0.0.0 as this machine
    # The sandbox's instances all run here (`ivr pbx up`, AMI bound to 127.0.0.1).
    {"pbx": {"host": "10.0.0.5"}, "agi": {"allowed_peers": ["10.0.0.0/24"]}},
])
def test_a_fastagi_url_every_pbx_can_reach_is_accepted(data: dict[str, Any]) -> None:
    cfg = config.from_dict(data)
    assert cfg.agi.host == data.get("agi", {}).get("host", cfg.agi.host)
    assert cfg.agi.allowed_peers == data.get("agi", {}).get("allowed_peers",
                                                           cfg.agi.allowed_peers)


# A PBX on this machine reaches a network agi.host (10.0.0.2, as a pool with a remote node needs)
# from that address, not 127.0.0.1: agi.allowed_peers must hold it (built on 821366e's check).

def mixed_pool(peers: list[str]) -> dict[str, Any]:
    return remote_pool("10.0.0.2", peers)


def test_a_local_pbx_reaching_a_network_agi_host_must_be_allowed_from_it() -> None:
    text = refused(mixed_pool(["127.0.0.1", "10.0.0.13"]), "agi.allowed_peers")
    assert "pbx.nodes[0].host 127.0.0.1" in text and "add 10.0.0.2" in text
    text = refused({"agi": {"host": "192.0.2.2"}}, "agi.allowed_peers")  # the sandbox's too
    assert "pbx.host 127.0.0.1" in text and "add 192.0.2.2" in text


def test_a_local_pbx_allowed_from_the_network_agi_host_is_accepted() -> None:
    """821366e asked for 127.0.0.1 here, which admits nothing this PBX sends."""
    pool = config.from_dict(mixed_pool(["10.0.0.2", "10.0.0.13"]))
    assert pool.agi.allowed_peers == ["10.0.0.2", "10.0.0.13"] and len(pool.pbx.nodes) >= 2
    one = config.from_dict({"agi": {"host": "192.0.2.2", "allowed_peers": ["192.0.2.0/24"]}})
    assert (one.agi.host, one.agi.allowed_peers) == ("192.0.2.2", ["192.0.2.0/24"])


def test_a_connection_to_this_machines_network_address_comes_from_it() -> None:
    """What the check above rests on (Linux's local route), on this machine's own address."""
    import socket
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet sent: only the route's source address
        mine = probe.getsockname()[0]
    except OSError:
        pytest.skip("no route off loopback")
    finally:
        probe.close()
    if ipaddress.ip_address(mine).is_loopback:
        pytest.skip("no network address")
    with socket.create_server((mine, 0)) as server, \
            socket.create_connection((mine, server.getsockname()[1])):
        conn, (peer, _) = server.accept()
        conn.close()
    assert peer == mine


# -- 2, 3. webhooks.url that urlsplit cannot read, or with a bad port -------------------------

@pytest.mark.parametrize("url", ["http://[::1", "https://[nothex]/x", "https://h:99999/x",
                                 "https://h:abc/x", "https://h:0/x", "https://h:-1/x"])
def test_a_malformed_webhook_url_is_one_line_naming_it(url: str) -> None:
    text = refused({"webhooks": {"url": url}}, "webhooks.url")
    assert "https://" in text  # what to write instead


def test_ivr_check_names_a_malformed_webhook_url_without_a_traceback(tmp_path: Path) -> None:
    out = ivr_check(tmp_path, {"webhooks": {"url": "http://[::1"}})  # the hunt's wh1.yaml
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    (line,) = out.stderr.strip().splitlines()
    # the reason, never the URL itself (it may hold a password: 4d0a170)
    assert line.startswith("error: webhooks.url") and "IPv6" in line, line
    assert "[::1" not in line, line


@pytest.mark.parametrize("url", ["https://hooks.example.org:8443/ivr", "http://[::1]:8080/x",
                                 "http://127.0.0.1:65535/x", "https://hooks.example.org/ivr"])
def test_a_webhook_url_with_a_sound_port_is_accepted(url: str) -> None:
    assert config.from_dict({"webhooks": {"url": url}}).webhooks.url == url


# -- 4. retry delays and prompt lengths beyond any use ----------------------------------------

@pytest.mark.parametrize("key", ["busy", "no_answer", "congestion"])
@pytest.mark.parametrize("value", [1e12, YEAR_S + 1])
def test_a_retry_delay_beyond_a_year_is_refused(key: str, value: float) -> None:
    text = refused({"retry": {"delay_s": {key: value}}}, f"retry.delay_s.{key}")
    assert f"at most {YEAR_S}" in text


def test_a_retry_delay_of_a_year_is_accepted_and_still_a_date() -> None:
    from datetime import datetime, timedelta, timezone
    cfg = config.from_dict({"retry": {"delay_s": {"busy": YEAR_S}}})
    assert datetime.now(timezone.utc) + timedelta(seconds=cfg.retry.delay_s.busy) > \
        datetime.now(timezone.utc)


@pytest.mark.parametrize("value", [1e9, 601, 0, -5])
def test_a_prompt_length_no_phone_call_needs_is_refused(value: float) -> None:
    text = refused({"prompts": {"max_duration_s": value}}, "prompts.max_duration_s")
    assert "at most 600" in text


@pytest.mark.parametrize("value", [6, 20, 120, 600])
def test_the_prompt_lengths_in_use_are_accepted(value: float) -> None:
    assert config.from_dict({"prompts": {"max_duration_s": value}}).prompts.max_duration_s == value


def test_the_demo_config_still_loads() -> None:
    cfg = config.load(REPO / "config.yaml")
    assert cfg.prompts.max_duration_s == 120 and cfg.retry.delay_s.busy == 2


# -- 5. two nodes on one Asterisk -------------------------------------------------------------

@pytest.mark.parametrize("second", [
    {"name": "pbx2", "host": "127.0.0.1", "port": 5038},  # the hunt's dupnode.yaml
    {"name": "pbx2", "host": "localhost", "port": 5038},
    {"name": "pbx2"},  # the defaults: 127.0.0.1:5038
])
def test_two_nodes_on_one_host_and_port_are_refused(second: dict[str, Any]) -> None:
    text = refused({"pbx": {"mode": "external", "nodes": [
        {"name": "pbx", "host": "127.0.0.1", "port": 5038, "max_channels": 300},
        {**second, "max_channels": 300}]}}, "pbx.nodes[1]")
    assert "pbx2" in text and "pbx.nodes[0]" in text and "'pbx'" in text and "5038" in text


def test_nodes_on_one_host_with_their_own_ports_are_accepted() -> None:
    """The sandbox's instances (`ivr pbx up --nodes 3`): AMI on pbx.port, +1, +2."""
    cfg = config.from_dict({"pbx": {"nodes": [{"name": n, "port": 5038 + i}
                                              for i, n in enumerate(("pbx", "pbx2", "pbx3"))]}})
    assert [n.port for n in cfg.pbx.nodes] == [5038, 5039, 5040]
    config.from_dict({"pbx": {"mode": "external", "nodes": [
        {"name": "a", "host": "10.0.0.12"}, {"name": "b", "host": "10.0.0.13"}]},
        "agi": {"host": "10.0.0.2", "allowed_peers": ["10.0.0.0/24"]}})
