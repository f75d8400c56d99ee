"""The slot question names each key of flow.slots with that slot's word, as the config reads
them: a person who pressed 1 "en soirée" while flow.slots.1 is morning was stored slot morning
and called in the morning by later runs (`ivr check` never read the question's text)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from conftest import REPO, make_config
from ivr import config
from ivr.cli import cli
from ivr.compliance.consent_first import slot_problems
from ivr.compliance.prompt_legal import REQUIRED_PROMPTS

SHIPPED_SLOTS = (REPO / "prompts/slot_question.txt").read_text(encoding="utf-8")


def cfg_with(tmp_path: Path, slot_question: str, **flow: Any) -> config.Config:
    items: dict[str, Any] = {k: {"text": "Merci."} for k in REQUIRED_PROMPTS}
    items["intro"] = {"text": (REPO / "prompts/intro.txt").read_text(encoding="utf-8")}
    items["slot_question"] = {"text": slot_question}
    legal = {"sender": "Marie Dupont, candidate", "postal_address": "1 rue", "email": "a@b.fr"}
    return make_config(tmp_path, legal=legal, flow=flow,
                       prompts={"items": items, "build_dir": "build"})


@pytest.mark.parametrize(("question", "slots"), [
    (SHIPPED_SLOTS, None),
    ("Quel moment ? 1 matin, 2 après-midi, 3 soir.", None),
    ("Pour être appelé le matin, tapez 1, l'après-midi, tapez 2, le soir, tapez 3.", None),
    ("En soirée, appuyez sur 1. Le matin, appuyez sur 2.", {"1": "evening", "2": "morning"}),
])
def test_a_slot_question_naming_each_key_with_its_slot_passes(
        tmp_path: Path, question: str, slots: dict[str, str] | None) -> None:
    flow = {"slots": slots} if slots else {}
    assert slot_problems(cfg_with(tmp_path, question, **flow)) == []


@pytest.mark.parametrize(("question", "words"), [
    ("Le matin, appuyez sur 3. L'après-midi, appuyez sur 2. En soirée, appuyez sur 1.",
     "says key 1 is for en soirée, but flow.slots.1 is morning"),
    ("Le matin, appuyez sur 3. L'après-midi, appuyez sur 2. En soirée, appuyez sur 1.",
     "says key 3 is for le matin, but flow.slots.3 is evening"),
    ("Quand préférez-vous être appelé ? Appuyez sur 1, 2 ou 3.",
     "does not name key 1 with 'le matin' (flow.slots.1 is morning)"),
    ("Le matin, appuyez sur 1. L'après-midi, appuyez sur 2.",
     "does not name key 3 with 'en soirée' (flow.slots.3 is evening)"),
    ("Le matin ou l'après-midi, appuyez sur 1. En soirée, appuyez sur 3.",
     "says key 1 is for l'après-midi"),
])
def test_a_slot_question_whose_keys_are_not_their_slots_is_an_error_naming_the_key(
        tmp_path: Path, question: str, words: str) -> None:
    problems = slot_problems(cfg_with(tmp_path, question))
    assert any(severity == "error" and words in message for severity, message in problems), \
        problems
    assert all(m.startswith("prompts.items.slot_question ") and "\n" not in m
               for _, m in problems)


def test_ivr_check_names_the_slot_key_said_for_another_slot(cfg_file: Path) -> None:
    """The shipped slot question with flow.slots reversed: `ivr check` gives the error line."""
    data = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))
    data["flow"]["slots"] = {"1": "evening", "2": "afternoon", "3": "morning"}
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(cfg_file), "check"])
    assert result.exit_code == 1
    assert any(line.startswith("error ask_slot: prompts.items.slot_question says key 1 is for "
                               "le matin, but flow.slots.1 is evening")
               for line in result.output.splitlines()), result.output
