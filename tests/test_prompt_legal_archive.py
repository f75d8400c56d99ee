"""A legal recording made for the old legal.* mentions is refused even when prompts/build holds
no previous manifest (a fresh deploy, `rm -rf prompts/build`, a damaged manifest): the archived
manifests (prompts/archive/manifests/) show the take was built with other mentions. Before, only
the manifest in prompts/build was compared, so the take still saying the old address built and
`ivr check` passed."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import make_config
from ivr.config import Config, PromptSource
from ivr.errors import PromptError
from ivr.prompts import build as prompt_build
from ivr.prompts.build import build_prompts
from ivr.prompts.manifest import MANIFEST_NAME, build_problem
from test_prompt_build import EMAIL, ITEMS, SENDER, espeak_wav, write_source

OLD, NEW = "1 rue Haute, Lyon", "8 avenue Foch, Paris"
REFUSED = ("prompts.items.legal's recording legal.wav was made for the old "
           "legal.postal_address: record it again (or make it a text); nothing was built")


def said(address: str) -> str:
    return f"Par {SENDER}, {address}, {EMAIL}."


def cfg(tmp_path: Path, address: str) -> Config:
    """The transcript follows the address; the audio is whatever legal.wav holds."""
    return make_config(
        tmp_path, legal={"sender": SENDER, "postal_address": address, "email": EMAIL},
        prompts={"engine": "espeak", "sources_dir": "sources", "build_dir": "build",
                 "items": {**ITEMS, "legal": {"file": "legal.wav",
                                              "transcript": said(address)}}})


@pytest.fixture
def built_old(tmp_path: Path) -> Path:
    """legal.wav says the old address and was built with it (archived)."""
    write_source(tmp_path, "legal.wav", espeak_wav(said(OLD)))
    build_prompts(cfg(tmp_path, OLD))
    return tmp_path


def test_no_build_dir_the_archive_still_refuses_the_old_take(built_old: Path) -> None:
    shutil.rmtree(built_old / "build")  # a fresh deploy: prompts/build is not committed
    with pytest.raises(PromptError) as exc:
        build_prompts(cfg(built_old, NEW))
    assert str(exc.value) == REFUSED
    assert not (built_old / "build" / MANIFEST_NAME).exists()


def test_a_damaged_manifest_does_not_clear_the_refusal(built_old: Path) -> None:
    (built_old / "build" / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(PromptError) as exc:
        build_prompts(cfg(built_old, NEW))
    assert str(exc.value) == REFUSED


def test_recorded_again_builds_and_the_old_mentions_with_the_old_take_still_build(
        built_old: Path) -> None:
    shutil.rmtree(built_old / "build")
    write_source(built_old, "legal.wav", espeak_wav(said(NEW)))
    build_prompts(cfg(built_old, NEW))  # a new take: its digest was never built otherwise
    assert build_problem(cfg(built_old, NEW)) is None
    write_source(built_old, "legal.wav", espeak_wav(said(OLD)))
    build_prompts(cfg(built_old, OLD))  # back to the old address with its own take: fine
    assert build_problem(cfg(built_old, OLD)) is None


def test_ivr_check_names_a_build_that_took_the_old_take(built_old: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A build made before this fix (the archive not consulted) is refused by `ivr check`."""
    shutil.rmtree(built_old / "build")
    monkeypatch.setattr(prompt_build, "check_legal_recording", lambda *a: None)
    build_prompts(cfg(built_old, NEW))
    problem = build_problem(cfg(built_old, NEW)) or ""
    assert "legal.wav was made for the old legal.postal_address" in problem, problem
    assert "record it again" in problem and "\n" not in problem


def test_a_text_legal_prompt_is_not_concerned(built_old: Path) -> None:
    shutil.rmtree(built_old / "build")
    c = cfg(built_old, NEW)
    c.prompts.items["legal"] = PromptSource(text=said(NEW))
    build_prompts(c)
    assert build_problem(c) is None
