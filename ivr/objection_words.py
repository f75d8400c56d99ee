"""The words an operator writes next to a number, or in another cell of its line, to note
that the person objected (numbers.py reads them beside a number, records/csv_read.py in the
other cells, opposition_input.py strips them from an opposition's line). Pure."""
from __future__ import annotations

import re
import unicodedata

# Words an operator writes next to a number to note that the person objected (folded text).
# Such a line must not be "fixed" by deleting the word: that calls the person who objected.
# Besides the words, a negated call ("ne veut plus être appelé", "ne m'appelez plus", "ne pas
# recontacter"), a removal ("retirer de la liste", "supprimer ce numéro", "radiation") and a ban
# ("interdit d'appeler"): a CRM's note says it in a sentence, not in one word.
_WISH = (r"(?:veut|voulait|souhaite|souhaitait|desire|desirait|demande[\s'-]+a|"
         r"a[\s'-]+demande[\s'-]+a)")
_CALLED = r"(?:re)?(?:appel|rappel|contact|sollicit|telephon|demarch)"
OBJECTION = re.compile(
    r"(?<![^\W\d_])(?:stop|oppos\w*|desinscri\w*|desabonn\w*|refus\w*|liste\W*rouge|bloctel|"
    r"do\W*not\W*call|opt\W?out|unsubscribed?|radiation|pas[\s']+d[\s']*appels?|"
    # "ne pas appeler", "ne veut plus être appelé", "ne souhaite plus recevoir d'appels", "ne
    # veut plus qu'on l'appelle": a wish, if anything, between; "ne répond pas - rappeler"
    # is a note to call back
    rf"n(?:e[\s']+|')(?:{_WISH}[\s']+)?(?:pas|plus|jamais)[\s']+(?:(?:etre|me|nous|le|la|les|"
    rf"qu[\s']*on[\s']+(?:l|le|la|les|me))[\s']+)?(?:{_CALLED}\w*|recevoir[\s']+(?:d|des|"
    r"de)?[\s']*appels?)|"
    # "ne m'appelez plus", "n'appelez plus", "ne rappelez pas": the polite imperative
    rf"n(?:e[\s']+|')(?:(?:m|nous)[\s']+)?{_CALLED}ez[\s']+(?:pas|plus|jamais)|"
    r"retir(?:er|ez)[\s'-]+(?:(?:moi|le|la|nous)[\s'-]+)?(?:de|du)[\s'-]+(?:(?:la|notre|vos|"
    r"votre|ce|cette)[\s'-]+)?(?:liste|fichier)|"
    r"supprim(?:er|ez)[\s'-]+(?:(?:ce|mon|son|le|du|de[\s'-]+la)[\s'-]+)?(?:numero|liste|"
    r"fichier)(?![\s'-]+(?:fixe|ancien))|"
    r"interdit[\s'-]+(?:d[\s'-]*)?(?:appel|contact)\w*)(?![^\W\d_])")


def fold_text(text: str) -> str:
    """Lowercase without accents: 'Opposé' and 'oppose' compare equal."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def says_objection(text: str) -> bool:
    """Does `text` write an objection in words ("STOP", "ne plus appeler", "opposé")?"""
    return bool(OBJECTION.search(fold_text(text)))
