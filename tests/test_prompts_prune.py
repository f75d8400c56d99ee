"""`ivr prompts prune` (issue 18): old installed versions of a campaign's prompts go, the
current one, newer ones, those an open attempt may be playing, other campaigns' folders, the
plain ivr/<key>.wav copies and the archive stay. Dry run unless --yes."""
from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from conftest import add_contact, attempt, make_config, store_at
from ivr.cli import cli
from ivr.config import Config
from ivr.errors import StoreError
from ivr.prompts import prune as pr
from ivr.prompts.archive import archive_build, audio_path
from ivr.prompts.build import MANIFEST_NAME, install_prompts
from ivr.store import Store
from ivr.store.base import RunOwner
from ivr.telephony.contract import prompt_sound

NOW = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)


def cfg_for(tmp_path: Path, campaign: str = "A") -> Config:
    return make_config(tmp_path, campaign={"name": campaign, "caller_id": "+33162000000"},
                       store={"path": str(tmp_path / "t.db")},
                       prompts={"build_dir": str(tmp_path / f"build-{campaign}")},
                       pbx={"mode": "external", "sounds_dir": str(tmp_path / "sounds")})


def build(cfg: Config, texts: dict[str, bytes], at: int) -> dict[str, Any]:
    """A build as `ivr prompts build` leaves it (wavs, manifest, archive), installed with
    its files dated `at` (seconds): bytes stand in for audio, which install never decodes."""
    out = cfg.path(cfg.prompts.build_dir)
    out.mkdir(parents=True, exist_ok=True)
    prompts = {}
    for key, data in texts.items():
        (out / f"{key}.wav").write_bytes(data)
        prompts[key] = {"sha256": hashlib.sha256(data).hexdigest(),
                        "path": str(out / f"{key}.wav")}
    manifest = {"version": 1, "prompts": prompts}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    archive_build(cfg, manifest)
    for path in install_prompts(cfg, manifest, cfg.path(cfg.pbx.sounds_dir)):
        if path.parent.name != "ivr":  # the campaign's versions, not the plain copies
            os.utime(path, (at, at))
    return manifest


def sound_file(cfg: Config, key: str, data: bytes) -> Path:
    sha = hashlib.sha256(data).hexdigest()
    return cfg.path(cfg.pbx.sounds_dir) / f"{prompt_sound(cfg.campaign.name, key, sha)}.wav"


def three_builds(cfg: Config) -> tuple[bytes, bytes, bytes]:
    v1, v2, v3 = b"intro one", b"intro two", b"intro three"
    build(cfg, {"intro": v1, "legal": b"legal"}, at=1000)
    build(cfg, {"intro": v2, "legal": b"legal"}, at=2000)
    build(cfg, {"intro": v3, "legal": b"legal"}, at=3000)
    return v1, v2, v3


def open_attempt(store: Store, number: str, campaign: str) -> dict[str, Any]:
    return attempt(store, add_contact(store, number, at=NOW, campaigns=(campaign,)), campaign,
                   "+33162000000", NOW)


def test_old_versions_go_the_current_the_archive_and_other_campaigns_stay(
        tmp_path: Path) -> None:
    cfg, other = cfg_for(tmp_path), cfg_for(tmp_path, "B")
    v1, v2, v3 = three_builds(cfg)
    b1, b2 = b"B intro one", b"B intro two"
    build(other, {"intro": b1}, at=1000)
    build(other, {"intro": b2}, at=2000)
    store = store_at(tmp_path / "t.db")
    open_attempt(store, "+33162000011", "B")  # B's open call never blocks A's prune

    dry = pr.prune(cfg, store, lambda: NOW, yes=False)
    assert sorted(v.path for v in dry.remove) == sorted([sound_file(cfg, "intro", v1),
                                                         sound_file(cfg, "intro", v2)])
    assert sound_file(cfg, "intro", v1).is_file() and dry.removed == []  # dry run
    assert dry.open_attempts == 0

    done = pr.prune(cfg, store, lambda: NOW, yes=True)
    assert sorted(done.removed) == sorted(v.path for v in dry.remove)
    assert not sound_file(cfg, "intro", v1).exists() and not sound_file(cfg, "intro",
                                                                        v2).exists()
    assert sound_file(cfg, "intro", v3).is_file() and sound_file(cfg, "legal", b"legal").is_file()
    assert set(done.kept.values()) == {pr.CURRENT}
    for data in (v1, v2, v3):  # the proof of consent still finds every version
        assert audio_path(cfg, hashlib.sha256(data).hexdigest()).read_bytes() == data
    sounds = cfg.path(cfg.pbx.sounds_dir)
    assert (sounds / "ivr" / "intro.wav").is_file()  # the failsafe's plain copy
    assert sound_file(other, "intro", b1).is_file() and sound_file(other, "intro", b2).is_file()
    assert pr.prune(cfg, store, lambda: NOW, yes=True).removed == []  # nothing left to do


def test_an_open_attempt_keeps_the_versions_it_may_be_playing(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path)
    v1, v2, v3 = three_builds(cfg)
    store = store_at(tmp_path / "t.db")
    call = open_attempt(store, "+33162000010", "A")
    p = pr.prune(cfg, store, lambda: NOW, yes=True)
    assert p.removed == [] and p.open_attempts == 1  # it records its versions when it ends
    assert p.kept[next(v for v in p.kept if v.path == sound_file(cfg, "intro", v1))] == \
        pr.MAY_PLAY
    # An open attempt that names its version (a record written before the end) keeps that one.
    store.db.execute("UPDATE calls SET prompts_sha256 = ? WHERE id = ?",
                     (json.dumps({"intro": hashlib.sha256(v2).hexdigest()}), call["id"]))
    p = pr.prune(cfg, store, lambda: NOW, yes=True)
    assert p.removed == [sound_file(cfg, "intro", v1)]
    assert sound_file(cfg, "intro", v2).is_file() and sound_file(cfg, "intro", v3).is_file()
    # Ended, the attempt names nothing any more: its version goes (the archive keeps it).
    store.finish_unanswered(call["id"], "busy", "17", NOW, None)
    assert pr.prune(cfg, store, lambda: NOW, yes=True).removed == [
        sound_file(cfg, "intro", v2)]


