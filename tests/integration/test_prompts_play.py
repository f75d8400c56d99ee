"""Issue 3.5: the sandbox Asterisk plays every built prompt, for about as long as the manifest
says."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from ivr.telephony.contract import SOUNDS_DIR
from ivr.telephony.fastagi import AgiApplication, AgiRequest, StreamResult, serve
from ivr.config import Config
from ivr.prompts.build import load_manifest

from .conftest import fiction, originate_and_wait

PORT = 4593


async def _play_all(cfg: Config, keys: list[str]) -> dict[str, tuple[StreamResult, float]]:
    played: dict[str, tuple[StreamResult, float]] = {}
    done = asyncio.Event()

    async def handler(req: AgiRequest) -> None:
        for key in keys:
            t0 = time.monotonic()
            res = await req.stream_file(f"{SOUNDS_DIR}/{key}")
            played[key] = (res, time.monotonic() - t0)
        done.set()
    agi = AgiApplication()
    agi.add_route("ivr", handler)
    server = await serve(agi, "127.0.0.1", PORT)
    try:
        # The silent callee (30) stays on the line while everything plays.
        await originate_and_wait(cfg, {
            "Channel": f"Local/{fiction('30')}@ivr-sim", "Context": "ivr-outbound",
            "Exten": "s", "ChannelId": "play-all",
            "Variable": [f"IVR_AGI=agi://127.0.0.1:{PORT}", "CALL_ID=0", "IVR_AMD=0"]},
            timeout=120)
        assert done.is_set()
    finally:
        server.close()
        await server.wait_closed()
    return played


def test_every_prompt_plays_for_its_manifest_duration(pbx_cfg: Config) -> None:
    manifest: dict[str, Any] = load_manifest(pbx_cfg)["prompts"]
    played = asyncio.run(_play_all(pbx_cfg, sorted(manifest)))
    assert sorted(played) == sorted(manifest)
    for key, (res, seconds) in played.items():
        assert not res.failed and res.digit is None and res.endpos > 0, (key, res)
        expected = manifest[key]["duration_s"]
        assert abs(seconds - expected) < 0.25 + 0.05 * expected, (key, seconds, expected)
        # endpos counts samples at 8 kHz: the whole file was streamed
        assert abs(res.endpos / 8000 - expected) < 0.1, (key, res.endpos)
