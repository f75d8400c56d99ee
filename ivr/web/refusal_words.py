"""The French words of the refusals a page shows (display._FRENCH matches the English the
service raises and picks one of these keys), beside the console's other words (i18n.py). The
English of each is the API's own text, so an English page shows that text as it is."""
from __future__ import annotations

# key -> (French, English): {0}, {1}... are the groups display._FRENCH's pattern found
REFUSALS: dict[str, tuple[str, str]] = {
    "refused_number": ("{0}: {1} n'est pas un numéro de téléphone valide : donnez-le sous la "
                       "forme +33… ou 0… (détail en anglais : {2})",
                       "{0}: {1} is not a valid phone number: give it as +33… or 0…; {2}"),
    "refused_confirm": ("confirm: retapez le numéro {0} pour confirmer l'effacement",
                        "confirm: type the number {0} again to confirm the erasure"),
    "refused_whole": ("{0}: {1} n'est pas un nombre entier", "{0}: {1} is not a whole number"),
    "refused_float": ("{0}: {1} n'est pas un nombre", "{0}: {1} is not a number"),
    "refused_via": ("« Demande reçue par » : choisissez comment la demande est arrivée "
                    "(courrier, e-mail, téléphone, SMS)",
                    "Request came in by: choose how the request came in (post, email, phone, "
                    "SMS)"),
    "refused_pacing": ("Rythme : indiquez les appels simultanés, les appels par seconde, ou les "
                       "deux", "Pacing: give the calls in flight, the calls per second, or both"),
    "refused_max_concurrent": ("Appels simultanés : {0} est hors limites ; entre 1 et {1} "
                               "(dialer.max_concurrent de la configuration)",
                               "Calls in flight: {0} is out of bounds; between 1 and {1} "
                               "(the config's dialer.max_concurrent)"),
    # a contact list refused whole (display._FRENCH; the English page keeps the CLI's words)
    "upload_no_number": ("{0} : pas de colonne « number » (colonnes trouvées : {1}) : la "
                         "première ligne du fichier doit nommer « number » la colonne des "
                         "numéros de téléphone", "{0}"),
    "upload_empty": ("{0} est vide : sa première ligne doit être un en-tête nommant une "
                     "colonne « number »", "{0}"),
    "upload_nul": ("{0} n'est pas du texte CSV (octet NUL à la position {1}) : exportez la "
                   "liste au format CSV", "{0}"),
    "upload_spreadsheet": ("{0} est un classeur (Excel, ODS), pas du texte CSV : enregistrez-le "
                           "au format « CSV UTF-8 »", "{0}"),
    "upload_utf16": ("{0} est en UTF-16 : enregistrez-le au format « CSV UTF-8 »", "{0}"),
    "upload_twice": ("{0} : la colonne {1} apparaît deux fois dans l'en-tête : renommez l'une "
                     "des deux", "{0}"),
    "upload_title_rows": ("{0} : l'en-tête doit être la première ligne : supprimez les lignes "
                          "de titre au-dessus (la ligne {1} ressemble à l'en-tête)", "{0}"),
    "upload_bad_date": ("« Date d'acquisition » : {0} n'est pas une date : donnez-la sous la "
                        "forme AAAA-MM-JJ", "{0}"),
    "upload_future_date": ("« Date d'acquisition » : {0} est dans le futur : donnez la date à "
                           "laquelle la liste a été acquise", "{0}"),
    "upload_source_long": ("« Source » : {0} caractères, {1} au plus : donnez à la liste un nom "
                           "court", "{0}"),
    # an erasure not finished on disk (display._FRENCH): the page says it is incomplete
    "flash_erase_incomplete": ("{number} : effacement INCOMPLET, le numéro reste sur le disque "
                               "— {why}", "{number} erased; {why}"),
    "erase_left_wal": ("un autre processus (par exemple `ivr run`) tient la base {0} ouverte : "
                       "le numéro effacé reste dans son fichier -wal tant que ce processus ne "
                       "l'a pas fermée ; relancez alors l'effacement avant de répondre à la "
                       "personne", "{0}"),
    "erase_left_owner": ("le rôle {0} n'est pas propriétaire de {1} : PostgreSQL ne peut pas "
                         "les réécrire et les lignes effacées restent sur le disque ; faites-lui "
                         "donner la propriété de ces tables par leur propriétaire actuel, puis "
                         "relancez l'effacement", "{0}"),
    "erase_left_lock": ("une autre session tenait un verrou sur une table que l'effacement a "
                        "modifiée : elle n'a pas été réécrite et le numéro effacé reste sur le "
                        "disque dans d'anciennes versions de lignes ; relancez l'effacement "
                        "une fois cette session terminée", "{0}"),
}
