"""A legal.* field is compared as it is said: a whitespace-only change (a YAML `|` block adds a
trailing newline, a re-wrapped address) neither makes the build stale nor blocks a recorded
`legal` prompt ("record it again"), as a TTS text's re-wrapping does not. A build made before
this recorded the raw value's digest: the same value still matches it (no build goes stale
on upgrade)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import make_config
from ivr.errors import PromptError
from ivr.prompts.build import build_prompts
from ivr.prompts.manifest import MANIFEST_NAME, _digest, build_problem
from test_prompt_build import EMAIL, ITEMS, SENDER, espeak_wav, write_source

SAID = f"Par {SENDER}, 1 rue Haute, Lyon, {EMAIL}."


def cfg(tmp_path: Path, address: str, said: str = SAID) -> Any:
    return make_config(
        tmp_path, legal={"sender": SENDER, "postal_address": address, "email": EMAIL},
        prompts={"engine": "espeak", "sources_dir": "sources", "build_dir": "build",
                 "items": {**ITEMS, "legal": {"file": "legal.wav", "transcript": said}}})


@pytest.fixture
def built(tmp_path: Path) -> Path:
    write_source(tmp_path, "legal.wav", espeak_wav(SAID))
    build_prompts(cfg(tmp_path, "1 rue Haute, Lyon"))
    return tmp_path


@pytest.mark.parametrize("address", ["1 rue Haute, Lyon\n", "1 rue Haute,\n  Lyon ",
                                     " 1 rue  Haute, Lyon"])
def test_a_whitespace_only_change_is_no_change(built: Path, address: str) -> None:
    moved = cfg(built, address)
    assert build_problem(moved) is None
    build_prompts(moved)  # not refused: the recording says these mentions
    assert build_problem(moved) is None


def test_a_real_change_is_still_stale_and_refused(built: Path) -> None:
    """The transcript edited, the recording not: it still says the old address."""
    moved = cfg(built, "2 rue Basse, Lyon\n", SAID.replace("1 rue Haute", "2 rue Basse"))
    assert "legal.postal_address changed" in (build_problem(moved) or "")
    with pytest.raises(PromptError, match="made for the old legal.postal_address: record it"):
        build_prompts(moved)


def test_a_build_before_the_normalisation_is_not_stale_on_upgrade(built: Path) -> None:
    """Its manifest holds the raw value's digest (here one with a newline inside)."""
    raw = "1 rue Haute,\nLyon\n"
    build_prompts(cfg(built, raw))
    path = built / "build" / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    manifest["sources"]["legal.postal_address"] = _digest(raw)
    path.write_text(json.dumps(manifest))
    assert build_problem(cfg(built, raw)) is None
    build_prompts(cfg(built, raw))
    assert "legal.postal_address changed" in (build_problem(cfg(built, "3 rue X")) or "")
