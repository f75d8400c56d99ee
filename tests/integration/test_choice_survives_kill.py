"""A "no" (key 2) or an opposition (key 9) survives the controller's SIGKILL mid-call, through
the real `ivr run` on the sandbox: the choice is stored as its key is pressed, the restart's
reconciliation keeps it as the call's final outcome with its proof row (written once), and the
person is not called again (found on the sandbox, 2026-12-03: `error`/`reconciled`, no proof,
a second attempt)."""
from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from ivr import app
from ivr.config import Config
from ivr.telephony.ami import Ami
from ivr.telephony.sandbox import MONITOR_EVENTS, Sandbox

from .conftest import fiction
from .test_stop_and_choice import import_numbers, ivr, query, start_run, write_cfg


async def _kill_after_key(cfg: Config, cfg_file: Path, digit: str, after_s: float) -> None:
    """Start `ivr run`; SIGKILL it `after_s` after the callee's key reached the IVR; return
    once the IVR channel is gone (the dialplan's failsafe ends it)."""
    mon = Ami(cfg.pbx.host, cfg.pbx.port, Sandbox(cfg).monitor_user, app.ami_secret(cfg),
              events=MONITOR_EVENTS)
    await mon.connect()
    proc = start_run(cfg_file)
    try:
        t0, killed = time.monotonic(), False
        while time.monotonic() - t0 < 60:
            ev = await mon.next_event(0.1)
            if ev is None:
                continue
            if not killed and ev.get("Event") == "DTMFEnd" and ev.get("Digit") == digit:
                await asyncio.sleep(after_s)
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                killed = True
            uid = str(ev.get("Uniqueid", ""))
            if killed and ev.get("Event") == "Hangup" and uid.startswith("ivr-") and \
                    not uid.endswith("-2"):
                return
        raise AssertionError("the call never got its key, or never ended after the kill")
    finally:
        mon.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize("suffix,digit,after_s,outcome,kind,status", [
    ("20", "2", 1.0, "declined_partial", "refusal", "done"),    # killed in the legal mentions
    ("60", "9", 0.3, "opted_out", "optout", "opted_out"),       # killed in the confirmation
])
def test_a_choice_survives_a_sigkilled_controller(pbx_cfg: Config, tmp_path: Path, suffix: str,
                                                  digit: str, after_s: float, outcome: str,
                                                  kind: str, status: str) -> None:
    cfg_file = write_cfg(pbx_cfg, tmp_path, dialer__amd=False)
    import_numbers(cfg_file, [fiction(suffix, block="91")])
    db = tmp_path / "itest.db"
    asyncio.run(_kill_after_key(pbx_cfg, cfg_file, digit, after_s))
    # Stored at the key: the proof is there before anything settles the call.
    assert [(c["kind"], c["key"]) for c in query(db, "SELECT kind, key FROM consents")] == \
        [(kind, digit)]
    again = ivr(cfg_file, "run", timeout=120)  # the restart reconciles the attempt left open
    assert again.returncode == 0, again.stderr[-2000:]
    calls = query(db, "SELECT * FROM calls")
    assert [(c["attempt"], c["outcome"], c["stage"], c["keys"]) for c in calls] == \
        [(1, outcome, "reconciled", digit)]  # kept, and not called again
    assert calls[0]["retry_at"] is None
    proofs = query(db, "SELECT call_id, kind, key, prompt_key FROM consents")
    assert [(p["call_id"], p["kind"], p["key"]) for p in proofs] == [(calls[0]["id"], kind, digit)]
    assert query(db, "SELECT status FROM contacts")[0]["status"] == status
