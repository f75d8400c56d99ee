"""A recording cut mid-way (its WAV header says the whole length, half the bytes are there)
built as half the legal mentions: its transcript passed the legal check, the audio was never
compared with it. A take far too short for its transcript is now refused, one far too long
warned about."""
from __future__ import annotations

from pathlib import Path

import pytest

from ivr.config import Config
from ivr.errors import PromptError
from ivr.prompts.build import build_prompts
from test_prompt_build import ADDRESS, EMAIL, SENDER, espeak_wav, make_cfg, snapshot, \
    write_source

LEGAL = (f"Ce message vous est adressé par {SENDER}, candidat aux élections municipales. Pour "
         "vous opposer à ces appels ou demander la radiation de votre numéro, écrivez au "
         f"{ADDRESS}, ou par courriel à {EMAIL}.")


def legal_cfg(tmp_path: Path) -> Config:
    return make_cfg(tmp_path, {"legal": {"file": "legal.wav", "transcript": LEGAL}})


def test_a_cut_legal_recording_is_refused_and_nothing_is_built(tmp_path: Path) -> None:
    whole = espeak_wav(LEGAL)
    write_source(tmp_path, "legal.wav", whole)
    build_prompts(legal_cfg(tmp_path))  # the whole take builds
    before = snapshot(tmp_path / "build")
    write_source(tmp_path, "legal.wav", whole[:44 + (len(whole) - 44) * 2 // 5])  # header kept
    with pytest.raises(PromptError) as exc:
        build_prompts(legal_cfg(tmp_path))
    msg = str(exc.value)
    words = len(LEGAL.split())
    assert msg.startswith("prompts.items.legal: recording legal.wav lasts "), msg
    assert f"for a {words}-word transcript (" in msg and "words a minute)" in msg, msg
    assert "the file is cut short or is not this text; check it or record it again" in msg
    assert "\n" not in msg
    assert snapshot(tmp_path / "build") == before


def test_a_slow_take_is_only_warned_about(tmp_path: Path) -> None:
    write_source(tmp_path, "m.wav", espeak_wav("Bonjour, votez pour nous dimanche prochain, "
                                                "et merci de votre attention."))
    lines: list[str] = []
    manifest = build_prompts(make_cfg(tmp_path, {"message": {"file": "m.wav",
                                                             "transcript": "Votez."}}),
                             log=lines.append)
    assert "message" in manifest["prompts"]
    warned = [ln for ln in lines if ln.startswith("warning: prompts.items.message")]
    assert len(warned) == 1 and "long silences or is not this text" in warned[0], lines


@pytest.mark.parametrize("words,seconds", [(1, 0.2), (3, 0.5), (41, 10.0), (41, 17.9)])
def test_ordinary_takes_pass(words: int, seconds: float) -> None:
    from ivr.prompts.take_checks import check_pace  # here: the build tests run without it
    lines: list[str] = []
    check_pace("k", "k.wav", " ".join(["mot"] * words), seconds, lines.append)
    assert lines == []


def test_the_pace_is_named() -> None:
    from ivr.prompts.take_checks import check_pace
    with pytest.raises(PromptError, match=r"lasts 6.9 s for a 41-word transcript \(357 words"):
        check_pace("legal", "legal.wav", " ".join(["mot"] * 41) + " —", 6.9, print)
