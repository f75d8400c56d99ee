"""How people and spreadsheets write the number an opposition names: every form the opposition
form, POST /api/optouts and `ivr optout import` must read (the same E.164 each time), and what
they must still refuse, with a fragment of the reason. Shared by the tests of each path."""
from __future__ import annotations

NUM = "+33612345678"

# (written form, E.164). The first ones were refused by the one-rule change (244e939) while the
# old import took them: an opposition overlooked in the rejects is a person called anyway.
ACCEPTED: list[tuple[str, str]] = [
    ("(+33) 6 12 34 56 78", NUM),
    ("tel:+33612345678", NUM),                      # RFC 3966, as links and vCards copy it
    ("tel:+33-6-12-34-56-78", NUM),
    ("Tél. 06 12 34 56 78", NUM),
    ("Tel: 06 12 34 56 78", NUM),
    ("Téléphone : 06 12 34 56 78", NUM),
    ("TÉL.06.12.34.56.78", NUM),
    ("'0612345678", NUM),                           # a spreadsheet's text marker
    ("+33612345678\u200b", NUM),                    # zero-width space
    ("\u200e+33 6 12 34 56 78", NUM),               # left-to-right mark
    ("06 12 34 56 78\u200f", NUM),                  # right-to-left mark
    ("\ufeff0612345678", NUM),                      # a BOM inside a cell
    ("(0033) 6 12 34 56 78", NUM),
    ("(+33) (0)6 12 34 56 78", NUM),
    ("\uff10\uff16\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18", NUM),  # full-width digits
    # accepted before too: the lenient reader must keep them
    ("06\u00a012\u00a034\u00a056\u00a078", NUM),
    ("06\u202f12\u202f34\u202f56\u202f78", NUM),
    ("+33 (0)6 12 34 56 78", NUM),
    ("06.12.34.56.78", NUM),
    ("0033612345678", NUM),
    # any country, and the overseas national form, as the old import read them
    ("tel:+1-202-555-0101", "+12025550101"),
    ("Tél. 0692 12 34 56", "+262692123456"),
    # the objection's own words beside the number (refused before: the person stayed callable)
    ("+33 6 12 34 56 78 STOP", NUM),
    ("STOP 06 12 34 56 78", NUM),
    ("06 12 34 56 78 (opposition)", NUM),
    ("Ne plus appeler : 06 12 34 56 78", NUM),
]

# (written form, fragment of the reason): the wrong number is not a safe opposition either.
REFUSED: list[tuple[str, str]] = [
    ("0612345678 0698765432", "two numbers on one line"),
    ("06 12 34 56 78 / 06 98 76 54 32", "two numbers on one line"),
    ("06 12 34 56 78 ou 07 81 23 45 67", "two numbers on one line"),
    ("06 12 34 56 78 06 98 76 54 32", "20 digits, more than one number holds: two numbers"),
    ("06 12 34 56 78 ext. 5", "an extension ('ext. 5')"),
    ("0612345678 poste 12", "an extension ('poste 12')"),
    ("tel:+33612345678;ext=5", "an extension (';ext=5')"),
    ("abc0612345679", "letters ('abc') that are not a label"),
    ("Telex 06 12 34 56 78", "letters ('Telex') that are not a label"),
    ("0612345671';x", "letters ('x')"),
    ("0612345678'", "characters a phone number does not hold"),
    ("+33 6 12 34 56 7", "check the digits and the country code"),
    ("\u200b", "no number"),
    ("STOP 06 12 34 56 78 ou 07 81 23 45 67", "two numbers on one line"),
    ("stop", "letters ('stop')"),
]
