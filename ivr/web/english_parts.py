"""The English inside a French page marked as English (WCAG 3.1.2, language of parts): the
program's own detail (« Détail en anglais : … », « (détail en anglais : …) ») in a
`<span lang="en">`, so a French screen-reader voice does not read it as French. console.js's
`putMarked` splits a live update the same way. Pure."""
from __future__ import annotations

import re

from markupsafe import Markup, escape

MARK = re.compile(r"[Dd]étail en anglais\s*:\s*")


def english_parts(text: str) -> list[tuple[str, bool]]:
    """`text` in pieces, each (words, is it English): the English runs from a mark to the next
    mark, or, after « (détail en anglais : », to the ")" closing that parenthesis."""
    marks = list(MARK.finditer(text))
    parts: list[tuple[str, bool]] = []
    pos = 0
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        if mark.start() > 0 and text[mark.start() - 1] == "(":
            end = _closing(text, mark.end(), end)
        parts += [(text[pos:mark.end()], False), (text[mark.end():end], True)]
        pos = end
    parts.append((text[pos:], False))
    return [(words, english) for words, english in parts if words]


def _closing(text: str, start: int, end: int) -> int:
    """Where the ")" closing a "(" just before `start` is, before `end` (else `end`)."""
    depth = 1
    for i in range(start, end):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    return end


def english_marked(text: object) -> Markup:
    """The page's HTML for `text`: escaped, its English parts in `<span lang="en">`."""
    return Markup("").join(
        Markup('<span lang="en">{}</span>').format(words) if english else escape(words)
        for words, english in english_parts("" if text is None else str(text)))
