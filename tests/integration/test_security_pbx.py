"""Issue 7.3 against the sandbox: least-privilege AMI user, secrets kept out of logs and the
store, FastAGI bound to loopback."""
from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from ivr import app
from ivr.telephony.ami import WANTED_EVENTS, Ami
from ivr.config import Config
from ivr.telephony.contract import SIM_SPEAKER_CONTEXT, SIM_VAR_SPEAKER_WAIT
from ivr.errors import PbxError
from ivr.store.sqlite import Store

from .conftest import fiction, place_calls


async def _try(cfg: Config, action: dict) -> dict:
    ami = Ami(cfg.pbx.host, cfg.pbx.port, cfg.pbx.user, app.ami_secret(cfg))
    await ami.connect()
    try:
        return dict(await ami.action(action))
    finally:
        ami.close()


@pytest.mark.parametrize("action", [
    {"Action": "Command", "Command": "core show version"},           # CLI over AMI
    {"Action": "Originate", "Channel": "Local/s@ivr-sim", "Application": "System",
     "Data": "touch /tmp/pwned", "Async": "true"},                     # shell via Originate
    {"Action": "GetConfig", "Filename": "manager.conf"},               # read secrets
    {"Action": "Reload"},                                              # system class
])
def test_ami_user_cannot_do_what_it_does_not_need(pbx_cfg: Config, action: dict) -> None:
    resp = asyncio.run(_try(pbx_cfg, action))
    assert resp["Response"] == "Error"
    message = resp.get("Message", "").lower()
    assert any(word in message for word in ("permission", "privilege", "forbidden")), message


def test_ami_user_can_do_what_it_needs(pbx_cfg: Config) -> None:
    resp = asyncio.run(_try(pbx_cfg, {"Action": "CoreShowChannels"}))
    assert resp["Response"] == "Success"


def test_ami_user_receives_only_the_events_the_controller_reads(pbx_cfg: Config) -> None:
    """Event filters in manager.conf: a callee pressing a key sends no DTMF event, nor any
    channel chatter (Newchannel, VarSet, Newexten...), to the controller's user."""
    async def watch() -> set[str]:
        ami = Ami(pbx_cfg.pbx.host, pbx_cfg.pbx.port, pbx_cfg.pbx.user,
                  app.ami_secret(pbx_cfg))
        ami.wanted = ALL_EVENTS  # keep whatever Asterisk sends, to see what gets through
        await ami.connect()
        seen: set[str] = set()
        try:
            await ami.action({"Action": "Originate", "Channel": f"Local/{fiction('10')}@ivr-sim",
                              "Context": SIM_SPEAKER_CONTEXT, "Exten": "s", "Priority": "1",
                              # the callee hears it and presses 1: DTMF chatter
                              "Variable": f"{SIM_VAR_SPEAKER_WAIT}=0",
                              "Async": "true", "ChannelId": "filter-1", "Timeout": "5000"})
            while (ev := await ami.next_event(10)) is not None:
                seen.add(ev.get("Event", ""))
                if ev.get("Event") == "Hangup" and ev.get("Uniqueid") == "filter-1":
                    break
        finally:
            ami.close()
        return seen
    seen = asyncio.run(watch())
    assert {"OriginateResponse", "Hangup"} <= seen  # the call happened and was seen
    assert seen <= WANTED_EVENTS, seen - WANTED_EVENTS


class _Everything(frozenset):  # type: ignore[type-arg]
    def __contains__(self, item: object) -> bool:
        return True


ALL_EVENTS = _Everything()


def test_wrong_secret_is_a_clear_error(pbx_cfg: Config) -> None:
    async def go() -> None:
        await Ami(pbx_cfg.pbx.host, pbx_cfg.pbx.port, pbx_cfg.pbx.user, "wrong").connect(5)
    with pytest.raises(PbxError, match="login refused"):
        asyncio.run(go())


def test_secrets_never_reach_logs_or_the_store(pbx_cfg: Config,
                                               caplog: pytest.LogCaptureFixture) -> None:
    secret = app.ami_secret(pbx_cfg)
    optout_key = b"optout-key-" + secret.encode()[:8]
    store = Store(Store.memory().db, optout_key)
    with caplog.at_level(logging.DEBUG):
        asyncio.run(place_calls(pbx_cfg, store, [fiction("60", block="70")]))
    assert store.is_opted_out(fiction("60", block="70"))   # the call really ran
    assert caplog.records                                   # and was logged at DEBUG
    assert secret not in caplog.text
    dump = "\n".join(store.db.conn.iterdump())
    assert secret not in dump and optout_key.decode() not in dump


def test_fastagi_listens_on_loopback_only(pbx_cfg: Config) -> None:
    async def go() -> list[str]:
        ctl = await app.start(pbx_cfg, Store.memory())
        try:
            return [s.getsockname()[0] for s in ctl.server.sockets]
        finally:
            await ctl.close()
    assert asyncio.run(go()) == ["127.0.0.1"]
    with pytest.raises(OSError):  # and not on the machine's other addresses
        with socket.create_connection((socket.gethostbyname(socket.gethostname()),
                                       pbx_cfg.agi.port), timeout=1):
            pass


def test_the_sandbox_logs_and_astdb_are_not_for_other_users(pbx_cfg: Config) -> None:
    """Found by a probe: Asterisk writes its logs and AstDB 0644 in 0755 folders, and user
    nobody read 9,548 log lines naming callees and could open the failsafes' journal of
    people who objected."""
    import stat
    from ivr.telephony.sandbox import Sandbox
    from ivr.telephony.sandbox_root import in_root
    box = Sandbox(pbx_cfg)
    for rel in ("var/log/asterisk", "var/lib/asterisk"):
        mode = stat.S_IMODE(in_root(box.root, rel).stat().st_mode)
        assert mode & 0o077 == 0, (rel, oct(mode))
    assert stat.S_IMODE(box.logfile.stat().st_mode) & 0o077 == 0
