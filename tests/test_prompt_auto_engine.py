"""engine: auto after a reachability probe that passed: gTTS's service may still fail (HTTP 429,
a proxy, a captive portal). The build used to replace "auto" by "gtts" before rendering, so the
first failure ended it; now the whole build switches to espeak-ng (one voice for every prompt,
those gTTS already spoke re-rendered) and records that engine. No network: gTTS's HTTP call is
replaced."""
from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from gtts.tts import gTTS, gTTSError

from ivr.errors import PromptError
from ivr.prompts.build import build_prompts
from test_prompt_build import espeak_wav, ffmpeg, make_cfg, snapshot


def _google(monkeypatch: pytest.MonkeyPatch, answers: int, failure: str) -> list[str]:
    """The probe passes; gTTS answers `answers` prompts with real MP3, then fails: with a
    gTTSError ("429") or with a page that is no audio ("portal")."""
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: socket.socket())
    calls: list[str] = []

    def stream(self: gTTS) -> Iterator[bytes]:
        calls.append(self.text)
        if len(calls) > answers:
            if failure == "429":
                raise gTTSError("429 (Too Many Requests) from TTS API")
            yield b"<html><body>Sign in to the hotel Wi-Fi</body></html>" * 40
            return
        yield ffmpeg(espeak_wav(self.text), "-ar", "24000", "-ac", "1", "-b:a", "32k",
                     "-f", "mp3")

    monkeypatch.setattr(gTTS, "stream", stream)
    return calls


@pytest.mark.parametrize("failure", ["429", "portal"])
def test_auto_switches_the_whole_build_to_espeak_on_the_first_gtts_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    calls = _google(monkeypatch, answers=2, failure=failure)
    lines: list[str] = []
    manifest = build_prompts(make_cfg(tmp_path / "auto", engine="auto"), log=lines.append)
    assert len(calls) == 3  # two prompts spoken by gTTS, the third failed, no more asked
    assert {e["engine"] for e in manifest["prompts"].values()} == {"espeak"}
    assert any("engine auto" in ln and "using espeak-ng for every prompt" in ln
               for ln in lines), lines
    # one voice: exactly what an espeak build makes, the prompts gTTS spoke included
    espeak = build_prompts(make_cfg(tmp_path / "espeak", engine="espeak"))
    assert {k: e["sha256"] for k, e in manifest["prompts"].items()} == \
        {k: e["sha256"] for k, e in espeak["prompts"].items()}


def test_a_later_build_with_gtts_back_uses_it(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _google(monkeypatch, answers=1, failure="429")
    build_prompts(make_cfg(tmp_path, engine="auto"))
    _google(monkeypatch, answers=100, failure="429")
    manifest = build_prompts(make_cfg(tmp_path, engine="auto"))  # not the espeak cache
    assert {e["engine"] for e in manifest["prompts"].values()} == {"gtts"}


def test_engine_gtts_still_fails_the_build(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _google(monkeypatch, answers=1, failure="429")
    with pytest.raises(PromptError, match="gTTS failed"):
        build_prompts(make_cfg(tmp_path, engine="gtts"))
    assert snapshot(tmp_path / "build") == {}


def test_an_espeak_that_hangs_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review: espeak-ng past its timeout was a TimeoutExpired traceback (a 500 from
    the console's rebuild)."""
    import subprocess
    from ivr.errors import PromptError
    from ivr.prompts import tts

    def hangs(cmd: list[str], **kw: object) -> None:
        raise subprocess.TimeoutExpired(cmd, tts.ESPEAK_TIMEOUT_S)
    monkeypatch.setattr(tts.subprocess, "run", hangs)
    with pytest.raises(PromptError) as exc:
        tts.render_espeak("Bonjour.", voice="fr", key="intro")
    assert "espeak-ng took over 60 s" in str(exc.value) and "intro" in str(exc.value)
    assert "\n" not in str(exc.value)
