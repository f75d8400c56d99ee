"""Consent first (issue 16 item 3) and the time slot (item 9): what `ivr check` asks of the
intro, on every config the project ships or tests with."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO, make_config
from ivr import config
from ivr.compliance.campaign_check import prompt_violations
from ivr.compliance.consent_first import intro_problems, slot_problems
from ivr.compliance.prompt_legal import REQUIRED_PROMPTS

SENDER = "Marie Dupont, candidate aux élections municipales de Villeneuve"
GOOD = ("Bonjour, ici Marie Dupont, candidate à Villeneuve. Pour ne plus être appelé, appuyez "
        "sur 9 à tout moment. Acceptez-vous d'écouter mon message ? Pour oui, appuyez sur 1. "
        "Pour non, appuyez sur 2.")


def cfg_with(tmp_path: Path, intro: dict[str, Any] | str, **prompts: Any) -> config.Config:
    items: dict[str, Any] = {k: {"text": "Merci."} for k in REQUIRED_PROMPTS}
    items["intro"] = {"text": intro} if isinstance(intro, str) else intro
    # every key of the default flow.slots named with its slot's word (slot_problems asks it)
    items["slot_question"] = {"text": "Le matin, appuyez sur 1. L'après-midi, appuyez sur 2. "
                                      "En soirée, appuyez sur 3."}
    legal = {"sender": SENDER, "postal_address": "1 rue", "email": "a@b.fr"}
    return make_config(tmp_path, legal=legal,
                       prompts={"items": items, "build_dir": "build", **prompts})


def test_a_consent_first_intro_passes(tmp_path: Path) -> None:
    assert intro_problems(cfg_with(tmp_path, GOOD)) == []
    greeting_alone = "Bonjour. " + GOOD.removeprefix("Bonjour, ")
    assert intro_problems(cfg_with(tmp_path, greeting_alone)) == []


@pytest.mark.parametrize(("intro", "words"), [
    (GOOD.replace("Marie Dupont", "votre candidate"), "does not name the sender"),
    ("Votez pour une ville plus verte ! " + GOOD, "opens with something else"),
    (GOOD.replace("Pour ne plus être appelé, appuyez sur 9 à tout moment. ", "") +
     " Pour ne plus être appelé, appuyez sur 9.", "how to object in its first 2 sentences"),
    (GOOD.replace("Pour non, appuyez sur 2.", ""), "consent question with both keys"),
    (GOOD.replace("Pour oui, appuyez sur 1. ", ""), "consent question with both keys"),
    (GOOD.replace("Acceptez-vous d'écouter mon message ?", "Mon message suit."),
     "consent question with both keys"),
    (GOOD + " Je me présente " + "pour une ville plus verte et plus juste, " * 3, "lasts"),
])
def test_each_consent_first_rule_is_refused_naming_the_key(
        tmp_path: Path, intro: str, words: str) -> None:
    problems = intro_problems(cfg_with(tmp_path, intro))
    assert any(words in p for p in problems), problems
    assert all(p.startswith("prompts.items.intro") and "\n" not in p for p in problems)


def test_the_built_duration_wins_over_the_estimate(tmp_path: Path) -> None:
    cfg = cfg_with(tmp_path, GOOD, intro_max_s=10)
    assert any("estimated" in p for p in intro_problems(cfg))  # ~16 s of words
    build = tmp_path / "build"
    build.mkdir()
    entry = {"text": " ".join(GOOD.split()), "duration_s": 9.5}
    (build / "manifest.json").write_text(json.dumps({"prompts": {"intro": entry}}))
    assert intro_problems(cfg) == []
    entry["duration_s"] = 12.0
    (build / "manifest.json").write_text(json.dumps({"prompts": {"intro": entry}}))
    assert any("12.0 s (built)" in p for p in intro_problems(cfg))
    stale = {**entry, "text": "an older intro", "duration_s": 1.0}  # not this text: estimated
    (build / "manifest.json").write_text(json.dumps({"prompts": {"intro": stale}}))
    assert any("estimated" in p for p in intro_problems(cfg))


def test_a_recorded_intro_is_judged_by_its_transcript_and_built_duration(tmp_path: Path) -> None:
    cfg = cfg_with(tmp_path, {"file": "intro.wav", "transcript": GOOD}, intro_max_s=5)
    build = tmp_path / "build"
    build.mkdir()
    (build / "manifest.json").write_text(json.dumps(
        {"prompts": {"intro": {"file": "intro.wav", "duration_s": 4.0}}}))
    assert intro_problems(cfg) == []


def test_ask_slot_defaults_to_true_and_off_is_warned(tmp_path: Path) -> None:
    assert config.Config().flow.ask_slot is True
    cfg = cfg_with(tmp_path, GOOD)
    assert slot_problems(cfg) == []
    off = make_config(tmp_path, flow={"ask_slot": False})
    [(severity, message)] = slot_problems(off)
    assert severity == "warning" and "flow.ask_slot" in message
    no_question = make_config(tmp_path, prompts={"items": {"intro": {"text": GOOD}}})
    [(severity, message)] = slot_problems(no_question)
    assert severity == "error" and "prompts.items.slot_question" in message


def _integration_texts() -> tuple[dict[str, Any], dict[str, str]]:
    import importlib.util
    spec = importlib.util.spec_from_file_location("itest_conftest",
                                                  REPO / "tests/integration/conftest.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # its imports are the package's own: never skipped
    return module.itest_config_dict(Path("/tmp")), module.TEXTS


def test_every_shipped_and_test_config_passes(tmp_path: Path) -> None:
    shipped = config.load(REPO / "config.yaml")
    assert [v for v in prompt_violations(shipped) if v.is_error] == []
    data, _ = _integration_texts()
    assert data["flow"]["ask_slot"] is False  # stated, as those tests need it
    itest = config.from_dict(data, tmp_path)
    assert [v.message for v in prompt_violations(itest) if v.is_error] == []
    demo = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    assert intro_problems(config.from_dict(demo, REPO)) == []
