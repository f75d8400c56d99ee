"""A compliance check's finding (Violation) and the helpers every check writes them with: one
line each, an error or a warning. Shared by preflight.py and list_sources.py."""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Violation:
    code: str
    message: str  # one line: what is wrong and what to do
    severity: str  # ERROR or WARNING

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR


def one_line(text: str) -> str:
    return " ".join(text.split())


def err(code: str, message: str) -> Violation:
    return Violation(code, one_line(message), ERROR)


def warn(code: str, message: str) -> Violation:
    return Violation(code, one_line(message), WARNING)


def fold(text: str) -> str:
    """Lowercase without accents, so 'Masqué' and 'masque' compare equal."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
