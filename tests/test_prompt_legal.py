"""Legal content of the prompts: sender, postal address, e-mail, opt-out instruction."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import make_config
from ivr import config
from ivr.config import Config
from ivr.errors import ComplianceError
from ivr.compliance.prompt_legal import REQUIRED_PROMPTS, check_legal, missing_legal_items

REPO = Path(__file__).resolve().parents[1]

SENDER = "Marie Dupont, candidate aux élections municipales de Villeneuve"
ADDRESS = "12 rue de la République, 75001 Paris"
EMAIL = "radiation@dupont2026.example.fr"
INTRO = ("Bonjour. Pour ne plus être appelé, appuyez sur 9 à tout moment. "
         "Pour oui, appuyez sur 1.")
LEGAL = f"Ce message vous est adressé par {SENDER}. Écrivez au {ADDRESS}, ou à {EMAIL}."


def make_cfg(tmp_path: Path, *, items: dict[str, Any] | None = None,
             legal: dict[str, str] | None = None, optout_key: str = "9") -> Config:
    base = {key: {"text": "Merci."} for key in REQUIRED_PROMPTS}
    base["intro"] = {"text": INTRO}
    base["legal"] = {"text": LEGAL}
    for key, value in (items or {}).items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    yes = "1" if optout_key != "1" else "3"
    return make_config(
        tmp_path, legal=legal or {"sender": SENDER, "postal_address": ADDRESS, "email": EMAIL},
        flow={"optout_key": optout_key, "yes_key": yes, "no_key": "2"},
        prompts={"items": base})


def test_shipped_demo_config_is_compliant() -> None:
    cfg = config.load(REPO / "config.yaml")
    assert missing_legal_items(cfg) == []
    check_legal(cfg)


def test_compliant_minimal_config(tmp_path: Path) -> None:
    assert missing_legal_items(make_cfg(tmp_path)) == []


@pytest.mark.parametrize(("drop", "label"), [
    (SENDER, "sender"), (ADDRESS, "postal address"), (EMAIL, "email")])
def test_legal_prompt_missing_item_is_named(tmp_path: Path, drop: str, label: str) -> None:
    cfg = make_cfg(tmp_path, items={"legal": {"text": LEGAL.replace(drop, "quelqu'un")}})
    problems = missing_legal_items(cfg)
    assert len(problems) == 1
    assert f"does not state the {label}" in problems[0]
    with pytest.raises(ComplianceError, match=f"the {label}"):
        check_legal(cfg)


def test_all_violations_in_one_line(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, items={"legal": {"text": "Au revoir."},
                                    "intro": {"text": "Bonjour."}})
    with pytest.raises(ComplianceError) as exc:
        check_legal(cfg)
    msg = str(exc.value)
    assert "\n" not in msg
    for label in ("sender", "postal address", "email", "opt-out instruction"):
        assert label in msg
    assert len(missing_legal_items(cfg)) == 4


def test_comparison_ignores_case_spacing_and_accents(tmp_path: Path) -> None:
    shouty = LEGAL.upper().replace(" ", "  \n ").replace("É", "E")
    cfg = make_cfg(tmp_path, items={"legal": {"text": shouty}})
    assert missing_legal_items(cfg) == []


def test_partial_email_is_not_enough(tmp_path: Path) -> None:
    text = LEGAL.replace(EMAIL, "radiation@dupont2026")
    cfg = make_cfg(tmp_path, items={"legal": {"text": text}})
    assert any("email" in p for p in missing_legal_items(cfg))


@pytest.mark.parametrize("intro", [
    "Pour ne plus être appelée, appuyez sur 9.",
    "Pour ne plus jamais être appelé, tapez 9.",
    "Pour vous opposer à ces appels, appuyez sur la touche 9.",
    "Pour vous désinscrire, appuyez sur 9 à tout moment.",
    "Pour demander la radiation de votre numéro, appuyez sur neuf.",
    "Dites stop en appuyant sur 9.",
    "POUR NE PLUS ETRE APPELE, APPUYEZ SUR 9 !",
])
def test_optout_phrasings_accepted(tmp_path: Path, intro: str) -> None:
    assert missing_legal_items(make_cfg(tmp_path, items={"intro": {"text": intro}})) == []


@pytest.mark.parametrize("intro", [
    "Bonjour, écoutez mon message. Appuyez sur 9.",                    # no opt-out phrase
    "Pour ne plus être appelé, appuyez sur 8.",                        # wrong key
    "Pour ne plus être appelé, écrivez au 12 rue X, 75009 Paris.",     # 9 only inside a number
    "Pour ne plus être appelé, rappelez-nous. Appuyez sur 9 pour oui.",  # not in one sentence
    "Nous vous proposons 9 mesures.",                        # 'proposons' is not 'opposer'
])
def test_missing_optout_instruction_is_named(tmp_path: Path, intro: str) -> None:
    cfg = make_cfg(tmp_path, items={"intro": {"text": intro}})
    problems = missing_legal_items(cfg)
    assert len(problems) == 1 and "opt-out instruction" in problems[0]
    assert "key 9" in problems[0]


def test_optout_uses_configured_key(tmp_path: Path) -> None:
    intro = "Pour ne plus être appelé, appuyez sur dièse."
    assert missing_legal_items(make_cfg(tmp_path, items={"intro": {"text": intro}},
                                        optout_key="#")) == []
    wrong = make_cfg(tmp_path, items={"intro": {"text": intro}}, optout_key="*")
    assert any("opt-out" in p for p in missing_legal_items(wrong))


@pytest.mark.parametrize("key", REQUIRED_PROMPTS)
def test_missing_required_prompt_is_named(tmp_path: Path, key: str) -> None:
    cfg = make_cfg(tmp_path, items={key: None})
    problems = missing_legal_items(cfg)
    assert any(f"prompt {key!r} is missing" in p for p in problems)
    with pytest.raises(ComplianceError, match=key):
        check_legal(cfg)


def test_recorded_prompts_are_checked_through_transcript(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, items={"legal": {"file": "legal.wav", "transcript": LEGAL},
                                    "intro": {"file": "intro.mp3", "transcript": INTRO}})
    assert missing_legal_items(cfg) == []
    bare = make_cfg(tmp_path, items={"legal": {"file": "legal.wav"}})
    problems = missing_legal_items(bare)
    assert len(problems) == 1 and "transcript" in problems[0] and "legal" in problems[0]


def test_empty_legal_config_values_are_named(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, legal={"sender": "", "postal_address": ADDRESS, "email": " "})
    problems = missing_legal_items(cfg)
    assert any("legal.sender" in p and "empty" in p for p in problems)
    assert any("legal.email" in p and "empty" in p for p in problems)
    assert not any("postal" in p for p in problems)


def test_the_fix_names_the_key_the_config_uses_for_the_words(tmp_path: Path) -> None:
    """The shipped config keeps the legal words in `text_file: legal.txt`: the check said
    "say it word for word in prompts.items.legal.text", a key it does not have."""
    import yaml
    data = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    data["legal"]["email"] = "autre@example.fr"
    (problem,) = missing_legal_items(config.from_dict(data, REPO))
    legal_txt = REPO / "prompts" / data["prompts"]["items"]["legal"]["text_file"]
    assert problem.endswith(f"say it word for word in prompts.items.legal.text_file "
                            f"({legal_txt})"), problem
    problems = missing_legal_items(make_cfg(tmp_path, items={"legal": {"text": "Merci."}}))
    assert len(problems) == 3 and all(p.endswith("word for word in prompts.items.legal.text")
                                      for p in problems), problems
    (problem,) = missing_legal_items(make_cfg(
        tmp_path, items={"intro": {"file": "intro.mp3", "transcript": "Bonjour. Oui: 1."}}))
    assert "in prompts.items.intro.transcript (and its recording intro.mp3)" in problem, problem


@pytest.mark.parametrize("field, value", [("email", "-"), ("email", "e"), ("email", "a@b"),
                                          ("postal_address", "Paris"), ("postal_address", "2")])
def test_a_mention_nobody_could_write_to_is_refused(tmp_path: Path, field: str,
                                                    value: str) -> None:
    """Found by a probe: the check was a substring match, so an e-mail 'e' or an address '2'
    said in the legal text passed, and the message went out without a way to be removed."""
    legal = {"sender": SENDER, "postal_address": ADDRESS, "email": EMAIL, field: value}
    cfg = make_cfg(tmp_path, legal=legal, items={"legal": {"text": f"{LEGAL} {value}."}})
    problems = missing_legal_items(cfg)
    assert len(problems) == 1 and problems[0].startswith(f"legal.{field} {value!r} is not"), \
        problems
    with pytest.raises(ComplianceError):
        check_legal(cfg)


def test_a_postal_address_on_several_lines_is_one(tmp_path: Path) -> None:
    """Found in review: a YAML block address whose first line has no digit was refused."""
    address = "Permanence de Marie Dupont\n12 rue de la République\n75001 Paris"
    legal = {"sender": SENDER, "postal_address": address, "email": EMAIL}
    text = f"Ce message vous est adressé par {SENDER}. Écrivez à la {address}, ou à {EMAIL}."
    assert missing_legal_items(make_cfg(tmp_path, legal=legal,
                                        items={"legal": {"text": text}})) == []
