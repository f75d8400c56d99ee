"""A rebuild during a run: new calls take the new version once its files are installed; a call
keeps the version it started with (ivr/prompts/live.py, callflow/agi_ivr.py)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ivr.prompts.live import CHECK_EVERY_S, LivePrompts
from ivr.telephony.contract import prompt_sound

OLD = {"intro": "a" * 64, "legal": "b" * 64}
NEW = {"intro": "c" * 64, "legal": "b" * 64}


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.t = 100.0
        self.manifest = tmp / "manifest.json"
        self.installed = tmp / "sounds"
        self.write(OLD)
        self.install(OLD)
        self.live = LivePrompts("camp", OLD, manifest=self.manifest, load=self.load,
                                installed_dir=self.installed, monotonic=lambda: self.t)

    def write(self, hashes: dict[str, str]) -> None:
        self.manifest.write_text(json.dumps(hashes))
        st = self.manifest.stat()  # a distinct stamp even within the clock's resolution
        os.utime(self.manifest, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))

    def load(self) -> dict[str, str]:
        return json.loads(self.manifest.read_text())

    def install(self, hashes: dict[str, str]) -> None:
        for key, sha in hashes.items():
            f = self.installed / f"{prompt_sound('camp', key, sha)}.wav"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"RIFF")


def test_a_rebuild_is_taken_once_installed_and_not_before(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    started = rig.live.current()  # a call in flight holds this version
    rig.write(NEW)
    rig.t += CHECK_EVERY_S
    assert rig.live.current().hashes == OLD  # built, not installed yet: keep the old one
    rig.install(NEW)
    rig.t += CHECK_EVERY_S / 2
    assert rig.live.current().hashes == OLD  # looked at most once a second
    rig.t += CHECK_EVERY_S
    now = rig.live.current()
    assert now.hashes == NEW
    assert now.sounds["intro"] == prompt_sound("camp", "intro", NEW["intro"])
    assert started.hashes == OLD and started.sounds["intro"].endswith("a" * 12)


def test_an_unreadable_manifest_keeps_the_current_version(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.manifest.write_text("{not json")
    rig.t += CHECK_EVERY_S
    assert rig.live.current().hashes == OLD
    rig.write(NEW)
    rig.install(NEW)
    rig.t += CHECK_EVERY_S
    assert rig.live.current().hashes == NEW  # repaired by the next build


def test_fixed_hashes_never_change(tmp_path: Path) -> None:
    live = LivePrompts("camp", OLD)
    assert live.current().hashes == OLD
    assert live.current().sounds["legal"] == prompt_sound("camp", "legal", OLD["legal"])


def test_with_several_sounds_folders_a_rebuild_waits_for_every_one(tmp_path: Path) -> None:
    """The sandbox's instances each play from their own folder (sandbox_nodes.sounds_dirs): a
    version missing from one of them (a call on that node would fail) is not taken yet."""
    rig = Rig(tmp_path)
    other = tmp_path / "sounds-n2"
    folders = [rig.installed]
    live = LivePrompts("camp", OLD, manifest=rig.manifest, load=rig.load,
                       installed_dirs=lambda: folders, monotonic=lambda: rig.t)
    rig.write(NEW)
    rig.install(NEW)  # into the first folder only
    folders.append(other)  # an instance started during the run, listed at each check
    rig.t += CHECK_EVERY_S
    assert live.current().hashes == OLD
    rig.installed = other
    rig.install(NEW)
    rig.t += CHECK_EVERY_S
    assert live.current().hashes == NEW


def test_a_rebuild_without_a_prompt_the_run_plays_is_not_followed(tmp_path: Path) -> None:
    """A rebuild that drops a prompt (slot_question after ask_slot went false) while this run
    still asks it: taking it would leave the question without its campaign's sound, and the
    call would fall back to the PBX-wide ivr/slot_question, maybe another campaign's."""
    rig = Rig(tmp_path)
    fewer = {"intro": "c" * 64}  # legal gone
    rig.write(fewer)
    rig.install(fewer)
    rig.t += CHECK_EVERY_S
    assert rig.live.current().hashes == OLD
    rig.write(NEW)  # a later build with every prompt again is taken
    rig.install(NEW)
    rig.t += CHECK_EVERY_S
    assert rig.live.current().hashes == NEW


def test_a_build_waiting_for_its_install_is_said_once_per_manifest(
        tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    """Found in review: looked at every second of calling, a build not installed (or a
    manifest that cannot be read) was said every second: 3,600 lines an hour."""
    import logging
    caplog.set_level(logging.INFO, logger="ivr.prompts.live")
    rig = Rig(tmp_path)
    rig.write(NEW)
    for _ in range(30):
        rig.t += CHECK_EVERY_S
        assert rig.live.current().hashes == OLD
    waiting = [r for r in caplog.records if "waiting for its install" in r.message]
    assert len(waiting) == 1
    rig.manifest.write_text("{not json")  # another manifest, unreadable: said once too
    for _ in range(30):
        rig.t += CHECK_EVERY_S
        rig.live.current()
    unreadable = [r for r in caplog.records if "cannot be read" in r.message]
    assert len(unreadable) == 1
    rig.write(NEW)  # a new build, still not installed: said again, once
    rig.t += CHECK_EVERY_S
    rig.live.current()
    assert len([r for r in caplog.records if "waiting for its install" in r.message]) == 2
