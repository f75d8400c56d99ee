"""The run and prompts pages name the rule of each `ivr check` finding in French, before its
own line in the command line's English (which names the config key or command to fix it).
Every code the checks write has its headline: the codes are read from the modules that write
them, so a new code without French words fails here. Words only: SQLite."""
from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from web_fixture import CAMPAIGN, login, make_web, said
from ivr.web.check_words import HEADLINES, finding

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
IVR = Path(__file__).resolve().parents[1] / "ivr"
# How the checks write a code: _err/_warn("code", …) (err/warn in list_sources.py),
# Violation("code", …), Finding("code", …), the decree's ("code", "message") pairs, and the
# console's {"code": "code", …}.
WRITTEN = re.compile(r'(?<![\w.])(?:_?err|_?warn|Violation|Finding)\(\s*"([a-z_0-9]+)"'
                     r'|out\.append\(\(\s*"([a-z_0-9]+)"|"code":\s*"([a-z_0-9]+)"')
MODULES = ("compliance/preflight.py", "compliance/list_sources.py", "compliance/campaign_check.py",
           "telephony/pbx_probe.py", "web/service.py", "config_checks.py")


def _written() -> set[str]:
    codes = set()
    for name in MODULES:
        for found in WRITTEN.finditer((IVR / name).read_text()):
            codes.add(next(g for g in found.groups() if g))
    return codes


def test_every_code_the_checks_write_has_its_french_headline_and_no_other() -> None:
    written = _written()
    assert len(written) >= 40  # the scan reads the modules (it found 45 when written)
    assert written - set(HEADLINES) == set(), "codes with no French headline"
    assert set(HEADLINES) - written == set(), "headlines of codes no check writes"


def _text(lang: str, v: dict[str, str]) -> str:
    """The finding as a page reads it, its English marked or not."""
    return html.unescape(said(str(finding(lang, v))))


def test_a_finding_is_its_headline_then_its_english_line() -> None:
    v = {"severity": "error", "code": "caller_id_mobile", "message": "campaign.caller_id …"}
    assert _text("fr", v) == ("numéro présenté mobile, interdit aux appels automatisés "
                              "(ARCEP 2022-1583) — campaign.caller_id …")
    assert _text("en", v) == "campaign.caller_id …"
    assert _text("fr", {**v, "code": "brand_new"}) == "campaign.caller_id …"
    assert str(finding("fr", {**v, "code": "brand_new"})) == (
        '<span lang="en">campaign.caller_id …</span>')
    assert str(finding("en", {**v, "message": "a < b"})) == "a &lt; b"


@pytest.fixture
def web(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    # Every day 08:00-21:00: wider than the decree's windows, an error naming its rule.
    return make_web(tmp_path, monkeypatch,
                    schedule={"windows": [{"days": "mon-sun", "hours": ["08:00-21:00"]}]})


def _findings(page: str, list_id: str) -> list[str]:
    block = html.unescape(said(page.split(f'id="{list_id}"')[1].split("</ul>")[0]))
    return re.findall(r"<li class=\"\w+\"><strong>[^<]*</strong> ([^<]*)</li>", block)


def _english(page: str, list_id: str) -> list[str]:
    """The findings' parts marked as English."""
    block = page.split(f'id="{list_id}"')[1].split("</ul>")[0]
    return re.findall(r'<span lang="en">([^<]*)</span></li>', block)


def test_the_run_page_names_each_findings_rule_in_french(web) -> None:
    c = web.client()
    login(c, "ada")
    shown = _findings(c.get(f"/c/{CAMPAIGN}/run").text, "preflight")
    wide = [s for s in shown if s.startswith("window_wider_than_decree : ")]
    assert wide and wide[0].startswith(
        "window_wider_than_decree : plages d'appel plus larges que la loi (décret 2022-1313) — "
        "schedule.windows go beyond Décret 2022-1313"), shown
    for line in shown:  # every finding: its code, its French rule, then its English line
        code = line.split(" : ", 1)[0]
        assert line.startswith(f"{code} : {HEADLINES[code]} — "), line
    page = c.get(f"/c/{CAMPAIGN}/run").text  # each English line marked, a French voice
    assert len(_english(page, "preflight")) == len(shown)  # would read it as French
    assert _english(page, "preflight")[shown.index(wide[0])].startswith(
        "schedule.windows go beyond Décret 2022-1313")
    c.get("/lang/en")
    page = c.get(f"/c/{CAMPAIGN}/run").text
    assert 'lang="en"' not in page.split('id="preflight"')[1].split("</ul>")[0]
    shown = _findings(page, "preflight")
    assert any(s.startswith("window_wider_than_decree: schedule.windows go beyond")  # English colon
               for s in shown), shown


def test_the_prompts_pages_legal_findings_name_their_rule(tmp_path, monkeypatch) -> None:
    web = make_web(tmp_path, monkeypatch, prompts={"items": {
        "intro": {"text": "Bonjour."}}})  # no question, no legal mentions: findings
    c = web.client()
    login(c, "ada")
    shown = _findings(c.get(f"/c/{CAMPAIGN}/prompts").text, "legal")
    assert shown and all(
        line.startswith(f"{line.split(' : ', 1)[0]} : {HEADLINES[line.split(' : ', 1)[0]]} — ")
        for line in shown), shown