def test_a_version_newer_than_the_current_one_stays(tmp_path: Path) -> None:
    """Rolled back to v1 after v2 was installed: v2 is newer than the current version."""
    cfg = cfg_for(tmp_path)
    v1, v2 = b"intro one", b"intro two"
    build(cfg, {"intro": v1}, at=1000)
    build(cfg, {"intro": v2}, at=2000)
    build(cfg, {"intro": v1}, at=1000)  # already installed: install leaves the file as it is
    p = pr.prune(cfg, store_at(tmp_path / "t.db"), lambda: NOW, yes=True)
    assert p.removed == [] and sorted(p.kept.values()) == [pr.CURRENT, pr.NEWER]


def test_keys_and_files_that_are_not_the_builds_stay(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path)
    build(cfg, {"intro": b"old", "gone": b"dropped prompt"}, at=1000)
    build(cfg, {"intro": b"new"}, at=2000)
    folder = sound_file(cfg, "intro", b"new").parent
    (folder / "notes.txt").write_text("the operator's")
    (folder / "intro-custom.wav").write_bytes(b"not a version")
    p = pr.prune(cfg, store_at(tmp_path / "t.db"), lambda: NOW, yes=True)
    assert p.removed == [sound_file(cfg, "intro", b"old")]
    assert sound_file(cfg, "gone", b"dropped prompt").is_file()
    assert (folder / "notes.txt").is_file() and (folder / "intro-custom.wav").is_file()
    assert pr.NOT_BUILT in p.kept.values()


def test_a_run_of_the_campaign_in_progress_refuses_the_prune(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path)
    v1, _, _ = three_builds(cfg)
    store = store_at(tmp_path / "t.db")
    with store.hold_run(RunOwner(4242, "host-x", NOW), "A"):
        with pytest.raises(StoreError, match="pid 4242"):
            pr.prune(cfg, store, lambda: NOW, yes=True)
        assert sound_file(cfg, "intro", v1).is_file()
    with store.hold_run(RunOwner(4243, "host-x", NOW), "B"):  # another campaign's run
        assert len(pr.prune(cfg, store, lambda: NOW, yes=True).removed) == 2


def test_the_cli_lists_then_removes_with_yes(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    cfg = cfg_for(tmp_path)
    v1, v2, _ = three_builds(cfg)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "campaign": {"name": "A", "caller_id": "+33162000000"},
        "store": {"path": str(tmp_path / "t.db")},
        "prompts": {"build_dir": str(tmp_path / "build-A")},
        "pbx": {"mode": "external", "sounds_dir": str(tmp_path / "sounds")}}))
    old = [str(sound_file(cfg, "intro", v).relative_to(tmp_path / "sounds")) for v in (v1, v2)]
    dry = CliRunner().invoke(cli, ["--config", str(path), "prompts", "prune"])
    assert dry.exit_code == 0, dry.output
    assert [ln.split()[-1] for ln in dry.output.splitlines() if ln.startswith("would remove ")
            ] == sorted(old)
    assert "would remove 2 old version(s), kept 2 (2 current)" in dry.output
    assert "add --yes" in dry.output and sound_file(cfg, "intro", v1).is_file()
    done = CliRunner().invoke(cli, ["--config", str(path), "prompts", "prune", "--yes"])
    assert done.exit_code == 0, done.output
    assert "removed 2 old version(s)" in done.output and "archive untouched" in done.output
    assert not sound_file(cfg, "intro", v1).exists()


def test_the_cli_names_the_missing_sounds_dir(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    cfg = cfg_for(tmp_path)
    build(cfg, {"intro": b"x"}, at=1000)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "campaign": {"name": "A", "caller_id": "+33162000000"},
        "store": {"path": str(tmp_path / "t.db")},
        "prompts": {"build_dir": str(tmp_path / "build-A")}, "pbx": {"mode": "external"}}))
    Store.open(tmp_path / "t.db")  # an existing store: a command creating one says so
    out = CliRunner().invoke(cli, ["--config", str(path), "prompts", "prune"])
    assert out.exit_code == 1
    assert out.output.strip().splitlines() == [
        "error: pbx.sounds_dir is not set: give the Asterisk sounds folder the prompts were "
        "installed into"]


def test_a_run_on_postgresql_refuses_the_prune_though_its_lock_shares(
        tmp_path: Path, pg_store_url: str) -> None:
    """PostgreSQL's hold_run never refuses (controllers share a campaign), so a prune went
    ahead beside a live run and could remove the older build that run kept playing."""
    from ivr.store.pg import PgStore
    cfg = cfg_for(tmp_path)
    v1, _, _ = three_builds(cfg)
    run, other = (PgStore.open(pg_store_url, optout_key=b"test-key") for _ in range(2))
    try:
        with run.hold_run(RunOwner(4242, "host-x", NOW), "A"):
            with pytest.raises(StoreError, match=r"pid 4242 on host host-x"):
                pr.prune(cfg, other, lambda: NOW, yes=True)
            assert sound_file(cfg, "intro", v1).is_file()
        with run.hold_run(RunOwner(4243, "host-x", NOW), "B"):  # another campaign's run
            assert len(pr.prune(cfg, other, lambda: NOW, yes=True).removed) == 2
    finally:
        run.close()
        other.close()
