"""A running campaign never plays a build made for other flow keys than its own
(ivr/prompts/manifest.py `flow_keys`, ivr/prompts/live.py).

Found mid-run (2026-12-03, /tmp/hunt-midrun/keyswap_repro.py): an operator swapped flow.yes_key
and flow.no_key in config.yaml, rewrote the intro ("Pour oui, appuyez sur 2. Pour non, appuyez
sur 1.") and ran `ivr prompts build` during `ivr run`. The run took the new intro but kept
reading the keys it started with: a callee pressing 1 to refuse was stored as a consent whose
proof was the new intro. Same for optout_key (an objection lost) and slots (a wrong slot).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO, Backend, make_config
from ivr import app, config
from ivr.prompts.install import install_prompts_to_pbx
from ivr.campaign import run as campaign_run
from ivr.campaign.clock import Clock
from ivr.campaign.state import RunState
from ivr.compliance.campaign_check import build_violations
from ivr.config import Config
from ivr.errors import PromptError
from ivr.prompts.build import MANIFEST_NAME, build_prompts
from ivr.prompts.live import CHECK_EVERY_S, LivePrompts
from ivr.prompts.manifest import config_fingerprint, stale_problem
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.contract import prompt_sound
from ivr.telephony.fake_pbx import FakePbx, answer
from test_dialer import SECRET, add_contacts, fiction, free_port

SLOTS = {"1": "morning", "2": "afternoon", "3": "evening"}
OLD = {"intro": "a" * 64, "legal": "b" * 64}
NEW = {"intro": "c" * 64, "legal": "b" * 64}
LATER = {"intro": "d" * 64, "legal": "b" * 64}


# ------------------------------------------------------------ the live follower, unit

def small_cfg(base: Path, **flow: Any) -> Config:
    return make_config(
        base, campaign={"name": "camp", "caller_id": "+33162000000"},
        flow={"yes_key": "1", "no_key": "2", "optout_key": "9", "slots": dict(SLOTS)} | flow,
        prompts={"engine": "espeak", "build_dir": "build",
                 "items": {"intro": {"text": "Bonjour."}, "legal": {"text": "Mentions."}}},
        pbx={"mode": "external", "sounds_dir": str(base / "sounds")})


class Rig:
    """A build dir whose manifest the test writes as `ivr prompts build` of `made_by` would,
    and a LivePrompts wired as app.live_prompts wires it for an external PBX."""

    def __init__(self, tmp: Path, run_cfg: Config) -> None:
        self.t, self.writes = 100.0, 0
        self.manifest = run_cfg.path(run_cfg.prompts.build_dir) / MANIFEST_NAME
        self.manifest.parent.mkdir(parents=True)
        self.sounds = Path(run_cfg.pbx.sounds_dir)
        self.write(OLD, run_cfg)
        self.live = LivePrompts("camp", app.prompt_hashes(run_cfg), manifest=self.manifest,
                                load=lambda: app.prompt_hashes(run_cfg),
                                installed_dir=self.sounds, monotonic=lambda: self.t)

    def write(self, hashes: dict[str, str], made_by: Config, *, keys: bool = True) -> None:
        manifest: dict[str, Any] = {"version": 1, "campaign": made_by.campaign.name,
                                    "sources": config_fingerprint(made_by),
                                    "prompts": {k: {"sha256": h} for k, h in hashes.items()}}
        if keys:
            f = made_by.flow  # as `ivr prompts build` records them
            manifest["flow_keys"] = {"yes_key": f.yes_key, "no_key": f.no_key,
                                     "optout_key": f.optout_key, "slots": f.slots}
        self.manifest.write_text(json.dumps(manifest))
        st = self.manifest.stat()  # a distinct stamp even within the clock's resolution
        self.writes += 1
        os.utime(self.manifest, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000 * self.writes))
        for key, sha in hashes.items():  # installed at once: only the keys can hold it back
            f = self.sounds / f"{prompt_sound('camp', key, sha)}.wav"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"RIFF")

    def tick(self) -> dict[str, str]:
        self.t += CHECK_EVERY_S
        return dict(self.live.current().hashes)


OTHER_KEYS = {
    "yes_and_no_swapped": ({"yes_key": "2", "no_key": "1"}, ["flow.yes_key", "flow.no_key"]),
    "optout_key": ({"optout_key": "8"}, ["flow.optout_key"]),
    "slots": ({"slots": {"1": "evening", "2": "afternoon", "3": "morning"}},
              ["flow.slots.1", "flow.slots.3"]),
}


@pytest.mark.parametrize("case", sorted(OTHER_KEYS))
def test_a_run_keeps_its_version_when_the_rebuild_is_for_other_flow_keys(
        tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture) -> None:
    flow, named = OTHER_KEYS[case]
    run_cfg = small_cfg(tmp_path)
    edited = small_cfg(tmp_path, **flow)  # config.yaml as the operator left it, rebuilt
    rig = Rig(tmp_path, run_cfg)
    caplog.set_level(logging.INFO, logger="ivr.prompts.live")
    rig.write(NEW, edited)
    assert rig.tick() == OLD
    (line,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert line.levelno == logging.WARNING
    text = line.getMessage()
    assert all(name in text for name in named) and "restart `ivr run`" in text, text
    assert "\n" not in text and "this run" in text
    assert rig.tick() == OLD  # said once per build, not at every look
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    rig.write(LATER, run_cfg)  # built again for the run's keys: taken as any rebuild
    assert rig.tick() == LATER


def test_without_the_slot_question_the_slots_do_not_hold_a_rebuild(tmp_path: Path) -> None:
    rig = Rig(tmp_path, small_cfg(tmp_path, ask_slot=False))
    rig.write(NEW, small_cfg(tmp_path, ask_slot=False, slots={"1": "evening", "3": "morning"}))
    assert rig.tick() == NEW


def test_a_manifest_from_before_the_keys_were_recorded_works_as_before(tmp_path: Path) -> None:
    """No rebuild needed after the upgrade: such a build is followed and not stale."""
    run_cfg = small_cfg(tmp_path)
    rig = Rig(tmp_path, run_cfg)
    rig.write(NEW, small_cfg(tmp_path, yes_key="2", no_key="1"), keys=False)
    assert rig.tick() == NEW
    assert stale_problem(run_cfg, json.loads(rig.manifest.read_text())) is None


def test_check_and_run_refuse_a_build_made_for_other_keys(tmp_path: Path) -> None:
    run_cfg = small_cfg(tmp_path)
    rig = Rig(tmp_path, run_cfg)
    rig.write(NEW, small_cfg(tmp_path, optout_key="8"))
    problem = stale_problem(run_cfg, json.loads(rig.manifest.read_text()))
    assert problem is not None and "\n" not in problem
    assert "flow.optout_key '8' in the build, '9' in the config" in problem
    assert "run `ivr prompts build`" in problem
    with pytest.raises(PromptError, match="flow.optout_key"):
        app.prompt_hashes(run_cfg)  # what `ivr run` starts with


# ------------------------------------------------------------ a whole run, fake PBX

SWAPPED_INTRO = ("Bonjour, ici Marie Dupont, candidate aux élections municipales de "
                 "Villeneuve. Pour ne plus être appelé, appuyez sur 9 à tout moment. Acceptez-"
                 "vous d'écouter mon message politique ? Pour oui, appuyez sur 2. Pour non, "
                 "appuyez sur 1.")


def shipped_cfg(backend: Backend, **flow: Any) -> Config:
    """The shipped config.yaml (its prompts, espeak) on the test's store and a fake PBX."""
    data = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    home = backend.home
    data["store"] = backend.section()
    data["prompts"] |= {"engine": "espeak", "sources_dir": str(REPO / "prompts"),
                        "build_dir": str(home / "build"), "archive_dir": str(home / "archive")}
    data["pbx"] = {"mode": "external", "host": "127.0.0.1", "port": 1, "user": "ivr",
                   "sounds_dir": str(home / "sounds")}
    data["agi"]["port"] = free_port()
    data["flow"] |= {"ask_slot": False, "input_timeout_s": 1, "max_repeats": 0} | flow
    data["dialer"] |= {"ring_timeout_s": 5, "calls_per_second": 100}
    if flow:
        data["prompts"]["items"]["intro"] = {"text": SWAPPED_INTRO}
    return config.from_dict(data, home)


