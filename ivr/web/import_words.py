"""An upload's result as a French page shows it: the counts in words, and each rejected line's
reason and each warning in French when it is one the importers write (records/contacts.py,
csv_read.py, optout_import.py, numbers.py), the English behind "Détail en anglais :"
otherwise. The API, the CLI and the rejects' CSV keep the importers' English, which scripts
and other tools read. tests/test_web_import_words.py feeds the real importers a file that
meets every reason, so a reason reworded there cannot silently fall back to English here."""
from __future__ import annotations

import re
from typing import Any

from ivr.web import i18n
from ivr.web.display import whole

_RAW = r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"  # csv_read.short(): a cell's repr
_OPTOUT_ADD = r"`([^`]*)`"
_AGAIN = "formatez la colonne en texte et exportez de nouveau la liste"
_REMOVE = " : retirez-le de la liste"
# What a number's cell is refused for (numbers.py), after "'cell': " in a reason.
_NUMBER: tuple[tuple[str, str], ...] = (
    (r"not a valid phone number: write it in national \(06 12 34 56 78\) or international "
     r"\(\+33 6 12 34 56 78\) form",
     "numéro invalide : écrivez-le au format national (06 12 34 56 78) ou international "
     "(+33 6 12 34 56 78)"),
    (r"not a valid phone number: check the digits and the country code",
     "numéro invalide : vérifiez les chiffres et l'indicatif du pays"),
    (r"check the digits and the country code", "vérifiez les chiffres et l'indicatif du pays"),
    (r"short number \(service code\): remove it from the list",
     "numéro court (code de service)" + _REMOVE),
    (r"premium-rate number: remove it from the list", "numéro surtaxé" + _REMOVE),
    (r"shared-cost service number \(08\): remove it from the list",
     "numéro de service à coût partagé (08)" + _REMOVE),
    (r"toll-free service number \(080x\): remove it from the list",
     "numéro vert (080x)" + _REMOVE),
    (r"special service number \(08\): remove it from the list",
     "numéro de service spécial (08)" + _REMOVE),
    (r"voicemail access number: remove it from the list",
     "numéro d'accès à une messagerie vocale" + _REMOVE),
    (r"pager number: remove it from the list", "numéro de radiomessagerie" + _REMOVE),
    (r"foreign number \(\+(\d+)\): add (\w+) to contacts\.allow_countries to call it",
     "numéro étranger (+{0}) : ajoutez {1} à contacts.allow_countries pour l'appeler"),
    (r"a spreadsheet turned the number into scientific notation \(its leading 0 or \+ is "
     r"lost, maybe digits too\): format the column as text and export the list again",
     "un tableur a écrit le numéro en notation scientifique (son 0 ou son + initial est "
     "perdu, des chiffres peut-être aussi) : " + _AGAIN),
    (r"a spreadsheet turned the number into scientific notation: format the column as text "
     r"and export the list again",
     "un tableur a écrit le numéro en notation scientifique : " + _AGAIN),
    (r"the number was exported as a decimal \(its leading 0 or \+ is lost\): format the "
     r"column as text and export the list again",
     "le numéro a été exporté comme un nombre décimal (son 0 ou son + initial est perdu) : "
     + _AGAIN),
    (r"trailing characters after the number \((.*)\): remove the extension or suffix",
     "caractères après le numéro ({0}) : retirez le poste ou le suffixe"),
    (r"text after the number \((.*)\): if it records an objection, record the number with "
     + _OPTOUT_ADD + r"; otherwise remove the text",
     "texte après le numéro ({0}) : s'il note une opposition, enregistrez le numéro avec "
     "`{1}` (ou la page Opposition et droits) ; sinon retirez le texte"),
    (r"text (?:after|with) the number \((.*)\) looks like an objection: record it with "
     + _OPTOUT_ADD + r" \(or the console's rights page\), do not remove the word",
     "texte du numéro ({0}) qui ressemble à une opposition : enregistrez-la avec `{1}` (ou "
     "la page Opposition et droits), ne retirez pas le mot"),
    (r"two numbers on one line: give one per line \(an opposition of the wrong number leaves "
     r"the person callable\)",
     "deux numéros sur une ligne : un par ligne (s'opposer au mauvais numéro laisse la "
     "personne appelable)"),
    (r"an extension \((.*)\): give the person's direct line \(an opposition of the "
     r"switchboard's number leaves theirs callable\)",
     "un poste ({0}) : donnez la ligne directe de la personne (s'opposer au numéro du "
     "standard laisse le sien appelable)"),
    (r"letters \((.*)\) that are not a label such as 'Tél\.': give the number alone",
     "des lettres ({0}) qui ne sont pas une étiquette comme « Tél. » : donnez le numéro seul"),
    (r"(\d+) digits, more than one number holds: two numbers on one line\? give one per line",
     "{0} chiffres, plus qu'un numéro n'en a : deux numéros sur une ligne ? un par ligne"),
    (r"characters a phone number does not hold \((.*)\): give it alone",
     "des caractères qu'un numéro n'a pas ({0}) : donnez-le seul"),
)
# Whole reasons and warnings (records/contacts.py, csv_read.py, optout_import.py).
_LINE: tuple[tuple[str, str], ...] = (
    (r"no number", "aucun numéro"),
    (r"time zone " + _RAW + r" is unknown: use an IANA name such as Europe/Paris",
     "fuseau horaire {0} inconnu : utilisez un nom IANA comme Europe/Paris"),
    (r"time zone " + _RAW + r" names no place: give the callee's \(e\.g\. Europe/Paris\), or "
     r"leave the cell empty for the number's own",
     "le fuseau horaire {0} ne désigne aucun lieu : donnez celui de la personne (par exemple "
     "Europe/Paris), ou laissez la case vide pour celui du numéro"),
    (r"(\d+) fields where the header has (\d+): check the quoting and the delimiter",
     "{0} champs alors que l'en-tête en a {1} : vérifiez les guillemets et le séparateur"),
    (r"column " + _RAW + " says " + _RAW + r", which looks like an objection: not imported; "
     r"if it is one, record the number with " + _OPTOUT_ADD + r", otherwise remove the words "
     r"or the column",
     "la colonne {0} indique {1}, ce qui ressemble à une opposition : non importé ; si c'en "
     "est une, enregistrez le numéro avec `{2}` (ou la page Opposition et droits), sinon "
     "retirez ces mots ou la colonne"),
    (r"column " + _RAW + " says " + _RAW + r" \(an objection\): not imported, and out of "
     r"this campaign's queue if a list queued it before: record the number with "
     + _OPTOUT_ADD + " so that no campaign calls it",
     "la colonne {0} indique {1} (une opposition) : non importé, et retiré de la file de "
     "cette campagne si une liste l'y avait mis : enregistrez le numéro avec `{2}` (ou la "
     "page Opposition et droits) pour qu'aucune campagne ne l'appelle"),
    (r"column " + _RAW + " says " + _RAW + r" \(no consent\): not imported, and out of "
     r"this campaign's queue if a list queued it before: record the number with "
     + _OPTOUT_ADD + " so that no campaign calls it",
     "la colonne {0} indique {1} (pas de consentement) : non importé, et retiré de la file "
     "de cette campagne si une liste l'y avait mis : enregistrez le numéro avec `{2}` (ou la "
     "page Opposition et droits) pour qu'aucune campagne ne l'appelle"),
    (r"column " + _RAW + " holds " + _RAW + r": write oui/yes/true/1/x or non/no/false/0, "
     r"or leave it empty",
     "la colonne {0} contient {1} : écrivez oui/yes/true/1/x ou non/no/false/0, ou "
     "laissez-la vide"),
    (r"column " + _RAW + r" holds values that say neither yes nor no, such as " + _RAW +
     r": those lines were imported as consented; check the column",
     "la colonne {0} contient des valeurs qui ne disent ni oui ni non, comme {1} : ces "
     "lignes ont été importées comme consenties ; vérifiez la colonne"),
    (r"no acquisition date \(--acquired-on\): the list's stays unknown and `ivr check` "
     r"warns of it; import the same list again with its date to record it",
     "aucune date d'acquisition : celle de la liste reste inconnue et `ivr check` le "
     "signale ; importez de nouveau la même liste avec sa date pour l'enregistrer"),
    (r"more than (\d+) lines rejected: only the first ones are listed",
     "plus de {0} lignes rejetées : seules les premières sont listées"),
    (r"file is not UTF-8; read as Windows-1252 \(Latin-1\): check accented names",
     "le fichier n'est pas en UTF-8 ; lu en Windows-1252 (Latin-1) : vérifiez les noms "
     "accentués"),
    (r"(\+\d+) is stored with time zone (\S+), which another campaign's list shares; this "
     r"file says (\S+): a person has one, so correct whichever list is wrong, or leave this "
     r"file's timezone empty to keep \S+",
     "{0} est enregistré avec le fuseau horaire {1}, que partage la liste d'une autre "
     "campagne ; ce fichier indique {2} : une personne n'en a qu'un, corrigez donc la liste "
     "qui se trompe, ou laissez vide le fuseau de ce fichier pour garder {1}"),
    (r"(\+\d+) is stored with no time zone \(its calls judged in (.+?)\), which another "
     r"campaign's list shares; this file says (\S+): a person has one, so correct whichever "
     r"list is wrong, or leave this file's timezone empty",
     "{0} est enregistré sans fuseau horaire (ses appels jugés à l'heure de {1}), que "
     "partage la liste d'une autre campagne ; ce fichier indique {2} : une personne n'en a "
     "qu'un, corrigez donc la liste qui se trompe, ou laissez vide le fuseau de ce fichier"),
    (r"(\+\d+) has two time zones in this file: (\S+) on line (\d+), (\S+) here: a person "
     r"has one; correct the file",
     "{0} a deux fuseaux horaires dans ce fichier : {1} à la ligne {2}, {3} ici : une "
     "personne n'en a qu'un ; corrigez le fichier"),
    (r"(\+\d+) has two time zones in this file: (\S+) on an earlier line, (\S+) here: a "
     r"person has one; correct the file",
     "{0} a deux fuseaux horaires dans ce fichier : {1} sur une ligne précédente, {2} ici : "
     "une personne n'en a qu'un ; corrigez le fichier"),
    (r"campaign (.*) is not this console's config's: its list was read with the default "
     r"country rule \(no foreign numbers\), not this config's contacts\.allow_countries; "
     r"import foreign numbers it allows with its own config: ivr --config <its config> "
     r"contacts import",
     "la campagne {0} n'est pas celle de la configuration de cette console : sa liste a été "
     "lue avec la règle par défaut (aucun numéro étranger), et non avec "
     "contacts.allow_countries de cette configuration ; importez les numéros étrangers "
     "qu'elle autorise avec sa propre configuration : ivr --config <sa configuration> "
     "contacts import"),
)
_NUMBER_RE = [(re.compile(p, re.S), fr) for p, fr in _NUMBER]
_LINE_RE = [(re.compile(p, re.S), fr) for p, fr in _LINE]
_CELL = re.compile(_RAW + r": (.*)", re.S)  # the contacts' importer: "'cell': why"
_OBJECTION = re.compile(_RAW + r" is not a valid phone number: (.*)", re.S)  # opt-out import


