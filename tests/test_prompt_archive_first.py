"""A prompt is archived (by its sha256) before it is put in place: a failed or interrupted
archive leaves the previous build as it was, `ivr check` refuses a build whose audio left the
archive, and a path that cannot be a folder (prompts.build_dir, prompts.archive_dir,
pbx.sounds_dir, `consent show --export`) is one line naming it, not a traceback."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from conftest import add_contact, attempt, make_config, store_at
from ivr import config
from ivr.prompts.install import install_prompts_to_pbx
from ivr.cli import cli
from ivr.config import Config
from ivr.errors import PromptError
from ivr.prompts import archive as prompt_archive
from ivr.prompts import build as prompt_build
from ivr.prompts import prune as pr
from ivr.prompts.archive import archive_dir, audio_path, export_heard
from ivr.prompts.build import build_prompts
from ivr.prompts.manifest import build_problem
from ivr.store import CallResult, Store
from test_consent_archive import ADDRESS, EMAIL, ITEMS, SENDER  # one set of prompts
from test_prompts_prune import build, cfg_for, sound_file

NEW_MESSAGE = {"message": {"text": "Votez pour nous dimanche."}}
NOW = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)
NUMBER = "+33162000010"


def make_cfg(tmp_path: Path, items: dict[str, Any] | None = None, **sections: Any) -> Config:
    prompts = {"engine": "espeak", "build_dir": "prompts/build",
               "items": {**ITEMS, **(items or {})}, **sections.pop("prompts", {})}
    return make_config(tmp_path, legal={"sender": SENDER, "postal_address": ADDRESS,
                                        "email": EMAIL}, prompts=prompts, **sections)


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file and folder under folder with its content hash and mtime."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest()
                                         if p.is_file() else "dir", p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def built(tmp_path: Path) -> dict[str, Any]:
    """A first build, archived where the config says by default (prompts/archive)."""
    return build_prompts(make_cfg(tmp_path))


def test_a_failed_archive_leaves_the_previous_build_installed(
        tmp_path: Path, built: dict[str, Any]) -> None:
    before = snapshot(tmp_path / "prompts/build")
    (tmp_path / "afile").write_text("not a folder")
    cfg = make_cfg(tmp_path, NEW_MESSAGE, prompts={"archive_dir": "afile"})
    with pytest.raises(PromptError) as exc:
        build_prompts(cfg)
    assert json.loads((tmp_path / "prompts/build/manifest.json").read_text()) == built
    assert snapshot(tmp_path / "prompts/build") == before  # nothing new plays
    assert str(exc.value) == (f"prompts.archive_dir: {tmp_path / 'afile'} is not a directory: "
                              "point it to a folder you can write to; nothing was built")
    assert "message" in (build_problem(cfg) or "")  # `ivr check` still calls it stale


def test_a_failed_archive_on_a_first_build_builds_nothing(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder")
    cfg = make_cfg(tmp_path, prompts={"archive_dir": "afile"})
    with pytest.raises(PromptError) as exc:
        build_prompts(cfg)
    assert not (tmp_path / "prompts").exists()  # the folders it made are gone again
    assert str(exc.value).startswith(f"prompts.archive_dir: {tmp_path / 'afile'} is not a ")
    assert "not built" in (build_problem(cfg) or "")


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), OSError(28, "No space left on device")])
def test_an_archive_stopped_midway_leaves_the_previous_build_installed(
        tmp_path: Path, built: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
        stop: BaseException) -> None:
    """Ctrl-C (or SIGTERM made one) or a full disk during the archive copy."""
    before = snapshot(tmp_path / "prompts/build")
    real = prompt_archive._write_once
    calls: list[Path] = []

    def write_once(path: Path, data: bytes) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise stop
        real(path, data)

    monkeypatch.setattr(prompt_archive, "_write_once", write_once)
    with pytest.raises(type(stop)) if isinstance(stop, KeyboardInterrupt) \
            else pytest.raises(PromptError, match="No space left on device"):
        build_prompts(make_cfg(tmp_path, NEW_MESSAGE))
    assert snapshot(tmp_path / "prompts/build") == before
    assert not list((tmp_path / "prompts").rglob("*.tmp"))


def test_an_interrupt_while_rendering_leaves_no_staging_folder(
        tmp_path: Path, built: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM is turned into KeyboardInterrupt by the CLI: the build cleans up for any
    BaseException, as for Ctrl-C."""
    before = snapshot(tmp_path / "prompts/build")

    def render(*_: Any, **__: Any) -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr(prompt_build, "_render", render)
    with pytest.raises(KeyboardInterrupt):
        build_prompts(make_cfg(tmp_path, NEW_MESSAGE))
    assert snapshot(tmp_path / "prompts/build") == before
    assert not list((tmp_path / "prompts/build").glob(".staging-*"))


