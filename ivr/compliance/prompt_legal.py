"""Legal content checks on the prompt texts (pure: reads the config, never the audio).

CNIL guidance for political calls: the callee must hear who is calling (sender), where to write
to object (postal address and e-mail), and how to stop the calls right away (the opt-out key,
announced in the intro). A recorded prompt is checked through its `transcript:`.

Comparison is case-, accent- and whitespace-insensitive ("Élections" == "elections"), since the
same words are spoken either way.
"""
from __future__ import annotations

import re
import unicodedata

from ivr.config import Config, PromptSource
from ivr.errors import ComplianceError

REQUIRED_PROMPTS = ("intro", "message", "legal", "goodbye", "invalid", "no_input",
                    "optout_confirm")
# The opposition line (dialplans/ivr-callback.conf) is answered by every run and `ivr serve`:
# its notice asks for this key, and without the notice no opposition is ever recorded.
CALLBACK_NOTICE = "callback_notice"
CALLBACK_CONFIRM_KEY = "1"

# Phrases (normalised: lower case, no accents) that tell the callee how to stop the calls.
# Each must start on a word boundary; prefixes cover inflections ("appelé/appelée/appelés").
OPTOUT_PHRASES = (
    "ne plus etre appel",         # ne plus être appelé(e)
    "ne plus jamais etre appel",  # ne plus jamais être appelé(e)
    "ne plus etre contact",       # ne plus être contacté(e)
    "ne plus recevoir",           # ne plus recevoir nos appels
    "ne plus nous entendre",
    "oppos",                      # vous opposer, opposition
    "desinscri",                  # désinscrire, désinscription
    "desabonn",                   # désabonner
    "radiation", "radier",
    "stop",
)

# How a DTMF key may be spelled out in a TTS text ("appuyez sur neuf").
KEY_WORDS = {"0": "zero", "1": "un", "2": "deux", "3": "trois", "4": "quatre", "5": "cinq",
             "6": "six", "7": "sept", "8": "huit", "9": "neuf", "*": "etoile", "#": "diese"}


def normalise(text: str) -> str:
    """Lower case, accents dropped, typographic apostrophes and all spaces unified."""
    decomposed = unicodedata.normalize("NFKD", text.replace("\u2019", "'"))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())


def spoken_text(item: PromptSource) -> str | None:
    """What a prompt says: its TTS text, else the transcript of its recording."""
    if item.text is not None and item.text.strip():
        return item.text
    if item.transcript is not None and item.transcript.strip():
        return item.transcript
    return None


_KEY_SYMBOL = re.compile(r"(?<![\w*#])[0-9*#](?![\w*#])")
_KEY_SPELLED = re.compile(r"\b(?:sur|touche|tapez|composez|appuyez)\s+(?:la touche\s+)?"
                          rf"({'|'.join(KEY_WORDS.values())})\b")
_KEY_OF_WORD = {word: key for key, word in KEY_WORDS.items()}


def key_mentions(sentence: str) -> list[tuple[int, str]]:
    """(position, key) of every DTMF key named, in order: the key as a standalone symbol ('9',
    not part of '75009'), or spelled after a verb ('appuyez sur neuf')."""
    found = [(m.start(), m.group()) for m in _KEY_SYMBOL.finditer(sentence)]
    found += [(m.start(1), _KEY_OF_WORD[m.group(1)]) for m in _KEY_SPELLED.finditer(sentence)]
    return sorted(found)


def mentions_key(sentence: str, key: str) -> bool:
    return any(named == key for _, named in key_mentions(sentence))


def tells_optout(text: str, key: str) -> bool:
    """One sentence must give both the opt-out key and an opt-out phrase."""
    for sentence in re.split(r"[.!?;\n]+", normalise(text)):
        has_phrase = any(re.search(rf"\b{re.escape(p)}", sentence) for p in OPTOUT_PHRASES)
        if has_phrase and mentions_key(sentence, key):
            return True
    return False


def prompt_field(cfg: Config, where: str) -> str:
    """The key the config really uses for this prompt's words: a `text_file:` is edited in
    its file, not in a `text:` the config does not have."""
    item = cfg.prompts.items.get(where)
    key = f"prompts.items.{where}"
    if item is not None and item.text_file is not None:
        return f"{key}.text_file ({cfg.path(cfg.prompts.sources_dir) / item.text_file})"
    if item is not None and item.file is not None:
        return f"{key}.transcript (and its recording {item.file})"
    return f"{key}.text"


