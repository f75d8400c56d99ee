"""TTS engines with the real espeak-ng; gTTS's network call replaced by real local MP3 bytes."""
from __future__ import annotations

import io
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gtts.tts import gTTS, gTTSError
from pydub import AudioSegment

from ivr.prompts import tts
from ivr.errors import PromptError


def espeak_wav(text: str) -> bytes:
    return subprocess.run(["espeak-ng", "-v", "fr", "--stdout", text], check=True,
                          capture_output=True).stdout


def local_mp3(text: str) -> bytes:
    """What gTTS would send: MP3 speech (here made from espeak-ng with ffmpeg, 24 kHz mono)."""
    return subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", "pipe:0",
                           "-ar", "24000", "-ac", "1", "-b:a", "32k", "-f", "mp3", "pipe:1"],
                          input=espeak_wav(text), check=True, capture_output=True).stdout


@pytest.fixture
def fake_google(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace only the HTTP part of gTTS (stream); write_to_fp and language checks stay real."""
    calls: list[dict[str, Any]] = []

    def stream(self: gTTS) -> Iterator[bytes]:
        calls.append({"text": self.text, "lang": self.lang, "tld": self.tld})
        data = local_mp3(self.text)
        yield data[: len(data) // 2]  # gTTS yields one chunk per request part
        yield data[len(data) // 2:]

    monkeypatch.setattr(gTTS, "stream", stream)
    return calls


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    """No route to Google: the connect fails as it does on an offline machine."""
    tried: list[tuple[Any, Any]] = []

    def refuse(address: Any, timeout: Any = None, *args: Any, **kwargs: Any) -> socket.socket:
        tried.append((address, timeout))
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return tried


def test_espeak_renders_wav() -> None:
    audio, fmt, used = tts.render_tts("Bonjour, ceci est un test.", "espeak", language="fr",
                                      tld="fr", voice="fr", key="intro")
    assert (fmt, used) == ("wav", "espeak")
    seg = AudioSegment.from_file(io.BytesIO(audio), format="wav")
    assert 0.8 < seg.duration_seconds < 5 and seg.max_dBFS > -20


def test_espeak_text_starting_with_dash_is_spoken_not_parsed() -> None:
    audio, _, _ = tts.render_tts("-v en bonjour", "espeak", language="fr", tld="fr", voice="fr")
    assert AudioSegment.from_file(io.BytesIO(audio), format="wav").duration_seconds > 0.5


def test_unknown_espeak_voice_names_key_and_voice() -> None:
    with pytest.raises(PromptError, match=r"prompt 'goodbye'.*no voice 'xx-nope'"):
        tts.render_tts("Au revoir.", "espeak", language="fr", tld="fr", voice="xx-nope",
                       key="goodbye")


def test_espeak_not_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: the binary really is not found
    with pytest.raises(PromptError, match=r"espeak-ng not found: apt-get install espeak-ng"):
        tts.render_tts("Au revoir.", "espeak", language="fr", tld="fr", voice="fr")


def test_empty_text_is_refused() -> None:
    with pytest.raises(PromptError, match=r"prompt 'invalid'.*text is empty"):
        tts.render_tts("  \n", "espeak", language="fr", tld="fr", voice="fr", key="invalid")


def test_gtts_returns_mp3_from_service(fake_google: list[dict[str, Any]]) -> None:
    audio, fmt, used = tts.render_tts("Merci, au revoir.", "gtts", language="fr", tld="ca",
                                      voice="fr", key="goodbye")
    assert (fmt, used) == ("mp3", "gtts")
    assert fake_google == [{"text": "Merci, au revoir.", "lang": "fr", "tld": "ca"}]
    seg = AudioSegment.from_file(io.BytesIO(audio), format="mp3")
    assert seg.frame_rate == 24000 and seg.duration_seconds > 0.5


def test_gtts_unknown_language_names_key(fake_google: list[dict[str, Any]]) -> None:
    with pytest.raises(PromptError, match=r"prompt 'message'.*language 'xx'"):
        tts.render_tts("Bonjour.", "gtts", language="xx", tld="fr", voice="fr", key="message")
    assert fake_google == []


def failing_stream(self: gTTS) -> Iterator[bytes]:
    raise gTTSError(tts=self)
    yield b""  # pragma: no cover - makes this a generator like the real stream


def test_gtts_service_failure_is_a_prompt_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gTTS, "stream", failing_stream)
    with pytest.raises(PromptError, match=r"prompt 'intro': gTTS failed.*engine espeak"):
        tts.render_tts("Bonjour.", "gtts", language="fr", tld="fr", voice="fr", key="intro")


def test_auto_offline_uses_espeak_and_says_so(offline: list[tuple[Any, Any]],
                                              fake_google: list[dict[str, Any]]) -> None:
    lines: list[str] = []
    audio, fmt, used = tts.render_tts("Bonjour.", "auto", language="fr", tld="fr", voice="fr",
                                      log=lines.append)
    assert (fmt, used) == ("wav", "espeak")
    assert audio[:4] == b"RIFF"
    assert offline == [(("translate.google.fr", 443), tts.PROBE_TIMEOUT_S)]
    assert fake_google == []
    assert any("unreachable" in ln and "espeak" in ln for ln in lines)


def test_auto_online_uses_gtts(monkeypatch: pytest.MonkeyPatch,
                               fake_google: list[dict[str, Any]]) -> None:
    audio, fmt, used = tts.render_tts("Bonjour.", "auto", language="fr", tld="fr", voice="fr",
                                      probe=lambda tld: True)
    assert (fmt, used) == ("mp3", "gtts") and len(fake_google) == 1 and audio


def test_auto_falls_back_when_gtts_fails_after_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gTTS, "stream", failing_stream)
    lines: list[str] = []
    _, fmt, used = tts.render_tts("Bonjour.", "auto", language="fr", tld="fr", voice="fr",
                                  key="intro", log=lines.append, probe=lambda tld: True)
    assert (fmt, used) == ("wav", "espeak")
    assert any("gTTS failed" in ln and "falls back to espeak" in ln for ln in lines)


def test_auto_does_not_hide_a_bad_language(fake_google: list[dict[str, Any]]) -> None:
    with pytest.raises(PromptError, match="language 'zz'"):
        tts.render_tts("Bonjour.", "auto", language="zz", tld="fr", voice="fr", key="intro",
                       probe=lambda tld: True)


def test_unknown_engine() -> None:
    with pytest.raises(PromptError, match="'festival' is unknown"):
        tts.render_tts("Bonjour.", "festival", language="fr", tld="fr", voice="fr")


def test_gtts_reachable_probe(offline: list[tuple[Any, Any]]) -> None:
    assert tts.gtts_reachable("com") is False
    assert offline == [(("translate.google.com", 443), tts.PROBE_TIMEOUT_S)]
