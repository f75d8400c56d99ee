"""The program's English detail inside a French page is marked as English (WCAG 3.1.2): a
French screen-reader voice read « letters that are not a label » as French words. The pages'
`en` filter and console.js's live updates split a text the same way."""
from __future__ import annotations

import re
from pathlib import Path

from console_js import run_console
from ivr.web.english_parts import english_marked, english_parts
from web_fixture import CAMPAIGN, login, make_web

TEXTS = [
    "number: 'x' n'est pas valide (détail en anglais : letters ('x') that are not a label)",
    "3 contact(s) — a (détail en anglais : one (two)); 2 contact(s) — b (détail en anglais : "
    "three)",
    "Détail en anglais : the store is locked; retry",
    "x (détail en anglais : never closed",
    "rien d'anglais ici (ni là)",
    "",
]


def test_a_text_is_cut_where_its_english_starts_and_ends() -> None:
    assert english_parts(TEXTS[0]) == [
        ("number: 'x' n'est pas valide (détail en anglais : ", False),
        ("letters ('x') that are not a label", True), (")", False)]
    assert [p for p, en in english_parts(TEXTS[1]) if en] == ["one (two)", "three"]
    assert english_parts(TEXTS[2]) == [("Détail en anglais : ", False),
                                       ("the store is locked; retry", True)]
    assert english_parts(TEXTS[4]) == [(TEXTS[4], False)] and english_parts("") == []
    assert str(english_marked("Détail en anglais : <b>&")) == (
        'Détail en anglais : <span lang="en">&lt;b&gt;&amp;</span>')
    assert str(english_marked("a < b")) == "a &lt; b"


# Why nobody is called as live updates rewrite it, one per text: its pieces, and which are
# marked English.
SHOWN = r"""
const why = el();
load({"why-waiting": why}, {});
console.log(JSON.stringify(given.map(function (text) {
  send({why_waiting: text});
  return why.children.map((c) => [c.textContent, c.lang === "en"]);
})));
"""


def test_a_live_update_marks_the_english_as_the_page_does() -> None:
    for text, shown in zip(TEXTS, run_console(SHOWN, TEXTS[:5])):
        assert [tuple(p) for p in shown] == english_parts(text), text


def test_a_refusal_on_a_french_page_marks_its_english(
        tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    web = make_web(tmp_path, monkeypatch)  # the store plays no part: the templates
    c = web.client()
    token = login(c, "otto")
    r = c.post(f"/c/{CAMPAIGN}/rights/optout",
               data={"number": "banana", "via": "email", "csrf_token": token})
    said = re.search(r'id="optout-error" role="alert">(.*?)</p>', r.text)
    assert said and said.group(1).endswith(
        '(détail en anglais : <span lang="en">letters (&#39;banana&#39;) that are not a label '
        'such as &#39;Tél.&#39;: give the number alone</span>)'), r.text