async def run_with_a_rebuild(cfg_a: Config, cfg_b: Config, backend: Backend) -> Any:
    """A run of cfg_a whose build is replaced, before its first call, by cfg_b's (built and
    installed as `ivr prompts build` does); the callee presses 1."""
    store = backend.open()
    number = fiction(11)
    add_contacts(store, [number], campaign=cfg_a.campaign.name)
    async with FakePbx({number: answer(["1"], prompt_s=0.05)}, user="ivr",
                       secret=SECRET) as pbx:
        node = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", SECRET)
        clock = Clock()
        ctl = await app.start(cfg_a, store, clock, node=node)  # follows the manifest
        try:
            await asyncio.to_thread(build_prompts, cfg_b)
            await asyncio.to_thread(install_prompts_to_pbx, cfg_b)
            await asyncio.sleep(CHECK_EVERY_S + 0.2)  # the follower looks again
            state = RunState(cfg_a.campaign.name, store, clock,
                             max_concurrent=cfg_a.dialer.max_concurrent,
                             nodes=ctl.dialer.node_snapshots)
            report = await asyncio.wait_for(campaign_run.run(
                cfg_a, store, ctl.dialer, clock, asyncio.Event(), asyncio.Event(), state), 60)
            await ctl.dialer.writer.settled()
        finally:
            await ctl.close()
        commands = [c for call in pbx.calls.values() for c in call.agi]
    return report, store, commands


def test_a_mid_run_rebuild_with_swapped_keys_never_makes_a_refusal_a_consent(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_CALLBACK_SECRET", "c" * 32)
    cfg_a = shipped_cfg(backend)
    built_a = build_prompts(cfg_a)
    install_prompts_to_pbx(cfg_a)
    cfg_b = shipped_cfg(backend, yes_key="2", no_key="1")  # the operator's edit
    intro_a = built_a["prompts"]["intro"]["sha256"]
    report, store, commands = asyncio.run(run_with_a_rebuild(cfg_a, cfg_b, backend))
    intro_b = json.loads((Path(cfg_b.prompts.build_dir) / MANIFEST_NAME).read_text())[
        "prompts"]["intro"]["sha256"]
    assert intro_b != intro_a and report.originated == 1
    # the callee heard the intro that says "1 for yes", the keys the run reads
    played = [c for c in commands if "intro" in c]
    assert played and all(intro_a[:12] in c for c in played), played
    consents = store.q("SELECT kind, key, prompt_sha256 FROM consents")
    assert all(c["prompt_sha256"] != intro_b for c in consents), consents
    assert [(c["kind"], c["key"], c["prompt_sha256"]) for c in consents] == [
        ("consent", "1", intro_a)]  # 1 is yes in what they heard
    # the next start refuses the build until it is made for its keys again
    (line,) = [v.message for v in build_violations(cfg_a) if v.is_error]
    assert "flow.yes_key '2' in the build, '1' in the config" in line
    assert build_violations(cfg_b) == []
    assert built_a["flow_keys"] == {"yes_key": "1", "no_key": "2", "optout_key": "9",
                                    "slots": SLOTS}  # what the build was made for
