"""Every control a page shows has a name a screen reader says: a <label> around it or for its
id, or an aria-label (the prompts' recording inputs, one per prompt, each naming its prompt).
The prompts' file inputs, the opposition import's file and channel, and the look-up's number
had none."""
from __future__ import annotations

from html.parser import HTMLParser

import pytest

from web_fixture import CAMPAIGN, login, make_prompted_web

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
UNNAMED_TYPES = ("hidden", "submit", "button")  # not controls, or named by their text


@pytest.fixture
def web(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    return make_prompted_web(tmp_path, monkeypatch)  # the store plays no part: the templates


class _Controls(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.in_label, self.label_for = 0, set()
        self.controls: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "label":
            self.in_label += 1
            if a.get("for"):
                self.label_for.add(a["for"])
        elif tag in ("input", "select", "textarea") and a.get("type") not in UNNAMED_TYPES:
            self.controls.append({**a, "tag": tag, "wrapped": "yes" if self.in_label else None})

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.in_label -= 1

    def unnamed(self) -> list[dict[str, str | None]]:
        return [c for c in self.controls if not (c["wrapped"] or c.get("aria-label")
                                                  or c.get("id") in self.label_for)]


def _controls(page: str) -> _Controls:
    parser = _Controls()
    parser.feed(page)
    return parser


@pytest.mark.parametrize("section", ["overview", "run", "contacts", "prompts",
                                     "rights?number=%2B33199002000", "reports"])
def test_every_control_has_a_name(web, section: str) -> None:
    c = web.client()
    login(c, "ada")
    r = c.get(f"/c/{CAMPAIGN}/{section}")
    assert r.status_code == 200
    found = _controls(r.text)
    assert found.controls  # at least the campaign switcher
    assert found.unnamed() == []


def test_each_recording_input_names_its_prompt(web) -> None:
    c = web.client()
    login(c, "ada")
    found = _controls(c.get(f"/c/{CAMPAIGN}/prompts").text)
    files = [ctl for ctl in found.controls if ctl.get("type") == "file"]
    assert [ctl.get("aria-label") for ctl in files] == ["Enregistrement intro",
                                                         "Enregistrement message"]
