"""What the pages show in the operator's terms, where the store and the API keep theirs: the
service's refusals in French (the API and the CLI keep the English)."""
from __future__ import annotations

import re

from ivr.web import i18n


# The service's refusals the rights and pacing forms meet most, in French; the field's key
# stays first, as in the English (the API's and the CLI's words: records/privacy.py,
# web/records.py, web/service.py).
_FRENCH = (
    (re.compile(r"(\w+): (.*) is not a valid phone number: give it as \+33… or 0…; (.*)", re.S),
     "refused_number"),
    (re.compile(r"confirm: type the number (\S+) again to confirm the erasure"),
     "refused_confirm"),
    (re.compile(r"(\w+): (.*) is not a whole number", re.S), "refused_whole"),
    (re.compile(r"(\w+): (.*) is not a number", re.S), "refused_float"),
)


def refusal(lang: str, text: str) -> str:
    """A refusal as a page in `lang` shows it: in English as it is; in French, its French
    words when known, else the English behind the note that says so."""
    if i18n.pick(lang) != "fr" or not text:
        return text
    for pattern, key in _FRENCH:
        found = pattern.fullmatch(text)
        if found:
            return i18n.translate(lang, key).format(*found.groups())
    return f"{i18n.translate(lang, 'detail_en')} {text}"
