"""Counts as a French operator reads them: 12 345 (a narrow no-break space groups the
thousands), 12,345 on an English page; the page's filter and the live updates (console.js,
run under node) write the same. Before, 100000 contacts read as one run of digits."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ivr.web.display import whole
from ivr.web.import_words import summary
from ivr.web.render import templates

SCRIPT = Path(__file__).resolve().parents[1] / "ivr" / "web" / "static" / "console.js"
VALUES = [0, 7, 999, 1000, 12345, 100000, 1234567, -4200, None, "—", 2.5]


def test_a_count_groups_its_thousands_in_the_pages_language() -> None:
    assert whole("fr", 12345) == "12\u202f345" and whole("en", 12345) == "12,345"
    assert whole("fr", 1234567) == "1\u202f234\u202f567" and whole("fr", 999) == "999"
    assert whole("fr", None) == "—" and whole("fr", "—") == "—" and whole("fr", True) == "True"
    page = templates.env.from_string("{{ n | num }}")
    assert page.render(lang="fr", n=100000) == "100\u202f000"
    assert page.render(lang="en", n=100000) == "100,000"


def test_an_uploads_french_summary_groups_its_counts() -> None:
    said = summary("fr", {"added": 12000, "merged": 0, "duplicates": 0, "unchanged": 0,
                          "opted_out": 1500, "rejected_total": 3, "summary": "x"})
    assert said == ("12\u202f000 ajouté(s), 0 fusionné(s), 0 inchangé(s), 1\u202f500 sur la "
                    "liste d'opposition (jamais appelés), 3 rejeté(s)")


HARNESS = r"""
const fs = require("fs");
function el(data) {
  return {dataset: data || {}, textContent: "", hidden: false, children: [],
          appendChild(c) { this.children.push(c); this.lastChild = c; return c; },
          replaceChildren(...cs) { this.children = cs; }};
}
const values = JSON.parse(process.argv[3]);
const els = {"in-flight": el(), "cap": el()};
const tbodies = {"#nodes tbody": el()};
let source = null;
global.document = {body: el({campaign: "demo", section: "overview"}),
                   getElementById: (id) => els[id] || null,
                   querySelector: (q) => tbodies[q] || null,
                   querySelectorAll: () => [], createElement: () => el(),
                   documentElement: {lang: process.argv[2]}};
global.window = {EventSource: true};
global.EventSource = function () { source = this; };
eval(fs.readFileSync(process.argv[1], "utf8"));
const shown = values.map(function (v) {
  source.onmessage({data: JSON.stringify({
    counts: {}, in_flight: v, cap: v, calls_per_minute: 0, percent_complete: null, eta_s: null,
    desired: null, why_waiting: "", next_allowed: null, controllers: [],
    nodes: [{name: "n1", in_flight: v, cap: v, up: true, holding: ""}], recent_calls: [],
    chart_svg: "", at: "x"})});
  const node = tbodies["#nodes tbody"].children[0].children;
  return [els["in-flight"].textContent, node[1].textContent, node[2].textContent];
});
console.log(JSON.stringify(shown));
"""


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_a_live_update_writes_the_counts_as_the_page_does(lang: str) -> None:
    node = shutil.which("node")
    assert node is not None, "node is not installed: bash scripts/setup.sh installs nodejs"
    out = subprocess.run([node, "-e", HARNESS, str(SCRIPT), lang, json.dumps(VALUES)],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    for value, (in_flight, node_in_flight, node_cap) in zip(VALUES, json.loads(out)):
        assert in_flight == node_in_flight == whole(lang, value), value
        assert node_cap == whole(lang, value or "—"), value  # no cap: "—", as the page
