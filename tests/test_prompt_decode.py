"""What a read-only review of the prompt build found (2026-12-03), each reproduced first:

- a 32-bit float WAV in WAVE_FORMAT_EXTENSIBLE (what `ffmpeg -c:a pcm_f32le` writes) was read by
  pydub's own WAV parser as int32: near-square noise that passed every check and was built;
  a 64-bit float WAV was a traceback (audioop.error); ADPCM WAVs and mp3s named .wav were
  refused though ffmpeg decodes them. Every clip is now decoded by ffmpeg, which probes the
  content;
- without ffmpeg on PATH the build died with a FileNotFoundError traceback;
- a decode had no bound: a two-hour file was decoded whole into memory;
- a callback_notice that does not ask for key 1 was built and installed at once into the copy
  the opposition line plays;
- a recorded `legal` prompt kept playing the old mentions once legal.email changed: the build
  cleared the stale error though the recording was the same.
"""
from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from conftest import make_config
from ivr.config import Config
from ivr.errors import ComplianceError, PromptError
from ivr.prompts.build import build_prompts
from ivr.prompts.manifest import build_problem
from test_prompt_build import (ADDRESS, EMAIL, ITEMS, SENDER, espeak_wav, ffmpeg, make_cfg,
                               snapshot, write_source)

SPEECH = "Bonjour, votez pour nous dimanche prochain."


def _samples(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(float)


def _built(tmp_path: Path, name: str, data: bytes) -> np.ndarray:
    """The built `message` of a config whose message is the recording `data` named `name`."""
    tmp_path.mkdir(exist_ok=True)
    write_source(tmp_path, name, data)
    build_prompts(make_cfg(tmp_path, {"message": {"file": name, "transcript": "Votez."}}))
    return _samples(tmp_path / "build" / "message.wav")


def _similar(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


@pytest.mark.parametrize("name,args", [
    ("f32.wav", ["-c:a", "pcm_f32le", "-f", "wav"]),          # WAVE_FORMAT_EXTENSIBLE
    ("f32-stereo-48k.wav", ["-c:a", "pcm_f32le", "-ac", "2", "-ar", "48000", "-f", "wav"]),
    ("f64.wav", ["-c:a", "pcm_f64le", "-f", "wav"]),          # was an audioop.error traceback
    ("adpcm.wav", ["-c:a", "adpcm_ms", "-f", "wav"]),         # was "cannot decode"
    ("mp3-named.wav", ["-c:a", "libmp3lame", "-f", "mp3"]),   # was "cannot decode"
])
def test_any_recording_ffmpeg_decodes_is_built_as_the_same_speech(tmp_path: Path, name: str,
                                                                 args: list[str]) -> None:
    speech = espeak_wav(SPEECH)
    reference = _built(tmp_path / "ref", "ref.wav", speech)
    built = _built(tmp_path / "other", name, ffmpeg(speech, *args))
    # The same words, not noise: pydub's int32 reading of floats correlated at about 0.1.
    assert _similar(built, reference) > 0.9
    assert len(built) == pytest.approx(len(reference), rel=0.05)


def test_a_file_ffmpeg_cannot_decode_is_one_line_naming_it_and_the_fix(tmp_path: Path) -> None:
    write_source(tmp_path, "notes.wav", b"these are my notes, not a recording\n" * 40)
    with pytest.raises(PromptError) as exc:
        build_prompts(make_cfg(tmp_path, {"message": {"file": "notes.wav",
                                                      "transcript": "Votez."}}))
    msg = str(exc.value)
    assert "prompt 'message'" in msg and "notes.wav" in msg and "cannot decode" in msg
    assert "export it again as wav" in msg and "\n" not in msg
    assert not (tmp_path / "build").exists()


def test_without_ffmpeg_the_build_says_how_to_install_it(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    espeak = shutil.which("espeak-ng")
    assert espeak is not None
    (bin_dir / "espeak-ng").symlink_to(espeak)  # the voice is there, ffmpeg is not
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(PromptError) as exc:
        build_prompts(make_cfg(tmp_path))
    assert str(exc.value) == "ffmpeg not found: apt-get install ffmpeg"
    assert not (tmp_path / "build").exists()


def _tone_file(tmp_path: Path, seconds: int) -> bytes:
    out = tmp_path / "tone.wav"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=8000", "-t", str(seconds), "-af",
                    "volume=-12dB", str(out)], check=True)
    data = out.read_bytes()
    out.unlink()
    return data


def test_a_recording_far_over_the_limit_is_refused_without_decoding_it_all(
        tmp_path: Path) -> None:
    # 10 minutes: the decode stops at max_duration_s + 30 s.
    write_source(tmp_path, "meeting.wav", _tone_file(tmp_path, 600))
    with pytest.raises(PromptError) as exc:
        build_prompts(make_cfg(tmp_path, {"message": {"file": "meeting.wav",
                                                      "transcript": "Votez."}},
                               max_duration_s=10))
    msg = str(exc.value)
    assert "prompt 'message'" in msg and "meeting.wav lasts more than 40 s" in msg
    assert "prompts.max_duration_s = 10 s" in msg and "\n" not in msg


def test_a_callback_notice_without_key_1_is_never_built_nor_installed(tmp_path: Path) -> None:
    good = {"callback_notice": {"text": "Pour ne plus être appelé, appuyez sur 1."}}
    build_prompts(make_cfg(tmp_path, good))
    before = snapshot(tmp_path / "build")
    bad = {"callback_notice": {"text": "Vous avez appelé la permanence. Au revoir."}}
    with pytest.raises(ComplianceError) as exc:
        build_prompts(make_cfg(tmp_path, bad))
    msg = str(exc.value)
    assert "callback_notice" in msg and "key 1" in msg and "nothing was built" in msg
    assert "\n" not in msg
    assert snapshot(tmp_path / "build") == before


def _legal_cfg(tmp_path: Path, email: str) -> Config:
    said = f"Par {SENDER}, {ADDRESS}, {email}."
    return make_config(
        tmp_path, legal={"sender": SENDER, "postal_address": ADDRESS, "email": email},
        prompts={"engine": "espeak", "sources_dir": "sources", "build_dir": "build",
                 "items": {**ITEMS, "legal": {"file": "legal.wav", "transcript": said}}})


def test_a_legal_recording_made_for_the_old_email_is_refused_until_recorded_again(
        tmp_path: Path) -> None:
    write_source(tmp_path, "legal.wav", espeak_wav(f"Par {SENDER}, {ADDRESS}, {EMAIL}."))
    build_prompts(_legal_cfg(tmp_path, EMAIL))
    before = snapshot(tmp_path / "build")
    moved = _legal_cfg(tmp_path, "opposition@test.fr")  # the transcript follows, not the audio
    assert "legal.email" in (build_problem(moved) or "")
    with pytest.raises(PromptError) as exc:
        build_prompts(moved)
    assert str(exc.value) == (
        "prompts.items.legal's recording legal.wav was made for the old legal.email: record "
        "it again (or make it a text); nothing was built")
    assert snapshot(tmp_path / "build") == before
    assert "legal.email" in (build_problem(moved) or "")  # `ivr check` still refuses
    write_source(tmp_path, "legal.wav",
                 espeak_wav(f"Par {SENDER}, {ADDRESS}, opposition@test.fr."))
    build_prompts(moved)  # recorded again: built
    assert build_problem(moved) is None