def test_check_refuses_a_build_whose_audio_left_the_archive(
        tmp_path: Path, built: dict[str, Any]) -> None:
    cfg = make_cfg(tmp_path)
    assert build_problem(cfg) is None
    sha = built["prompts"]["intro"]["sha256"]
    (archive_dir(cfg) / f"{sha}.wav").unlink()
    problem = build_problem(cfg) or ""
    assert "the audio of intro in prompts/build/manifest.json is not in the prompt archive" \
        in problem and "run `ivr prompts build`" in problem
    build_prompts(cfg)  # nothing changed, yet the rebuild archives it again
    assert build_problem(cfg) is None
    assert hashlib.sha256((archive_dir(cfg) / f"{sha}.wav").read_bytes()).hexdigest() == sha


def test_a_build_dir_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(PromptError) as exc:
        build_prompts(make_cfg(tmp_path, prompts={"build_dir": "afile"}))
    assert str(exc.value) == (f"prompts.build_dir: {tmp_path / 'afile'} is not a directory: "
                              "point it to a folder you can write to")
    with pytest.raises(PromptError, match=r"^prompts\.build_dir: cannot write in .*afile/build "
                                          r"\(Not a directory\): point it to a folder"):
        build_prompts(make_cfg(tmp_path, prompts={"build_dir": "afile/build"}))
    assert (tmp_path / "afile").read_text() == "not a folder"


def test_a_sounds_dir_that_is_a_file_is_one_line(tmp_path: Path,
                                                 built: dict[str, Any]) -> None:
    (tmp_path / "afile").write_text("not a folder")
    cfg = make_cfg(tmp_path, pbx={"mode": "external", "sounds_dir": str(tmp_path / "afile")})
    with pytest.raises(PromptError) as exc:
        install_prompts_to_pbx(cfg)
    assert str(exc.value) == (f"pbx.sounds_dir: {tmp_path / 'afile'} is not a directory: "
                              "point it to the Asterisk sounds folder")
    assert (tmp_path / "afile").read_text() == "not a folder"


