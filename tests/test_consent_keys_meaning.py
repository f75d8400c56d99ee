"""The intro says what flow.yes_key and flow.no_key mean, as the config reads them: a person
who pressed the key the intro calls "non" heard the political message and was stored as a
consent with its proof row (`ivr check` and `ivr prompts build` accepted the intro as long as
both keys appeared somewhere in it)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from conftest import REPO, make_config
from ivr import config
from ivr.cli import cli
from ivr.compliance.consent_first import intro_problems, require_consent_first
from ivr.compliance.prompt_legal import REQUIRED_PROMPTS
from ivr.errors import ComplianceError

HEAD = ("Bonjour, ici Marie Dupont, candidate à Villeneuve. Pour ne plus être appelé, appuyez "
        "sur 9 à tout moment. Acceptez-vous d'écouter mon message ? ")
SHIPPED_INTRO = (REPO / "prompts/intro.txt").read_text(encoding="utf-8")


def cfg_with(tmp_path: Path, intro: str, **flow: Any) -> config.Config:
    items: dict[str, Any] = {k: {"text": "Merci."} for k in REQUIRED_PROMPTS}
    items["intro"] = {"text": intro}
    legal = {"sender": "Marie Dupont, candidate", "postal_address": "1 rue", "email": "a@b.fr"}
    return make_config(tmp_path, legal=legal, flow=flow,
                       prompts={"items": items, "build_dir": "build"})


@pytest.mark.parametrize(("intro", "flow"), [
    (SHIPPED_INTRO, {}),
    (HEAD + "Oui, appuyez sur 1. Non, appuyez sur 2.", {}),  # the integration tests' intro
    (HEAD + "Pour oui, appuyez sur 2. Pour non, appuyez sur 1.",
     {"yes_key": "2", "no_key": "1"}),
    (HEAD + "Appuyez sur 1 pour accepter, sur 2 pour refuser.", {}),
    (HEAD + "Si vous voulez l'écouter, appuyez sur 1, sinon sur 2.", {}),
    (HEAD + "Si vous êtes d'accord, appuyez sur un. Si vous ne souhaitez pas l'écouter, "
            "appuyez sur deux.", {}),
    (HEAD + "Pour oui, appuyez sur 1, pour non, appuyez sur 2.", {}),
    # The words after their keys, the last key's being none the gate knew: key 2 was said to
    # be for 'oui' and key 1 for nothing
    (HEAD + "Appuyez sur la touche 1 pour l'écouter, ou sur la touche 2 pour raccrocher.", {}),
    (HEAD + "Pour écouter le message, appuyez sur 1 ; pour mettre fin à l'appel, appuyez sur 2.",
     {}),
    (HEAD + "Tapez 1 si vous acceptez, 2 si vous refusez.", {}),
    (HEAD + "Oui : touche 1. Non : touche 2.", {}),
    # A sentence opening with its meaning ties each key to the words before it (was: key 1
    # "for 'non'"); 'ignorer', a negation with plus/rien or three words inside it refuse
    (HEAD + "Si vous souhaitez écouter le message, tapez 1, sinon tapez 2 pour raccrocher.", {}),
    (HEAD + "Tapez 1 pour continuer, tapez 2 pour ne rien entendre.", {}),
    (HEAD + "Tapez 1 pour l'écouter. Pour ignorer ce message, tapez 2.", {}),
    (HEAD + "Tapez 1 pour oui. Tapez 2 si cela ne vous intéresse vraiment pas.", {}),
    (HEAD + "Pour l'écouter, tapez 1 sans raccrocher. Sinon, tapez 2.", {}),
])

def test_an_intro_that_says_what_each_key_means_passes(
        tmp_path: Path, intro: str, flow: dict[str, str]) -> None:
    assert intro_problems(cfg_with(tmp_path, intro, **flow), length=False) == []


@pytest.mark.parametrize("intro", [
    # Each says 2 = listen and 1 = refuse, and passed the gate: "ne raccrochez pas" and "sans
    # raccrocher" read as refusals, "ne … plus / jamais / rien" not as negations
    HEAD + "Ne raccrochez pas et tapez 2. Si vous ne voulez plus rien entendre, tapez 1.",
    HEAD + "Pour l'écouter, restez en ligne sans raccrocher et tapez 2. Si vous ne voulez "
           "jamais entendre parler de politique, tapez 1.",
    HEAD + "Pour l'écouter, tapez 2 sans raccrocher. Si vous ne voulez plus entendre parler "
           "de nous, tapez 1.",
    HEAD + "Tapez 2 et ne raccrochez pas. Tapez 1 si vous ne souhaitez jamais être rappelé.",
    HEAD + "Tapez deux sans raccrocher pour l'écouter, ou tapez un si vous ne voulez rien "
           "entendre.",
])
def test_an_intro_that_swaps_the_keys_in_other_words_is_refused(tmp_path: Path,
                                                                 intro: str) -> None:
    problems = intro_problems(cfg_with(tmp_path, intro), length=False)
    assert any("is for 'non', but flow.yes_key is 1" in p for p in problems), problems


@pytest.mark.parametrize(("intro", "flow", "words"), [
    (HEAD + "Pour oui, appuyez sur 2. Pour non, appuyez sur 1.", {},
     "says key 1 is for 'non', but flow.yes_key is 1"),
    (SHIPPED_INTRO, {"yes_key": "2", "no_key": "1"},
     "says key 2 is for 'non', but flow.yes_key is 2"),
    (SHIPPED_INTRO, {"yes_key": "2", "no_key": "1"},
     "says key 1 is for 'oui', but flow.no_key is 1"),
    (HEAD + "Appuyez sur 1 ou sur 2.", {},
     "names key 1 without saying it is for 'oui' (flow.yes_key)"),
    (HEAD + "Appuyez sur 1 ou sur 2.", {},
     "names key 2 without saying it is for 'non' (flow.no_key)"),
    (HEAD + "Si vous ne voulez pas, appuyez sur 1 ou 2.", {},
     "says key 1 is for 'non', but flow.yes_key is 1"),
    (HEAD + "Si vous ne voulez pas, appuyez sur 1 ou 2.", {},
     "names key 2 without saying it is for 'non'"),
    (HEAD + "Pour oui, appuyez sur 1 ou sur 2.", {}, "names key 2 without saying"),
])
def test_an_intro_whose_keys_contradict_or_lack_their_meaning_is_refused(
        tmp_path: Path, intro: str, flow: dict[str, str], words: str) -> None:
    cfg = cfg_with(tmp_path, intro, **flow)
    problems = intro_problems(cfg, length=False)
    assert any(words in p for p in problems), problems
    assert all(p.startswith("prompts.items.intro ") and "\n" not in p for p in problems)
    yes, no = cfg.flow.yes_key, cfg.flow.no_key
    assert all(f"'Pour oui, appuyez sur {yes}. Pour non, appuyez sur {no}.'" in p
               for p in problems)
    with pytest.raises(ComplianceError, match="nothing was built"):  # the build's gate
        require_consent_first(cfg)


def test_ivr_check_and_build_name_the_swapped_keys(cfg_file: Path) -> None:
    """The shipped intro with yes_key 2 / no_key 1: `ivr check` gives the error line,
    `ivr prompts build` refuses before building anything."""
    data = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))
    data["flow"] |= {"yes_key": "2", "no_key": "1"}
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(cfg_file), "check"])
    assert result.exit_code == 1
    assert any(line.startswith("error consent_first: prompts.items.intro says key 2 is for "
                               "'non', but flow.yes_key is 2")
               for line in result.output.splitlines()), result.output
    built = CliRunner().invoke(cli, ["--config", str(cfg_file), "prompts", "build",
                                     "--no-install"])
    assert built.exit_code != 0 and "nothing was built" in built.output, built.output
    assert not (cfg_file.parent / "build").exists()
