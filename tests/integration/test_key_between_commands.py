"""A key pressed as the question ends is heard, however slow the controller is to send its next
AGI command. res_agi reads and drops a channel's frames between two commands, so the intro
played with STREAM FILE, then WAIT FOR DIGIT, lost the 1 of a person answering in that gap
(CI, 2026-12-06: one of 1,000 simultaneous callees came out `no_input`, the machine's load
average at 85). The intro is now played and listened on in one command (GET OPTION)."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ivr.config import Config
from ivr.prompts.manifest import load_manifest
from ivr.store.sqlite import Store
from ivr.telephony.fastagi import AgiRequest

from .conftest import fiction, place_calls

# The controller's delay before the command that follows a prompt played out: longer than the
# ~1 s after the intro's end at which callee "11" presses 1 (ivr-sim.conf, IVR_SIM_AFTER_INTRO_S)
SLOW_S = 2.0


def test_a_key_pressed_as_the_intro_ends_counts_with_a_slow_controller(
        pbx_cfg: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    send = AgiRequest.send_command
    delayed: list[str] = []

    async def slow(self: AgiRequest, command: str) -> dict[str, Any]:
        if getattr(self, "_played_out", False):  # a saturated controller's reaction time
            delayed.append(command.split(" ")[0])
            await asyncio.sleep(SLOW_S)
        result = await send(self, command)
        self._played_out = command.startswith(("STREAM FILE", "GET OPTION")) and \
            result.get("result", ("",))[0] == "0"
        return result
    monkeypatch.setattr(AgiRequest, "send_command", slow)
    store = Store.memory()
    [call] = asyncio.run(place_calls(pbx_cfg, store, [fiction("11")]))
    assert delayed  # the slowness was there (the message and legal mentions played out)
    assert (call["outcome"], call["keys"]) == ("message_played", "1")
    # Pressed once the intro was heard out: the proof says so, Asterisk's endpos matching the
    # length the controller reads from the archived audio
    heard = json.loads(call["prompts_sha256"])
    assert heard["intro"] == load_manifest(pbx_cfg)["prompts"]["intro"]["sha256"]
