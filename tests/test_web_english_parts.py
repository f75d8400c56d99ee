"""The program's English detail inside a French page is marked as English (WCAG 3.1.2): a
French screen-reader voice read « letters that are not a label » as French words. The pages'
`en` filter and console.js's live updates split a text the same way."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from ivr.web.english_parts import english_marked, english_parts
from web_fixture import CAMPAIGN, login, make_web

SCRIPT = Path(__file__).resolve().parents[1] / "ivr" / "web" / "static" / "console.js"
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


HARNESS = r"""
const fs = require("fs");
function el() {
  return {dataset: {}, textContent: "", hidden: false, children: [],
          appendChild(c) { this.children.push(c); return c; },
          replaceChildren(...cs) { this.children = cs;
                                   this.textContent = cs.map((c) => c.textContent).join(""); }};
}
const why = el();
let source = null;
global.document = {body: Object.assign(el(), {dataset: {campaign: "demo", section: "overview"}}),
                   getElementById: (id) => id === "why-waiting" ? why : null,
                   querySelector: () => null, querySelectorAll: () => [],
                   createElement: () => el(),
                   createTextNode: (t) => ({textContent: t, lang: undefined}),
                   documentElement: {lang: "fr"}};
global.window = {EventSource: true};
global.EventSource = function () { source = this; };
eval(fs.readFileSync(process.argv[1], "utf8"));
const out = JSON.parse(process.argv[2]).map(function (text) {
  source.onmessage({data: JSON.stringify({
    counts: {}, in_flight: 0, cap: 0, calls_per_minute: 0, percent_complete: null,
    eta_s: null, desired: null, why_waiting: text, next_allowed: null, controllers: [],
    nodes: [], recent_calls: [], chart_svg: "", at: "x"})});
  return why.children.map((c) => [c.textContent, c.lang === "en"]);
});
console.log(JSON.stringify(out));
"""


def test_a_live_update_marks_the_english_as_the_page_does() -> None:
    node = shutil.which("node")
    assert node is not None, "node is not installed: bash scripts/setup.sh installs nodejs"
    out = subprocess.run([node, "-e", HARNESS, str(SCRIPT), json.dumps(TEXTS[:5])],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    for text, shown in zip(TEXTS, json.loads(out)):
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
