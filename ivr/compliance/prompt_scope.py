"""What each prompt may say, by who hears it (CNIL guidance on automated political calls: the
person is asked first, may object at any time, and one who refuses hears the legal mentions
only). Pure: reads the config's texts and transcripts, never the audio.

- **One opposition key.** A prompt that tells how to stop the calls names flow.optout_key, the
  one key that records an opposition: "pour vous désinscrire, appuyez sur 1" sends the person to
  a key that records a consent or nothing, and they are called again.
- **No call to vote before the consent.** The intro, and every prompt a person who refused also
  hears (legal, goodbye, invalid, no_input, optout_confirm, the opposition line's notice), says
  none of CALL_TO_VOTE: the message prompt is where the campaign speaks.
- **The legal prompt is the legal mentions.** It is what a refusal plays (intro, legal,
  goodbye): each of its sentences names the sender, the postal address or the e-mail, says how
  to object, what the person's rights over their data are, where the number came from, who
  receives it or who finances the message, or is a courtesy. A sentence of two words passes
  ("M. Dupont" split at its dot); the call to vote is checked apart.

Heuristics, as consent_first's are: they stop the honest mistake (the pitch pasted into the
wrong prompt), not an author set on a pitch that names a right in every sentence.
"""
from __future__ import annotations

import re

from ivr.compliance.consent_first import consent_meaning, key_ties
from ivr.compliance.prompt_legal import (CALLBACK_NOTICE, OPTOUT_PHRASES, normalise,
                                         prompt_field, spoken_text)
from ivr.config import Config
from ivr.errors import ComplianceError

# Heard before the consent or after a refusal (flow.py): never a call to vote
BEFORE_OR_WITHOUT_CONSENT = ("intro", "legal", "goodbye", "invalid", "no_input", "optout_confirm",
                             CALLBACK_NOTICE)
# Normalised text (lower case, no accents): the words that ask for a vote or support
# (verbs: "mon programme" or "à quelques jours du vote" describe the message, they ask nothing)
CALL_TO_VOTE = re.compile(r"\b(?:vot(?:ez|ons|er)|elis(?:ez|ons)|elire|reelisez|soutenez|"
                          r"soutenir|soutenons|mobilisez|mobilisons)\b")
_OPTOUT = re.compile("|".join(rf"\b{re.escape(p)}" for p in OPTOUT_PHRASES))
# What a sentence of the legal mentions may be about besides the sender, address and e-mail
_LEGAL_TOPIC = re.compile(
    r"\b(?:donnees|droits?|rgpd|cnil|traitement|trait\w*|responsable|informatique et libertes|"
    r"acces|rectifi\w*|effac\w*|suppression|supprim\w*|personnel\w*|conserv\w*|finalite|"
    r"reclamation|mentions? legales?|ecri\w*|courriel|e-?mail|adresse|courrier|informations?|"
    r"numero|provien\w*|obten\w*|origine|source|fichiers?|listes?|tiers|ced\w*|transm\w*|"
    r"partag\w*|retir\w*|compos\w*|appel\w*|joindre|financ\w*|mandataire|message|"
    r"merci|remerci\w*|au revoir|bonne (?:journee|soiree)|excellente (?:journee|soiree))\b")
_PLACEHOLDER = " mentionlegale "
_SHORT = 2  # words: "M. Dupont" split at its dot is no pitch; "Une ville verte" is
# A phone number written in groups ("0 800 12 34 56"): its digits are no key
_PHONE = re.compile(r"\+?[0-9](?:[\s.-]?[0-9]){5,}")


def _sentences(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"[.!?;\n]+", text) if p.strip()]


def _without_values(cfg: Config, text: str) -> str:
    """The normalised text with the sender, postal address and e-mail as one placeholder:
    their dots do not split a sentence, their digits ("3 rue de la Paix") are no key."""
    heard = normalise(text)
    for value in (cfg.legal.email, cfg.legal.postal_address, cfg.legal.sender):
        if value.strip():
            heard = heard.replace(normalise(value), _PLACEHOLDER)
    return _PHONE.sub(" numero ", heard)


def _quote(sentence: str) -> str:
    return repr(sentence if len(sentence) <= 60 else sentence[:57] + "...")


def _meaning(clause: str) -> set[str]:
    """What a key's clause says: accepting or refusing (which ties each key to the words
    before it: "Pour accepter, tapez 1, pour refuser tapez 2, pour ne plus être appelé tapez
    9"), and stopping the calls."""
    return consent_meaning(clause) | ({"optout"} if _OPTOUT.search(clause) else set())


def optout_key_problems(cfg: Config) -> list[str]:
    """A prompt naming another key than flow.optout_key to stop the calls."""
    key = cfg.flow.optout_key
    out = []
    for name, item in cfg.prompts.items.items():
        said = spoken_text(item)
        if name == CALLBACK_NOTICE or said is None:  # the opposition line asks for its own 1
            continue
        ties = key_ties(_without_values(cfg, said), _meaning)
        wrong = sorted({named for named, meant in ties if "optout" in meant and named != key})
        out += [f"{prompt_field(cfg, name)} tells to press {other} to stop the calls, but only "
                f"flow.optout_key {key} records an opposition: a person pressing {other} is "
                f"called again; say 'Pour ne plus être appelé, appuyez sur {key}'"
                for other in wrong]
    return out


def call_to_vote_problems(cfg: Config) -> list[str]:
    """A call to vote in a prompt heard before the consent, or by a person who refused."""
    out = []
    for name in BEFORE_OR_WITHOUT_CONSENT:
        item = cfg.prompts.items.get(name)
        said = spoken_text(item) if item is not None else None
        # the sender said word for word ("Comité pour soutenir …") is the name it must say
        found = CALL_TO_VOTE.search(_without_values(cfg, said)) if said is not None else None
        if found:
            out.append(f"{prompt_field(cfg, name)} says {found.group()!r}: a call to vote may only "
                       "be in the message prompt, which a person hears after saying yes; the "
                       f"{name} prompt is heard before the consent or after a refusal")
    return out


def legal_scope_problems(cfg: Config) -> list[str]:
    """A sentence of the legal prompt that is none of the legal mentions."""
    item = cfg.prompts.items.get("legal")
    said = spoken_text(item) if item is not None else None
    if said is None:
        return []  # reported by prompt_legal
    for sentence in _sentences(_without_values(cfg, said)):
        if _PLACEHOLDER.strip() in sentence or _OPTOUT.search(sentence) \
                or _LEGAL_TOPIC.search(sentence) or len(sentence.split()) <= _SHORT:
            continue
        return [f"{prompt_field(cfg, 'legal')} says {_quote(sentence)}, which is none of the legal "
                "mentions: a person who refused hears this prompt; keep it to the sender, the "
                "postal address, the e-mail, how to object and their rights, and move the rest "
                "to the message prompt"]
    return []


def check_scope(cfg: Config) -> None:
    """The build's gate, as check_legal: a running campaign takes a rebuilt prompt at once."""
    problems = optout_key_problems(cfg) + call_to_vote_problems(cfg) + legal_scope_problems(cfg)
    if problems:
        more = f" (and {len(problems) - 1} more: `ivr check` lists them)" \
            if len(problems) > 1 else ""
        raise ComplianceError(f"{problems[0]}{more}; nothing was built")