_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)*\.[^\W\d_]{2,}")
# A street number or a postal code, and a word: "Paris" alone, or "2", is nowhere to write to
_ADDRESS = re.compile(r"(?=.*[0-9])(?=.*[^\W\d_]{3})")


def _unusable(name: str, value: str) -> str | None:
    """A mention a person cannot use to be removed: the substring check passed 'e' and '2'."""
    if name == "legal.email" and not _EMAIL.fullmatch(value):
        return (f"{name} {value!r} is not an e-mail address: give the one where people can ask "
                "to be removed, e.g. radiation@example.fr")
    if name == "legal.postal_address" and not _ADDRESS.match(" ".join(value.split())):
        return (f"{name} {value!r} is not a postal address: give the number, street, postal "
                "code and town where people can write to be removed")
    return None


def missing_legal_items(cfg: Config) -> list[str]:
    """Every legal violation, one fix-it line each; empty when the prompts are compliant."""
    items = cfg.prompts.items
    problems = [f"prompt {key!r} is missing: add prompts.items.{key} with a text: or file:"
                for key in REQUIRED_PROMPTS if key not in items]

    legal_values = (("sender", "legal.sender", cfg.legal.sender),
                    ("postal address", "legal.postal_address", cfg.legal.postal_address),
                    ("email", "legal.email", cfg.legal.email))
    for label, name, value in legal_values:
        if not value.strip():
            problems.append(f"legal {label} is empty: set {name} in the config")
        elif (unusable := _unusable(name, value.strip())) is not None:
            problems.append(unusable)

    if "legal" in items:
        said = spoken_text(items["legal"])
        if said is None:
            problems.append("legal prompt has no text or transcript: give prompts.items.legal "
                            "a text:, or a transcript: of its recording")
        else:
            heard = normalise(said)
            for label, name, value in legal_values:
                if value.strip() and normalise(value) not in heard:
                    problems.append(f"legal prompt does not state the {label} ({name} = "
                                    f"{value!r}): say it word for word in {prompt_field(cfg, 'legal')}")

    if "intro" in items:
        said = spoken_text(items["intro"])
        key = cfg.flow.optout_key
        if said is None:
            problems.append("intro prompt has no text or transcript: give prompts.items.intro "
                            "a text:, or a transcript: of its recording")
        elif not tells_optout(said, key):
            problems.append(f"intro prompt lacks the opt-out instruction: say in one sentence "
                            f"how to stop the calls with key {key} (e.g. 'Pour ne plus être "
                            f"appelé, appuyez sur {key}') in {prompt_field(cfg, 'intro')}")
    return problems


def check_legal(cfg: Config) -> None:
    """Raise ComplianceError listing every violation on one line."""
    problems = missing_legal_items(cfg)
    if problems:
        raise ComplianceError("; ".join(problems))


def callback_line_problems(cfg: Config) -> list[str]:
    """The opposition line's notice: present, and telling the caller to press 1 to stop the
    calls (callflow/agi_callback.py records the opposition on that key, and on the opposition
    key the outbound intro teaches)."""
    item = cfg.prompts.items.get(CALLBACK_NOTICE)
    key = CALLBACK_CONFIRM_KEY
    example = f"e.g. 'Pour ne plus être appelé, appuyez sur {key}.'"
    if item is None:
        return [f"prompt {CALLBACK_NOTICE!r} is missing: the opposition line (every run and "
                f"`ivr serve` answer it) records nothing without it; add prompts.items."
                f"{CALLBACK_NOTICE} with a text: or file: ({example})"]
    said = spoken_text(item)
    if said is None:
        return [f"{CALLBACK_NOTICE} prompt has no text or transcript: give prompts.items."
                f"{CALLBACK_NOTICE} a text:, or a transcript: of its recording"]
    if not tells_optout(said, key):
        return [f"{CALLBACK_NOTICE} prompt does not say how to stop the calls with key {key} "
                f"(the opposition line asks for {key}): say it in one "
                f"sentence in {prompt_field(cfg, CALLBACK_NOTICE)} ({example})"]
    return []


def check_callback_line(cfg: Config) -> None:
    """The build's gate: a notice that does not ask for key 1 is never built, since its plain
    copy is what the opposition line plays at once. A missing notice builds nothing for the
    line and stays an `ivr check` error."""
    if CALLBACK_NOTICE not in cfg.prompts.items:
        return
    problems = callback_line_problems(cfg)
    if problems:
        raise ComplianceError(f"{problems[0]}; nothing was built")
