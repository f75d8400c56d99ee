"""Text-to-speech engines: gTTS (Google, needs network) and espeak-ng (local, always available).

`render_tts` returns raw audio plus its container format; conversion to 8 kHz telephony audio is
the caller's job (ivr.prompts.build), so both engines go through the same pipeline.
"""
from __future__ import annotations

import io
import shutil
import socket
import subprocess
from collections.abc import Callable

from gtts import gTTS
from gtts.lang import tts_langs
from gtts.tts import gTTSError

from ivr.errors import PromptError
from ivr.prompts.spoken import spoken

ENGINES = ("gtts", "espeak", "auto")
PROBE_TIMEOUT_S = 1.5
GTTS_TIMEOUT_S = 15.0
ESPEAK_TIMEOUT_S = 60.0

Log = Callable[[str], None]


class GttsServiceError(PromptError):
    """gTTS's service failed (network, quota): the only gTTS error 'auto' may fall back from."""


def _quiet(_: str) -> None:
    return None


def _who(key: str | None) -> str:
    return f"prompt {key!r}" if key else "TTS"


def gtts_host(tld: str) -> str:
    """gTTS talks to translate.google.<tld> (see gtts.utils._translate_url)."""
    return f"translate.google.{tld}"


def gtts_reachable(tld: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Quick TCP connect to gTTS's service: no DNS or no route means 'offline', not an error."""
    try:
        with socket.create_connection((gtts_host(tld), 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_engine(engine: str, *, tld: str, log: Log = _quiet,
                   probe: Callable[[str], bool] = gtts_reachable) -> str:
    """Turn 'auto' into the engine that will actually be used; other engines pass through."""
    if engine not in ENGINES:
        raise PromptError(f"TTS engine {engine!r} is unknown: use gtts, espeak or auto")
    if engine != "auto":
        return engine
    if probe(tld):
        log(f"engine auto: {gtts_host(tld)} reachable, using gtts")
        return "gtts"
    log(f"engine auto: {gtts_host(tld)}:443 unreachable, using espeak-ng (offline voice)")
    return "espeak"


def check_gtts_language(language: str, *, key: str | None = None) -> None:
    """gTTS ships its language list, so this check needs no network."""
    if language not in tts_langs():
        raise PromptError(f"{_who(key)}: gTTS does not know language {language!r}: "
                          "set prompts.language to a gTTS code such as fr, en or de")


def espeak_path() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise PromptError("espeak-ng not found: apt-get install espeak-ng")
    return exe


def render_espeak(text: str, *, voice: str, key: str | None = None) -> bytes:
    """WAV bytes from espeak-ng. Text goes through stdin so a leading '-' is never an option."""
    try:
        proc = subprocess.run([espeak_path(), "-v", voice, "--stdin", "--stdout"],
                              input=text.encode("utf-8"), capture_output=True,
                              timeout=ESPEAK_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise PromptError(f"{_who(key)}: espeak-ng took over {ESPEAK_TIMEOUT_S:g} s: the machine "
                          "is overloaded or the text far too long; try again") from None
    err = proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        if "voice does not exist" in err:
            raise PromptError(f"{_who(key)}: espeak-ng has no voice {voice!r}: set "
                              "prompts.espeak_voice to one listed by `espeak-ng --voices`")
        first = err.splitlines()[0] if err else f"exit status {proc.returncode}"
        raise PromptError(f"{_who(key)}: espeak-ng failed ({first}): check the text and voice")
    if not proc.stdout:
        raise PromptError(f"{_who(key)}: espeak-ng produced no audio: check the text")
    return proc.stdout


def render_gtts(text: str, *, language: str, tld: str, key: str | None = None) -> bytes:
    """MP3 bytes from Google's TTS service."""
    check_gtts_language(language, key=key)
    buf = io.BytesIO()
    try:
        gTTS(text=text, lang=language, tld=tld, timeout=GTTS_TIMEOUT_S).write_to_fp(buf)
    except gTTSError as exc:
        raise GttsServiceError(f"{_who(key)}: gTTS failed ({exc}): check network access to "
                          f"{gtts_host(tld)} or use engine espeak") from exc
    if not buf.getvalue():
        raise GttsServiceError(f"{_who(key)}: gTTS returned no audio: retry or use engine espeak")
    return buf.getvalue()


def render_tts(text: str, engine: str, *, language: str, tld: str, voice: str,
               key: str | None = None, log: Log = _quiet,
               probe: Callable[[str], bool] = gtts_reachable) -> tuple[bytes, str, str]:
    """Speak `text`; returns (audio bytes, pydub format, engine actually used).

    With engine 'auto', gTTS is used when its service answers, else espeak-ng; a gTTS failure
    after a successful probe also falls back to espeak-ng (and is logged), since 'auto' means
    "best voice available now". Configuration errors (unknown language) never fall back.
    """
    if not text.strip():
        raise PromptError(f"{_who(key)}: text is empty: write what the prompt must say")
    used = resolve_engine(engine, tld=tld, log=log, probe=probe)
    if used == "gtts":
        try:
            return render_gtts(text, language=language, tld=tld, key=key), "mp3", "gtts"
        except GttsServiceError as exc:
            if engine != "auto":
                raise
            log(f"{_who(key)}: {exc}; engine auto falls back to espeak-ng")
    # espeak-ng drops the « point » of an email address: it is given the address in words
    return render_espeak(spoken(text, language), voice=voice, key=key), "wav", "espeak"
