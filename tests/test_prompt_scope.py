"""What each prompt may say by who hears it (ivr/compliance/prompt_scope.py): one opposition
key, no call to vote before the consent or after a refusal, the legal prompt the legal mentions
only. Each case was found by a probe that got it past `ivr check` and the build."""
from __future__ import annotations

from pathlib import Path

import pytest

from ivr import config
from ivr.compliance.campaign_check import prompt_violations
from ivr.compliance.prompt_scope import (call_to_vote_problems, check_scope,
                                         legal_scope_problems, optout_key_problems)
from ivr.errors import ComplianceError
from test_prompt_legal import ADDRESS, EMAIL, LEGAL, SENDER, make_cfg

REPO = Path(__file__).resolve().parents[1]
PITCH = "Votez pour une ville plus verte et plus sûre."


def test_the_shipped_prompts_pass() -> None:
    cfg = config.load(REPO / "config.yaml")
    assert optout_key_problems(cfg) == call_to_vote_problems(cfg) == \
        legal_scope_problems(cfg) == []
    check_scope(cfg)


def test_the_legal_prompt_holding_the_pitch_is_refused(tmp_path: Path) -> None:
    """A refusal plays intro, legal, goodbye: a pitch in the legal prompt reached the people
    who said no (the probe's 45 sentences, 114.8 s, built and checked clean)."""
    cfg = make_cfg(tmp_path, items={"legal": {"text": "Une ville plus verte et plus sûre, "
                                              "pour tous les habitants du quartier. " + LEGAL}})
    problems = legal_scope_problems(cfg)
    assert len(problems) == 1 and "une ville plus verte" in problems[0] \
        and "none of the legal mentions" in problems[0] and "message prompt" in problems[0]
    with pytest.raises(ComplianceError, match="nothing was built"):
        check_scope(cfg)


@pytest.mark.parametrize("legal", [
    LEGAL,
    f"Ce message vous est adressé par M. Dupont. Pour vous opposer à ces appels, écrivez au "
    f"{ADDRESS}. Vous pouvez aussi écrire à {EMAIL}. Vous disposez d'un droit d'accès à vos "
    "données. Merci, au revoir.",
    f"Responsable du traitement : {SENDER}. Adresse : {ADDRESS}. Courriel : {EMAIL}."])
def test_legal_mentions_in_their_usual_sentences_pass(tmp_path: Path, legal: str) -> None:
    """The sender's, address's and e-mail's dots split no sentence; "M." is no pitch."""
    assert legal_scope_problems(make_cfg(tmp_path, items={"legal": {"text": legal}})) == []


@pytest.mark.parametrize("prompt", ["intro", "legal", "goodbye", "invalid", "no_input",
                                    "optout_confirm"])
def test_a_call_to_vote_before_the_consent_or_after_a_refusal_is_refused(
        tmp_path: Path, prompt: str) -> None:
    base = {"intro": "Bonjour. Pour ne plus être appelé, appuyez sur 9 à tout moment. "
                     "Pour oui, appuyez sur 1.", "legal": LEGAL}
    items = {prompt: {"text": f"{base.get(prompt, 'Merci.')} {PITCH}"}}
    problems = call_to_vote_problems(make_cfg(tmp_path, items=items))
    assert len(problems) == 1 and f"prompts.items.{prompt}.text says 'votez'" in problems[0]


def test_the_message_may_call_to_vote(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, items={"message": {"text": PITCH}})
    assert call_to_vote_problems(cfg) == []


def test_a_pitch_between_the_sender_and_the_question_fails_ivr_check(tmp_path: Path) -> None:
    intro = ("Bonjour, ici Marie Dupont. Pour ne plus être appelé, appuyez sur 9. Votez Dupont "
             "le 15 mars contre la hausse des impôts ! Acceptez-vous mon message ? Oui, appuyez "
             "sur 1. Non, appuyez sur 2.")
    found = [v for v in prompt_violations(make_cfg(tmp_path, items={"intro": {"text": intro}}))
             if v.code == "consent_first"]
    assert any("says 'votez'" in v.message for v in found), found


@pytest.mark.parametrize("prompt, text, key", [
    ("intro", "Bonjour. Pour ne plus être appelé, appuyez sur 9. Pour non, ou pour vous opposer "
              "à nos appels, appuyez sur 2. Pour oui, appuyez sur 1.", "2"),
    ("legal", f"{LEGAL} Pour ne plus être appelé, appuyez sur 3.", "3"),
    ("message", "Merci. Pour vous désinscrire, appuyez sur 1.", "1"),
    ("goodbye", "Appuyez sur 1 pour écouter encore, sur 5 pour ne plus être appelé.", "5")])
