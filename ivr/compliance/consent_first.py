"""Consent first: what the intro must do before anything political is said (CNIL guidance on
automated political calls: the person is asked first, and told at once how to object).

The intro (its `text:`, or the `transcript:` of its recording) must:
- name the sender: the name part of `legal.sender` (what precedes its first comma, e.g.
  "Marie Dupont" in "Marie Dupont, candidate aux ...");
- open with that identification: the first sentence names the sender. A first sentence that is
  only a greeting ("Bonjour.", "Madame, Monsieur.") is skipped. This is the heuristic that keeps
  the political pitch out of the opening: whatever comes first is not the pitch if it is "who
  is calling";
- say how to object "dès le début du message": the opt-out key and an opt-out phrase in one of
  the first two sentences (after a bare greeting);
- ask the consent question with both keys: a question (a "?" or a verb such as "acceptez",
  "voulez", "souhaitez") and the yes and no keys named;
- say what each key means: flow.yes_key named with an accepting word ("oui", "accepter",
  "d'accord", "écouter") and flow.no_key with a refusing one ("non", "refuser", "sinon",
  "ne ... pas"), and neither with the other's: a person pressing what the intro calls "non"
  would hear the message and be stored as a consent;
- stay short: at most `prompts.intro_max_s` seconds, measured on the built manifest when it was
  built from this very text or file, else estimated at WORDS_PER_SECOND.

The slot question (flow.ask_slot) names each key of flow.slots with that slot's word (matin,
après-midi, soir): the key pressed is stored as the slot the later runs call in.

A key is tied to the words of its clause: within a sentence, those between it and the previous
key ("Pour oui, appuyez sur 1"), or, when the sentence says nothing before its first key, those
between it and the next ("Appuyez sur 1 pour accepter, sur 2 pour refuser"). A negation (ne …
pas, plus, jamais, rien) refuses, "ne raccrochez pas" and "sans raccrocher" (stay on the line)
mean neither. A recording is judged by its
`transcript:`; one without a transcript is not judged here (prompt_legal reports an intro with
neither; a slot question without one is not checked).

Pure: reads the config and, when present, the manifest file; never the audio.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable

from ivr.errors import ComplianceError
from ivr.config import Config, PromptSource
from ivr.compliance.calling_rules import DEFAULT_SLOT_HOURS, slot_meets_windows, windows_text
from ivr.compliance.prompt_legal import (key_mentions, mentions_key, normalise, spoken_text,
                                         tells_optout)

WHERE = "prompts.items.intro"
# 150 words a minute: slow, clear telephone speech; a faster voice only shortens the intro.
WORDS_PER_SECOND = 2.5
OPTOUT_WITHIN = 2  # sentences
_GREETINGS = re.compile(r"(bonjour|bonsoir|allo|madame|monsieur|mesdames|messieurs|[ ,])+")
_QUESTION = re.compile(r"\?|\b(acceptez|accepter|voulez|souhaitez|desirez|d'accord)\b")
# What a key means in the intro (normalised text). A refusal wins over an accepting word in the
# same clause: "si vous ne souhaitez pas l'écouter" refuses.
_REFUSE = re.compile(r"\b(non|no|sinon|refus\w*|declin\w*|raccroch\w*|terminer|quitter|"
                     r"arreter|mettre fin|ignor\w*)\b|"
                     r"\bn(?:e\s+|')(?:\w+\s+){0,3}?(?:pas|plus|jamais|rien|point|aucun\w*)\b")
# "Ne raccrochez pas", "sans raccrocher": stay on the line, not a refusal (read as neither).
_HANG_ON = re.compile(r"\bne\s+raccroch\w*\s+pas\b|\bsans\s+raccroch\w*")
_ACCEPT = re.compile(r"\b(oui|yes|accept\w*|d'accord|ecout\w*|entendre|voulez|souhaitez|desirez|"
                     r"continuer)\b")
YES, NO = "oui", "non"
# A slot's words (config_checks allows only these slot names: calling_rules.DEFAULT_SLOT_HOURS).
SLOT_WORDS = {"morning": re.compile(r"\b(matin|morning)"),
              "afternoon": re.compile(r"\b(apres[- ]?midi|afternoon)"),
              "evening": re.compile(r"\b(soir|evening)")}
SLOT_SAID = {"morning": "le matin", "afternoon": "l'après-midi", "evening": "en soirée"}
SLOT_WHERE = "prompts.items.slot_question"


def sentences(text: str) -> list[str]:
    """Normalised sentences, their end mark kept ('?' tells a question); bare greetings out."""
    parts = [p.strip() for p in re.findall(r"[^.!?;\n]+[.!?;]*", normalise(text))]
    return [p for p in parts if p.strip(".!?; ")
            and not _GREETINGS.fullmatch(p.strip(".!?; "))]


def sender_name(sender: str) -> str:
    return normalise(sender.split(",")[0])


def estimated_seconds(text: str) -> float:
    return len(re.findall(r"\w+", text)) / WORDS_PER_SECOND


def built_seconds(cfg: Config, item: PromptSource) -> float | None:
    """The intro's duration in the manifest, if it was built from the current source."""
    path = cfg.path(cfg.prompts.build_dir) / "manifest.json"
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))["prompts"]["intro"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    same = (item.file is not None and entry.get("file") == item.file) or \
        (item.text is not None and entry.get("text") == " ".join(item.text.split()))
    duration = entry.get("duration_s") if same else None
    return float(duration) if isinstance(duration, (int, float)) else None


def intro_problems(cfg: Config, length: bool = True) -> list[str]:
    """One fix-it line per consent-first rule the intro breaks. `length`: also its duration,
    from the build when it is of the same source (a build checks the rendered audio itself)."""
    item = cfg.prompts.items.get("intro")
    said = spoken_text(item) if item is not None else None
    if item is None or said is None:
        return []  # reported by prompt_legal (missing intro or text)
    out: list[str] = []
    found = sentences(said)
    name = sender_name(cfg.legal.sender)
    if name and name not in normalise(said):
        out.append(f"{WHERE} does not name the sender {cfg.legal.sender.split(',')[0]!r} "
                   "(legal.sender): say who is calling in the first sentence")
    elif name and (not found or name not in found[0]):
        out.append(f"{WHERE} opens with something else than who is calling: make the first "
                   f"sentence name the sender, e.g. 'Bonjour, ici {cfg.legal.sender}.'")
    key = cfg.flow.optout_key
    if not tells_optout(" . ".join(found[:OPTOUT_WITHIN]), key):
        out.append(f"{WHERE} does not say how to object in its first {OPTOUT_WITHIN} sentences: "
                   f"say early 'Pour ne plus être appelé, appuyez sur {key}'")
    out += _consent_question(cfg, normalise(said))
    if length:
        out += _length(cfg, item, said)
    return out


def require_consent_first(cfg: Config) -> None:
    """Refuse, in one line, to build an intro `ivr check` would refuse: a running campaign
    takes a rebuilt prompt at once (prompts/live.py), so the build is the last gate."""
    # the length is judged on the rendered audio by the build (a recording replaced under the
    # same name would be judged here on the previous one's duration)
    problems = intro_problems(cfg, length=False)
    if problems:
        more = f" (and {len(problems) - 1} more: `ivr check` lists them)" if len(problems) > 1 \
            else ""
        raise ComplianceError(f"{problems[0]}{more}; nothing was built")


def _consent_question(cfg: Config, said: str) -> list[str]:
    f = cfg.flow
    example = f"'Pour oui, appuyez sur {f.yes_key}. Pour non, appuyez sur {f.no_key}.'"
    if not (_QUESTION.search(said) and mentions_key(said, f.yes_key)
            and mentions_key(said, f.no_key)):
        return [f"{WHERE} does not ask the consent question with both keys: ask e.g. "
                f"'Acceptez-vous d'écouter mon message ? {example[1:]}"]
    ties = key_ties(said, consent_meaning)
    out: list[str] = []
    for name, key, want, other, taken in (("yes_key", f.yes_key, YES, NO, "a consent"),
                                          ("no_key", f.no_key, NO, YES, "a refusal")):
        meant = _meanings(ties, key)
        if other in meant:
            out.append(f"{WHERE} says key {key} is for {other!r}, but flow.{name} is {key}: a "
                       f"person pressing {key} for {other!r} would be taken as {taken}; say "
                       f"{example} (or set flow.yes_key and flow.no_key to the keys it says)")
        elif want not in meant:
            out.append(f"{WHERE} names key {key} without saying it is for {want!r} "
                       f"(flow.{name}): say {example}")
    return out


def key_ties(text: str, meaning: Callable[[str], set[str]]) -> list[tuple[str, set[str]]]:
    """(key, what its clause means) for every key the normalised text names: the words
    between it and the previous key of its sentence, or, when the sentence says nothing before
    its first key ("appuyez sur 1 pour accepter, sur 2 pour refuser"), the words between it
    and the next key."""
    out: list[tuple[str, set[str]]] = []
    for sentence in re.split(r"[.!?;\n]+", text):
        named = key_mentions(sentence)
        if not named:
            continue
        starts = [at for at, _ in named]
        # The words follow their key when the sentence says nothing before its first key
        # ("Appuyez sur la touche 1 pour l'écouter, ou sur la touche 2 pour raccrocher"); once
        # it opens with a meaning, each key takes the words before it ("Si vous souhaitez
        # l'écouter, tapez 1, sinon tapez 2 pour raccrocher")
        if not meaning(sentence[:starts[0]]):
            bounds = zip(starts, starts[1:] + [len(sentence)])
        else:
            bounds = zip([0] + starts[:-1], starts)
        out += [(key, meaning(sentence[a:b])) for (_, key), (a, b) in zip(named, bounds)]
    return out


def _meanings(ties: list[tuple[str, set[str]]], key: str) -> set[str]:
    return set().union(*(meant for named, meant in ties if named == key))


def consent_meaning(clause: str) -> set[str]:
    clause = _HANG_ON.sub(" ", clause)
    if _REFUSE.search(clause):
        return {NO}
    return {YES} if _ACCEPT.search(clause) else set()


def _slot_meaning(clause: str) -> set[str]:
    return {slot for slot, words in SLOT_WORDS.items() if words.search(clause)}


def _length(cfg: Config, item: PromptSource, said: str) -> list[str]:
    built = built_seconds(cfg, item)
    seconds = built if built is not None else estimated_seconds(said)
    how = "built" if built is not None else f"estimated at {WORDS_PER_SECOND:g} words/s"
    if seconds <= cfg.prompts.intro_max_s:
        return []
    return [f"{WHERE} lasts {seconds:.1f} s ({how}), more than prompts.intro_max_s = "
            f"{cfg.prompts.intro_max_s:g} s: shorten it; the message comes after the consent"]


def slot_problems(cfg: Config) -> list[tuple[str, str]]:
    """(severity, message) about the time slot asked with the consent (flow.ask_slot)."""
    if not cfg.flow.ask_slot:
        return [("warning", "flow.ask_slot is false: the CNIL expects the consent to name a "
                 "time slot; set it to true (and give prompts.items.slot_question)")]
    never = [("error", problem) for problem in unreachable_slots(cfg)]
    if "slot_question" not in cfg.prompts.items:
        return [("error", "prompts.items.slot_question is missing while flow.ask_slot is true: "
                 "add the slot question, or set flow.ask_slot: false")] + never
    return [("error", problem) for problem in slot_question_problems(cfg)] + never


def unreachable_slots(cfg: Config) -> list[str]:
    """The slots offered (flow.slots) whose hours meet no calling window: the person choosing
    one is promised calls at a time this campaign never calls (and is never called again)."""
    try:
        windows = windows_text(cfg.schedule)
    except ComplianceError:  # malformed windows: their own check names them
        return []
    return [f"flow.slots.{key}: {slot} ({DEFAULT_SLOT_HOURS[slot]}) meets none of "
            f"schedule.windows ({windows}): a person choosing it would never be called back; "
            "remove the slot or widen a window"
            for key, slot in cfg.flow.slots.items()  # names checked at load (_validate_flow)
            if not slot_meets_windows(cfg.schedule, slot)]


def slot_question_problems(cfg: Config) -> list[str]:
    """Each key of flow.slots named with its slot's word, and with no other slot's: the key
    pressed is stored as the slot later runs call in. Not judged without a text or
    transcript."""
    said = spoken_text(cfg.prompts.items["slot_question"])
    if said is None:
        return []
    slots = cfg.flow.slots
    example = " ".join(f"{SLOT_SAID[slot][0].upper()}{SLOT_SAID[slot][1:]}, appuyez sur {key}."
                       for key, slot in slots.items())
    ties = key_ties(normalise(said), _slot_meaning)
    out: list[str] = []
    for key, slot in slots.items():
        meant = _meanings(ties, key)
        wrong = ", ".join(SLOT_SAID[other] for other in sorted(meant - {slot}))
        if wrong:
            out.append(f"{SLOT_WHERE} says key {key} is for {wrong}, but flow.slots.{key} is "
                       f"{slot}: a person pressing {key} would be called {SLOT_SAID[slot]}; "
                       f"say '{example}'")
        elif slot not in meant:
            out.append(f"{SLOT_WHERE} does not name key {key} with {SLOT_SAID[slot]!r} "
                       f"(flow.slots.{key} is {slot}): say '{example}'")
    return out
