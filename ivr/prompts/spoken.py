"""What the offline voice must be given to say what is written: an email address in words.

espeak-ng reads `radiation@dupont2026.example.fr` as « radiation arobase dupont deux mille
vingt-six point exemple èf-èr »: no « point » before the last label, and a hyphen dropped. In
the legal mentions that is the address where a person objects, so a callee who writes down
what they heard writes a wrong one. The text the campaign declares (and `ivr check` reads
word for word) stays as written; only what espeak-ng is given is spelled out. Pure."""
from __future__ import annotations

import re

# An address as written in a prompt's text: the sentence's own final full stop stays outside.
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
SYMBOL = re.compile(r"[@._%+-]")
WORDS = {  # by prompts.language; another language's voice gets the text as it is
    "fr": {"@": "arobase", ".": "point", "-": "tiret", "_": "tiret bas", "+": "plus",
           "%": "pour cent"},
    "en": {"@": "at", ".": "dot", "-": "dash", "_": "underscore", "+": "plus",
           "%": "percent"},
}


def spoken(text: str, language: str) -> str:
    """`text` with each email address in words of `language` (fr, en), its symbols said."""
    words = WORDS.get(language.split("-")[0].lower())
    if words is None:
        return text

    def say(m: re.Match[str]) -> str:
        return " ".join(SYMBOL.sub(lambda s: f" {words[s.group(0)]} ", m.group(0)).split())
    return EMAIL.sub(say, text)
