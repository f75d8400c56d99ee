"""The opposition line takes the key every outbound intro teaches ("appuyez sur 9 à tout
moment") as well as the notice's 1; a caller who pressed another key, or none, is asked once
more and then hears the legal mentions (the written way to object). Found on the sandbox
(2026-12-03): a 9 during or after the notice hung up within 10 ms, nothing recorded."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from ivr.callflow.agi_callback import CallbackHandler
from ivr.telephony.contract import SOUNDS_DIR
from ivr.telephony.fastagi import AgiHangup, StreamResult
from test_agi_ivr import CALLER, DONE_SET, OPTED, SECRET, Channel, OptOuts, _callback

# The notice and the listening after it: one command, since res_agi drops a key pressed
# between two, and a key that is not an escape digit (so another key reads as none)
NOTICE = ("get_option", (f"{SOUNDS_DIR}/callback_notice", "19", 4000))
LEGAL = ("stream_file", (f"{SOUNDS_DIR}/legal", "19"))
CONFIRM = ("stream_file", (f"{SOUNDS_DIR}/optout_confirm", ""))
PLAYED = StreamResult(endpos=10)


def after(key: str) -> StreamResult:
    """The notice heard out, then `key` while listening."""
    return StreamResult(digit=key, endpos=8000)


@pytest.mark.parametrize("script,calls", [
    ((StreamResult(digit="9", endpos=10), PLAYED), [NOTICE]),               # 9 in the notice
    ((after("9"), PLAYED), [NOTICE]),                                       # 9 just after it
    ((PLAYED, StreamResult(digit="9", endpos=10), PLAYED), [NOTICE, NOTICE]),  # when re-asked
    ((PLAYED, after("1"), PLAYED), [NOTICE, NOTICE]),                       # 1 when re-asked
    ((PLAYED, PLAYED, StreamResult(digit="9", endpos=10), PLAYED),          # in the legal
     [NOTICE, NOTICE, LEGAL]),
])
def test_key_9_or_1_records_the_opposition(script: tuple[Any, ...], calls: list) -> None:
    ch = Channel(*script, headers=CALLER)
    assert _callback(ch) == OPTED
    assert ch.calls == calls + [CONFIRM, DONE_SET]


def test_a_caller_who_does_not_confirm_is_asked_again_then_hears_the_legal_mentions() -> None:
    ch = Channel(PLAYED, PLAYED, PLAYED, headers=CALLER)
    assert _callback(ch) == []
    assert ch.calls == [NOTICE, NOTICE, LEGAL, DONE_SET]


def test_legal_mentions_cut_short_leave_the_dialplan_its_failsafe() -> None:
    ch = Channel(PLAYED, PLAYED, StreamResult(failed=True), headers=CALLER)
    assert _callback(ch) == [] and DONE_SET not in ch.calls


def test_a_hangup_while_asked_again_records_nothing() -> None:
    """Hung up while listening after the notice (res_agi reads it as no key): the notice
    asked again finds the channel gone (511)."""
    ch = Channel(PLAYED, AgiHangup("gone"), headers=CALLER)
    assert _callback(ch) == [] and DONE_SET not in ch.calls


def test_the_line_takes_the_configured_optout_key() -> None:
    """flow.optout_key set to 0: the line takes 0 (the outbound intro taught it), not 9."""
    store = OptOuts()
    handler = CallbackHandler(store, "FR", lambda: datetime.now(timezone.utc),  # type: ignore
                              timeout_s=4, secret=SECRET, optout_key="0")
    ch = Channel(StreamResult(digit="0", endpos=10), PLAYED, headers=CALLER)
    asyncio.run(handler(ch))
    assert store.added == OPTED
    assert ch.calls[0] == ("get_option", (f"{SOUNDS_DIR}/callback_notice", "10", 4000))


def test_ivr_serve_and_run_give_the_line_the_configured_optout_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ivr serve` (serve_forever) and a run's FastAGI routes (agi_app) build the line with
    flow.optout_key: a caller pressing the configured 8 is opted out."""
    from ivr import app as ivr_app, callback_line
    from test_callback_line_lifecycle import SECRET as LINE_SECRET, env_lines, free_port
    from conftest import make_config, store_at
    monkeypatch.setenv("IVR_CALLBACK_SECRET", LINE_SECRET)
    port = free_port()
    cfg = make_config(tmp_path, agi={"host": "127.0.0.1", "port": port},
                      flow={"optout_key": "8"})
    store = store_at(tmp_path / "ivr.db")

    async def press_8(number: str) -> list[str]:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(env_lines(number))
        commands = []
        while line := await r.readline():
            commands.append(line.decode().strip())
            w.write(b"200 result=56 endpos=4000\n" if "callback_notice" in commands[-1]
                    else b"200 result=0 endpos=8000\n")
        w.close()
        return commands

    async def main() -> list[str]:
        stop = asyncio.Event()
        task = asyncio.create_task(callback_line.serve_forever(cfg, store, stop=stop))
        await asyncio.sleep(0.3)
        commands = await press_8("+33611111111")
        await asyncio.sleep(0.3)
        stop.set()
        await task
        return commands
    commands = asyncio.run(main())
    assert commands[0].startswith('GET OPTION ivr/callback_notice "18" ')
    assert store.is_opted_out("+33611111111")

    async def in_a_run() -> list[str]:
        from ivr.telephony.fastagi import serve
        from test_dialer import HASHES, rig
        async with rig(tmp_path / "run", {}) as r:
            r.cfg.flow.optout_key = "8"
            server = await serve(ivr_app.agi_app(r.cfg, r.store, r.dialer, r.clock, HASHES),
                                 "127.0.0.1", port)
            try:
                commands = await press_8("+33199000022")
                await r.until(lambda: r.store.is_opted_out("+33199000022"))
            finally:
                server.close()
            return commands
    (tmp_path / "run").mkdir()
    assert asyncio.run(in_a_run())[0].startswith('GET OPTION ivr/callback_notice "18" ')
