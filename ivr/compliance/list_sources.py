"""The provenance of the contact lists a campaign calls (CNIL: no numbers collected on the
internet or in public directories; a stated acquisition basis and date). Pure: `check_sources`
takes each list's provenance record and returns violations; preflight.py runs it with the rest."""
from __future__ import annotations

import re
from datetime import date
from typing import Any, Iterable

from ivr.compliance.violations import Violation, err, fold, warn

KNOWN_BASES = frozenset({"consent", "rented_file", "member_file"})
# CNIL: numbers collected on the internet may not be used. "Hard" words always mean collection
# from the web; "soft" ones are tolerated when the basis also says consent (e.g. a web form).
_HARD_SCRAPE = re.compile(r"scrap|crawl|harvest|aspir|extract")
# (publicly available numbers, yes; a "réunion publique" or a "société publique locale", no)
_SOFT_SCRAPE = re.compile(r"\bweb|internet|online|en ligne|social|reseaux|\bpublicly\b|"
                          r"\bpublic (?:data|sources?|numbers?|directory)|numeros? publics?|"
                          r"donnees publiques|sources? publiques?|\bgoogle\b")
_CONSENT = re.compile(r"consent|opt.?in")
# ...unless the consent is denied: "web sans consentement", "collected online without any
# prior consent", "absence de consentement", "consent refused", "consent: no". The negation must
# bear on the consent itself: only words such as "any", "prior", "their", "recueil du" may stand
# between ("non-partisan opt-in", "opt-in: no objection recorded" and "consent: non-withdrawn"
# state a consent).
_BETWEEN = (r"(?:any|prior|explicit|express|valid|written|the|their|his|her|obtaining|getting|"
            r"le|la|les|leur|son|sa|un|une|de|du|d|ni|recueil|accord)")
_NO_CONSENT = re.compile(
    r"\b(?:sans|without|no|not|non|pas de|pas d|absence de|absence d|aucun|aucune)[\s'-]+"
    rf"(?:{_BETWEEN}[\s'-]+){{0,2}}(?:consent|opt.?in)"
    r"|\b(?:consent|consentement|opt.?in)\w*\s+(?:refuse|refused|denied|withdrawn|retire|absent"
    r"|(?:not|never|non|pas|jamais)\s+(?:been\s+|ete\s+)?(?:given|obtained|collected|asked|"
    r"recueilli|obtenu|donne|demande))\b"
    # "never consented", "jamais consenti": the negation before the consent's own verb
    r"|\b(?:never|jamais)\s+(?:\w+\s+)?(?:consent|opt.?in)"
    # "consent: unknown" says no more than "consent: no" does
    r"|\b(?:consent|consentement|opt.?in)\w*\s*[:=]\s*(?:unknown|inconnu\w*|\?)"
    r"|\b(?:consent|consentement|opt.?in)\w*\s*[:=]\s*(?:no|non)\b"  # "consent: no", "non recueilli"
    r"(?!-|\s*(?:objection|opposition|withdrawn|retire))")
# A basis that says there is none: the same as no basis (before: a warning, and the list ran)
_NO_BASIS = re.compile(r"^(?:none|aucune?|rien|nothing|n\s*/?\s*a|null|nil|unknown|inconnue?|"
                       r"[-?.\s]+)$|\b(?:no|sans|without|pas de|aucune?)\s+(?:legal\s+)?"
                       r"(?:basis|base|fondement)")
# A list NAMED after a scraping origin is refused whatever its basis says ("scraped from
# leboncoin", basis member_file): the words of scraping, and the public sites and directories
# numbers are harvested from. Matched in the name folded, without spaces, dots or dashes, so
# "Pages Jaunes" and "le-bon-coin" match too.
SCRAPED_SOURCE_WORDS = ("scrap", "crawl", "harvest", "aspir", "leboncoin", "pagesjaunes",
                        "pagesblanches", "annuaire", "118712", "118218",
                        "societe.com", "infobel", "kompass", "googlemaps", "mappy", "facebook",
                        "linkedin", "instagram", "twitter", "tiktok")


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def scraped_origin(name: str) -> str | None:
    """The word of SCRAPED_SOURCE_WORDS a list name contains, if any."""
    squashed = re.sub(r"[\s\-_'.]+", "", fold(name))
    return next((w for w in SCRAPED_SOURCE_WORDS if w.replace(".", "") in squashed), None)


def check_sources(sources: Iterable[dict[str, Any]]) -> list[Violation]:
    """Provenance of each contact list: a named source, an acquisition basis, a date."""
    out: list[Violation] = []
    for i, src in enumerate(sources):
        if not isinstance(src, dict):
            out.append(err("source_missing", f"contact list #{i + 1} has no provenance record: give "
                           "source, basis and acquired_on"))
            continue
        name, basis = _text(src.get("source")), _text(src.get("basis"))
        label = f"contact list {name!r}" if name else f"contact list #{i + 1}"
        if not name:
            out.append(err("source_missing", f"{label} has no source: name where the numbers come from"))
        origin = scraped_origin(name)
        if origin:
            out.append(err("source_scraped", f"{label} names a scraping origin ({origin!r}): the "
                           "CNIL forbids calling numbers collected on the internet or in public "
                           "directories; drop this list"))
        if not basis:
            out.append(err("basis_missing", f"{label} has no basis: state how the numbers were acquired "
                           f"({', '.join(sorted(KNOWN_BASES))})"))
        else:
            folded = fold(basis)
            consented = _CONSENT.search(folded) and not _NO_CONSENT.search(folded)
            # a basis naming where numbers are harvested ("annuaire", "leboncoin") as well
            if _HARD_SCRAPE.search(folded) or (_SOFT_SCRAPE.search(folded) and not consented) \
                    or scraped_origin(basis):
                out.append(err("basis_scraped", f"{label} basis {basis!r}: the CNIL forbids calling numbers "
                               "collected on the internet or in public directories; drop this list"))
            elif _NO_BASIS.search(folded):
                out.append(err("basis_missing", f"{label} basis {basis!r} says there is none: "
                               "state how the numbers were acquired "
                               f"({', '.join(sorted(KNOWN_BASES))}), or drop this list"))
            elif _NO_CONSENT.search(folded):  # stored, it would be called as if it had one
                out.append(err("basis_no_consent", f"{label} basis {basis!r} says there is no "
                               "consent: a list without consent may not be called; drop it"))
            elif folded not in KNOWN_BASES:
                out.append(warn("basis_unknown", f"{label} basis {basis!r} is not one of "
                                f"{', '.join(sorted(KNOWN_BASES))}: check it is a lawful acquisition basis"))
        acquired = src.get("acquired_on")
        if acquired in (None, ""):
            out.append(warn("acquired_on_missing", f"{label} has no acquired_on date: record when the "
                            "list was acquired (ISO date)"))
        elif not isinstance(acquired, date):
            try:
                date.fromisoformat(str(acquired).strip())
            except ValueError:
                out.append(err("acquired_on_invalid", f"{label} acquired_on {acquired!r} is not an ISO "
                               "date: use YYYY-MM-DD"))
    return out