def test_export_into_a_path_that_cannot_be_a_folder_is_one_line(
        tmp_path: Path, built: dict[str, Any]) -> None:
    cfg = make_cfg(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
    proof = [{"call_id": 1, "heard_sha256": {"intro": built["prompts"]["intro"]["sha256"]}}]
    with pytest.raises(PromptError) as exc:
        export_heard(cfg, proof, tmp_path / "afile")
    assert str(exc.value) == (f"--export: {tmp_path / 'afile'} is not a directory: give --export "
                              "a folder you can write to (it is created if missing)")
    with pytest.raises(PromptError, match=r"^--export: cannot create .*afile/x \(Not a "):
        export_heard(cfg, proof, tmp_path / "afile" / "x")
    assert (tmp_path / "afile").read_text() == "not a folder"
    (exported,) = export_heard(cfg, proof, tmp_path / "proof")  # a folder still works
    assert exported.read_bytes() == (archive_dir(cfg) / f"{proof[0]['heard_sha256']['intro']}"
                                     ".wav").read_bytes()


def test_consent_show_export_to_a_file_is_one_line(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(yaml.safe_dump({
        "legal": {"sender": SENDER, "postal_address": ADDRESS, "email": EMAIL},
        "store": {"path": "ivr.db"},
        "prompts": {"engine": "espeak", "build_dir": "prompts/build", "items": ITEMS}},
        allow_unicode=True))
    sha = build_prompts(config.load(cfg_file))["prompts"]["intro"]["sha256"]
    store = Store.open(tmp_path / "ivr.db")
    call = attempt(store, add_contact(store, NUMBER, at=NOW, basis="consent"), "c1",
                   "+33162000000", NOW)
    store.mark_answered(call["id"], NOW)
    store.finish_answered(call["id"], CallResult(
        outcome="message_played", stage="goodbye", keys="1", heard={"intro": sha},
        choice="consent", choice_key="1", answered_prompt="intro", answered_sha256=sha,
        amd_status="HUMAN"), NOW)
    (tmp_path / "afile").write_text("not a folder")
    out = CliRunner().invoke(cli, ["--config", str(cfg_file), "consent", "show", NUMBER,
                                   "--export", str(tmp_path / "afile")])
    assert out.exit_code == 1 and isinstance(out.exception, SystemExit), out.output
    assert out.output.splitlines()[-1].endswith(
        f"--export: {tmp_path / 'afile'} is not a directory: give --export a folder you can "
        "write to (it is created if missing)")
    # refused before the proof is printed: the error is the command's only output
    assert len(out.output.splitlines()) == 1 and '"call_id"' not in out.output, out.output


def test_prune_archives_a_version_before_removing_its_last_copy(tmp_path: Path) -> None:
    """A version installed unarchived (by a build before this fix, or whose archive was
    emptied): `ivr prompts prune --yes` copies it into the archive before removing it."""
    cfg = cfg_for(tmp_path)
    v1, v2 = b"intro one", b"intro two"
    build(cfg, {"intro": v1}, at=1000)
    audio_path(cfg, hashlib.sha256(v1).hexdigest()).unlink()  # as an unarchived build left it
    build(cfg, {"intro": v2}, at=2000)
    done = pr.prune(cfg, store_at(tmp_path / "t.db"), lambda: NOW, yes=True)
    assert done.removed == [sound_file(cfg, "intro", v1)]
    assert audio_path(cfg, hashlib.sha256(v1).hexdigest()).read_bytes() == v1


def test_prune_removes_nothing_when_it_cannot_archive(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path)
    v1, v2 = b"intro one", b"intro two"
    build(cfg, {"intro": v1}, at=1000)
    build(cfg, {"intro": v2}, at=2000)
    folder = archive_dir(cfg)
    for p in sorted(folder.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    folder.rmdir()
    folder.write_text("not a folder")  # the archive cannot take the old version
    with pytest.raises(PromptError, match=r"^cannot archive .* before removing it \(File "
                                          r"exists\): fix prompts\.archive_dir; nothing was "):
        pr.prune(cfg, store_at(tmp_path / "t.db"), lambda: NOW, yes=True)
    assert sound_file(cfg, "intro", v1).read_bytes() == v1


def test_a_sounds_length_is_counted_as_asterisk_counts_it(tmp_path: Path) -> None:
    """What AGI's endpos says of a sound played to its end (format_wav: (size - 44) / 2), so
    a key pressed after a question is told from one that cut it; None when not archived."""
    cfg = make_cfg(tmp_path)
    data = b"RIFF" + b"\0" * 40 + b"\1\0" * 12_345  # a 44-byte header, 12,345 samples
    path = prompt_archive.archive_audio(cfg, data)
    samples = prompt_archive.lengths(cfg)
    assert samples(path.stem) == 12_345
    assert samples("0" * 64) is None