def test_another_key_than_the_optout_key_to_stop_the_calls_is_refused(
        tmp_path: Path, prompt: str, text: str, key: str) -> None:
    """The probe's person pressing the key the prompt gave was stored as a refusal or a
    consent, and called again."""
    problems = optout_key_problems(make_cfg(tmp_path, items={prompt: {"text": text}}))
    assert len(problems) == 1 and f"tells to press {key} to stop the calls" in problems[0] \
        and "flow.optout_key 9" in problems[0], problems


def test_the_optout_key_beside_other_keys_and_an_address_number_passes(tmp_path: Path) -> None:
    """Each key takes the words of its own clause; "3 rue de la Paix" is no key."""
    legal = {"sender": SENDER, "postal_address": "3 rue de la Paix, 75002 Paris", "email": EMAIL}
    items = {"goodbye": {"text": "Appuyez sur 1 pour écouter encore, sur 9 pour ne plus être "
                                 "appelé."},
             "legal": {"text": f"Ce message vous est adressé par {SENDER}. Pour vous opposer à "
                               "ces appels, écrivez au 3 rue de la Paix, 75002 Paris, ou à "
                               f"{EMAIL}."}}
    cfg = make_cfg(tmp_path, items=items, legal=legal)
    assert optout_key_problems(cfg) == [] and legal_scope_problems(cfg) == []


@pytest.mark.parametrize("intro", [
    "Bonjour. Pour accepter, tapez 1, pour refuser tapez 2, pour ne plus être appelé tapez 9.",
    "Bonjour. Pour oui, appuyez sur 1, pour non sur 2, et pour ne plus être appelé, sur 9.",
    "Bonjour. Si vous acceptez, tapez 1, sinon tapez 2, et pour ne plus être appelé, tapez 9."])
def test_the_usual_intros_give_the_optout_key_to_the_optout_words(tmp_path: Path,
                                                                 intro: str) -> None:
    """Found in review: each key took the words after it when the clause before the first
    key meant nothing to the opt-out check alone, so key 2 took "pour ne plus être appelé"
    and every build of these intros was refused."""
    assert optout_key_problems(make_cfg(tmp_path, items={"intro": {"text": intro}})) == []


def test_a_free_number_to_call_is_no_key(tmp_path: Path) -> None:
    legal = f"{LEGAL} Pour vous opposer à ces appels, appelez gratuitement le 0 800 12 34 56."
    assert optout_key_problems(make_cfg(tmp_path, items={"legal": {"text": legal}})) == []


@pytest.mark.parametrize("sentence", [
    "Nous vous remercions de votre attention.", "Votre numéro provient des listes électorales.",
    "Vos informations ne seront jamais cédées à des tiers.",
    "Votre numéro sera retiré de notre liste sous 48 heures.",
    "Ce message est financé par l'association de financement de Marie Dupont.",
    "Je vous remercie et vous souhaite une excellente journée."])
def test_the_usual_sentences_of_legal_mentions_pass(tmp_path: Path, sentence: str) -> None:
    """Found in review: a courtesy, the data's origin (GDPR art. 14), its recipients or the
    message's financing were refused as none of the mentions."""
    cfg = make_cfg(tmp_path, items={"legal": {"text": f"{LEGAL} {sentence}"}})
    assert legal_scope_problems(cfg) == []


def test_short_slogans_are_no_courtesy(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, items={"legal": {"text": f"Plus de sécurité. Moins d'impôts. "
                                                      f"{LEGAL}"}})
    assert "'plus de securite'" in legal_scope_problems(cfg)[0]


def test_a_sender_whose_name_says_support_may_say_it(tmp_path: Path) -> None:
    """The sender must be said word for word (prompt_legal): "Comité pour soutenir Marie
    Dupont" was refused as a call to vote wherever it was said."""
    sender = "Comité pour soutenir Marie Dupont"
    legal = {"sender": sender, "postal_address": ADDRESS, "email": EMAIL}
    items = {"intro": {"text": f"Bonjour, ici le {sender}. Pour ne plus être appelé, appuyez "
                               "sur 9. Pour oui, appuyez sur 1."},
             "legal": {"text": f"Ce message vous est adressé par le {sender}. Écrivez au "
                               f"{ADDRESS}, ou à {EMAIL}."}}
    assert call_to_vote_problems(make_cfg(tmp_path, items=items, legal=legal)) == []
