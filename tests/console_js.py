"""console.js run under node on a stub of the few DOM objects it touches: a test's own script
(after PRELUDE) makes the page's elements with `el`, loads console.js with `load`, sends events
with `send` and prints what the script wrote as JSON, which `run_console` returns."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parents[1] / "ivr" / "web" / "static" / "console.js"

PRELUDE = r"""
const fs = require("fs");
const given = JSON.parse(process.argv[2]);
function el(data, tag) {
  return {dataset: data || {}, textContent: "", title: "", hidden: false, children: [],
          tag: tag || "",
          appendChild(c) { this.children.push(c); this.lastChild = c; return c; },
          replaceChildren(...cs) { this.children = cs;
                                   this.textContent = cs.map((c) => c.textContent).join(""); }};
}
let source = null, url = null;  // the live stream's source, and the URL it was opened on
global.CSS = {escape: (s) => s};
// The page: its elements by id, its tables' bodies by selector, <body>'s data, its language.
function load(els, tbodies, body, lang) {
  global.document = {body: el(Object.assign({campaign: "demo", section: "overview"}, body)),
                     getElementById: (id) => els[id] || null,
                     querySelector: (q) => tbodies[q] || null,
                     querySelectorAll: () => [], createElement: (tag) => el({}, tag),
                     createTextNode: (t) => ({textContent: t}),
                     documentElement: {lang: lang || "fr"}};
  global.window = {EventSource: true};
  global.EventSource = function (u) { source = this; url = u; };
  eval(fs.readFileSync(process.argv[1], "utf8"));
}
// One live update: an overview with nothing in it, but for `event`'s fields.
function send(event) {
  source.onmessage({data: JSON.stringify(Object.assign({
    counts: {}, in_flight: 0, cap: 0, calls_per_minute: 0, percent_complete: null,
    eta_s: null, desired: null, why_waiting: "", next_allowed: null, controllers: [],
    nodes: [], recent_calls: [], chart_svg: "", at: "x"}, event))});
}
"""


def run_console(script: str, given: Any) -> Any:
    """What `script` (after PRELUDE) printed, as JSON; `given` is its `given`."""
    node = shutil.which("node")
    assert node is not None, "node is not installed: bash scripts/setup.sh installs nodejs"
    out = subprocess.run([node, "-e", PRELUDE + script, str(SCRIPT), json.dumps(given)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out)
