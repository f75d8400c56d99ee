"""Checks on the built audio of `ivr prompts build`, before anything is put in place: the
length limits, and a recorded prompt against its transcript.

The legal checks read a recording's transcript, never its audio: a file cut mid-way (an upload
or a copy interrupted: the WAV header says 19.1 s, 7.6 s are there) decoded and built as half
the legal mentions while its 41-word transcript passed. Its speed gives it away: French read
speech is about 150-200 words a minute, so a take faster than MAX_WPM is refused. A take much
slower than MIN_WPM has long silences or is another text: only a warning (a slow, careful
reading is not wrong).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ivr.config import Config
from ivr.errors import PromptError

MAX_WPM = 250.0   # tolerant: counted words undercount what is said (numbers, e-mails)
MIN_WPM = 40.0
SLACK_S = 1.0     # a short transcript said quickly ("Oui.") or slowly is not judged by its pace

_WORD = re.compile(r"\w")


def word_count(text: str) -> int:
    """Words as written (a lone dash or colon is not one)."""
    return sum(1 for token in text.split() if _WORD.search(token))


def check_pace(key: str, file: str, transcript: str | None, seconds: float,
               log: Callable[[str], None]) -> None:
    """Refuse a take too short for its transcript (cut short, or not this text); warn about
    one far too long. `seconds`: the built duration (leading and trailing silence trimmed)."""
    words = word_count(transcript or "")
    if not words or seconds <= 0:
        return
    said = (f"prompts.items.{key}: recording {file} lasts {seconds:.1f} s for a {words}-word "
            f"transcript ({words * 60 / seconds:.0f} words a minute)")
    if seconds + SLACK_S < words * 60 / MAX_WPM:
        raise PromptError(f"{said}: the file is cut short or is not this text; check it or "
                          "record it again; nothing was built")
    if seconds - SLACK_S > words * 60 / MIN_WPM:
        log(f"warning: {said}: it has long silences or is not this text; check it")


def check_length(cfg: Config, key: str, seconds: float) -> None:
    """Every prompt, as built, fits prompts.max_duration_s."""
    if seconds > cfg.prompts.max_duration_s:
        raise PromptError(f"prompt {key!r}: lasts {seconds:.1f} s, longer than "
                          f"prompts.max_duration_s = {cfg.prompts.max_duration_s:g} s: "
                          "shorten it or raise the limit")


def check_intro_length(cfg: Config, entries: dict[str, dict[str, Any]]) -> None:
    """Consent first: the intro as rendered fits prompts.intro_max_s. Checked on the audio,
    before anything is moved into place: a running campaign takes a new build at once, and a
    new, longer recording cannot be judged before it is rendered."""
    seconds = float((entries.get("intro") or {}).get("duration_s") or 0.0)
    if seconds > cfg.prompts.intro_max_s:
        raise PromptError(f"prompts.items.intro lasts {seconds:.1f} s as built, more than "
                          f"prompts.intro_max_s = {cfg.prompts.intro_max_s:g} s: shorten it (the "
                          "message comes after the consent); nothing was built")
