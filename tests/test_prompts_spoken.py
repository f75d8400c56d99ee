"""The offline voice says the objection address as written: espeak-ng read
`radiation@dupont2026.example.fr` without the « point » before « fr » (found in review), so a
callee who wrote down the legal mentions' address wrote a wrong one."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ivr.prompts import tts
from ivr.prompts.spoken import spoken

LEGAL = (Path(__file__).resolve().parents[1] / "prompts" / "legal.txt").read_text("utf-8")


def test_an_address_is_said_in_the_prompts_language() -> None:
    assert spoken("écrivez à radiation@dupont2026.example.fr.", "fr") == (
        "écrivez à radiation arobase dupont2026 point example point fr.")
    assert spoken("Write to opt_out+fr@marie-dupont.eu, or call", "en") == (
        "Write to opt underscore out plus fr at marie dash dupont dot eu, or call")
    assert spoken("à a.b@c.fr-x.org", "fr-FR") == "à a point b arobase c point fr tiret x point org"
    assert spoken("schreiben Sie a@b.de", "de") == "schreiben Sie a@b.de"  # no words: as written
    assert spoken("12 rue de la République, 75001 Paris. Merci.", "fr") == (
        "12 rue de la République, 75001 Paris. Merci.")


def test_espeak_is_given_the_address_in_words(monkeypatch) -> None:
    given: list[str] = []
    monkeypatch.setattr(tts, "render_espeak",
                        lambda text, **kw: given.append(text) or b"RIFF")
    tts.render_tts(LEGAL, "espeak", language="fr", tld="fr", voice="fr")
    assert "radiation arobase dupont2026 point example point fr." in given[0]
    assert "@" not in given[0]


def test_espeak_says_each_point_of_the_legal_address() -> None:
    exe = shutil.which("espeak-ng")
    assert exe, "espeak-ng is not installed: bash scripts/setup.sh installs it"

    def phonemes(text: str) -> str:
        return subprocess.run([exe, "-v", "fr", "--stdin", "-q", "-x"], input=text,
                              capture_output=True, text=True, timeout=30, check=True).stdout
    said = phonemes(spoken(LEGAL, "fr"))
    point = "pw,E~"  # « point »
    tail = said[said.index("arob"):]
    assert tail.count(point) == 2, tail  # dupont2026 . example . fr
    assert phonemes(LEGAL)[phonemes(LEGAL).index("arob"):].count(point) < 2  # as it was
