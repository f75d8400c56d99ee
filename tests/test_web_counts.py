"""Counts as a French operator reads them: 12 345 (a narrow no-break space groups the
thousands), 12,345 on an English page; the page's filter and the live updates (console.js,
run under node) write the same. Before, 100000 contacts read as one run of digits."""
from __future__ import annotations

import pytest

from console_js import run_console
from ivr.web.display import whole
from ivr.web.import_words import summary
from ivr.web.render import templates

VALUES = [0, 7, 999, 1000, 12345, 100000, 1234567, -4200, None, "—", 2.5]


def test_a_count_groups_its_thousands_in_the_pages_language() -> None:
    assert whole("fr", 12345) == "12\u202f345" and whole("en", 12345) == "12,345"
    assert whole("fr", 1234567) == "1\u202f234\u202f567" and whole("fr", 999) == "999"
    assert whole("fr", None) == "—" and whole("fr", "—") == "—"
    assert whole("fr", True) == "True"
    page = templates.env.from_string("{{ n | num }}")
    assert page.render(lang="fr", n=100000) == "100\u202f000"
    assert page.render(lang="en", n=100000) == "100,000"


def test_an_uploads_french_summary_groups_its_counts() -> None:
    said = summary("fr", {"added": 12000, "merged": 0, "duplicates": 0, "unchanged": 0,
                          "opted_out": 1500, "rejected_total": 3, "summary": "x"})
    assert said == ("12\u202f000 ajouté(s), 0 fusionné(s), 0 inchangé(s), 1\u202f500 sur la "
                    "liste d'opposition (jamais appelés), 3 rejeté(s)")


# In flight, and a node's in flight and cap, as live updates rewrite them, one per value.
SHOWN = r"""
const els = {"in-flight": el(), "cap": el()};
const tbodies = {"#nodes tbody": el()};
load(els, tbodies, {}, given.lang);
const shown = given.values.map(function (v) {
  send({in_flight: v, cap: v, nodes: [{name: "n1", in_flight: v, cap: v, up: true, holding: ""}]});
  const node = tbodies["#nodes tbody"].children[0].children;
  return [els["in-flight"].textContent, node[1].textContent, node[2].textContent];
});
console.log(JSON.stringify(shown));
"""


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_a_live_update_writes_the_counts_as_the_page_does(lang: str) -> None:
    shown = run_console(SHOWN, {"lang": lang, "values": VALUES})
    for value, (in_flight, node_in_flight, node_cap) in zip(VALUES, shown):
        assert in_flight == node_in_flight == whole(lang, value), value
        assert node_cap == whole(lang, value or "—"), value  # no cap: "—", as the page