def _match(table: list[tuple[re.Pattern[str], str]], text: str) -> str | None:
    for pattern, french in table:
        found = pattern.fullmatch(text)
        if found:
            return french.format(*found.groups())
    return None


def reason(lang: str, text: str) -> str:
    """A rejected line's reason, or an import's warning, as a page in `lang` shows it."""
    if i18n.pick(lang) == "en" or not text:
        return text
    said = _match(_LINE_RE, text)
    for form, words in ((_OBJECTION, "{0} n'est pas un numéro valide : {1}"),
                        (_CELL, "{0} : {1}")):
        found = said is None and form.fullmatch(text)
        if found:
            why = _match(_NUMBER_RE, found.group(2)) or _match(_LINE_RE, found.group(2))
            said = words.format(found.group(1), why) if why else None
    return said if said is not None else f"{i18n.translate(lang, 'detail_en')} {text}"


def summary(lang: str, result: dict[str, Any]) -> str:
    """An upload's counts (web/records.py's answer) in words; in English, its `summary`."""
    if i18n.pick(lang) == "en":
        return str(result["summary"])
    say = lambda key, **kw: i18n.translate(lang, key).format(  # noqa: E731
        **{k: whole(lang, v) if isinstance(v, int) else v for k, v in kw.items()})  # 12 345
    dup = say("import_dup", updated=result["merged"] - result["duplicates"],
              repeated=result["duplicates"]) if result["duplicates"] else ""
    out = say("import_summary", added=result["added"], merged=result["merged"], dup=dup,
              unchanged=result["unchanged"], opted_out=result["opted_out"],
              rejected=result["rejected_total"])
    withdrawn = result.get("withdrawn") or 0
    return out + (say("import_withdrawn", n=withdrawn) if withdrawn else "")
