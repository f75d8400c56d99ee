"""A second Ctrl-C (the run hangs its calls up, as the console's Hard stop and the drain timeout
do) on the real `ivr run` and the sandbox Asterisk: a consent cut during the message and a call
still ringing are `error`, retried; an opposition made before it stays."""
from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from ivr import app
from ivr.config import Config

from .conftest import fiction
from .test_stop_and_choice import import_numbers, key_seen, query, write_cfg


def test_a_second_ctrl_c_retries_the_consent_it_cut_and_the_ringing_call(
        pbx_cfg: Config, tmp_path: Path) -> None:
    assert app.sandbox_sim_timing(pbx_cfg)["message"] >= 1.5  # room to cut it
    consent, optout, ringing = (fiction(s, block="95") for s in ("10", "60", "71"))
    cfg_file = write_cfg(pbx_cfg, tmp_path, dialer__max_concurrent=3,
                         dialer__ring_timeout_s=30)
    import_numbers(cfg_file, [consent, optout, ringing])
    db = tmp_path / "itest.db"

    async def scenario() -> str:
        proc = await asyncio.create_subprocess_exec(
            "ivr", "--config", str(cfg_file), "run", env=dict(os.environ),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            await key_seen(pbx_cfg, "1")
            await asyncio.sleep(0.5)  # the message is playing
            proc.send_signal(signal.SIGINT)
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGINT)  # the second: hang every call up
            _, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
        return err.decode()
    err = asyncio.run(scenario())
    calls = {c["number"]: c for c in query(db, "SELECT * FROM calls ORDER BY id")}
    people = {p["number"]: p for p in query(db, "SELECT * FROM contacts")}
    assert set(calls) == {consent, optout, ringing}, (calls, err)
    assert (calls[consent]["outcome"], calls[consent]["stage"]) == \
        ("error", "hard-stop-message"), (calls, err)
    assert (calls[ringing]["outcome"], calls[ringing]["stage"]) == ("error", "hard-stop"), calls
    for number in (consent, ringing):  # called again by the next run
        assert calls[number]["retry_at"] is not None and people[number]["status"] == "pending"
    assert calls[optout]["outcome"] == "opted_out" and people[optout]["status"] == "opted_out"
    kinds = {c["number"]: c["kind"] for c in query(db, "SELECT number, kind FROM consents")}
    assert kinds == {consent: "consent", optout: "optout"}  # the consent stays recorded
