"""Found in review (an administrator on their own Asterisk): the shipped config's sandbox
settings carried to `pbx.mode: external` went unsaid by `ivr check`. Every call dialled the
sandbox's simulated callees (`@ivr-sim`, a context a real Asterisk does not have), a real phone
was given up after 10 s of ringing, and with no `pbx.sounds_dir` nothing installed the prompts
or saw them missing: answered callees heard silence, the legal mentions too. Each is now a
warning of every check and run, in external mode only."""
from __future__ import annotations

from pathlib import Path

from conftest import make_config
from ivr.compliance import preflight


def _codes(cfg: object) -> list[str]:
    return [v.code for v in preflight.preflight(cfg) if v.severity == "warning"]  # type: ignore[arg-type]


def test_the_sandbox_settings_on_an_external_pbx_are_each_said(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, pbx={"mode": "external"},
                      dialer={"ring_timeout_s": 10, "dial_string": "Local/{number}@ivr-sim"})
    found = {v.code: v.message for v in preflight.preflight(cfg)}
    assert found["dial_string_sandbox"].startswith(
        "dialer.dial_string is 'Local/{number}@ivr-sim': the sandbox's simulated callees")
    assert found["ring_timeout_short"].startswith("dialer.ring_timeout_s is 10 s, a demo's value")
    assert "use at least 20 (the default is 30)" in found["ring_timeout_short"]
    assert found["sounds_dir_unset"].startswith("pbx.sounds_dir is not set: `ivr prompts "
                                                "build` cannot install the prompts")
    assert all(v.severity == "warning" for v in preflight.preflight(cfg)
               if v.code in ("dial_string_sandbox", "ring_timeout_short", "sounds_dir_unset"))


def test_a_real_setup_and_the_sandbox_are_not_warned(tmp_path: Path) -> None:
    real = make_config(tmp_path, pbx={"mode": "external", "sounds_dir": str(tmp_path)},
                       dialer={"ring_timeout_s": 30, "dial_string": "PJSIP/{number}@carrier"})
    sandbox = make_config(tmp_path, pbx={"mode": "sandbox"},
                          dialer={"ring_timeout_s": 10, "dial_string": "Local/{number}@ivr-sim"})
    for cfg in (real, sandbox):
        assert not {"dial_string_sandbox", "ring_timeout_short", "sounds_dir_unset"} & \
            set(_codes(cfg))
