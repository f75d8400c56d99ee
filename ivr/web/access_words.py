"""Words a screen reader or a keyboard user meets that a sighted mouse user does not read: the
skip link, the names of buttons and links drawn as a symbol or repeated on every row, and the
state a symbol stood for; and what an account bound to some campaigns is told where it may not
go (web/scope.py). Merged into i18n.STRINGS as refusal_words.py is: (French, English)."""
from __future__ import annotations

ACCESS: dict[str, tuple[str, str]] = {
    "skip_to_main": ("Aller au contenu", "Skip to content"),
    "col_actions": ("Actions", "Actions"),
    "listen": ("Écouter", "Listen to"),
    "page_prev": ("Page précédente", "Previous page"),
    "page_next": ("Page suivante", "Next page"),
    "not_archived": ("non archivé", "not archived"),
    "session_ending": ("Votre session se termine dans moins de 5 minutes : enregistrez ce que "
                       "vous saisissez, puis reconnectez-vous.",
                       "Your session ends in less than 5 minutes: save what you are typing, "
                       "then log in again."),
    # the chart's name for a screen reader: every bar's title after it (web/chart.py)
    "chart_name": ("Appels terminés par heure", "Calls ended per hour"),
    # another campaign's prompts page, to an account that may not see the console's campaign
    "prompts_elsewhere_unnamed": (
        "Cette console détient les messages d'une autre campagne, pas ceux de {campaign} : "
        "lancez `ivr --config CONFIG web` avec la configuration de la campagne {campaign} "
        "pour les voir ou les modifier.",
        "This console holds another campaign's prompts, not {campaign}'s: run "
        "`ivr --config CONFIG web` with campaign {campaign}'s config to see or change them."),
    # a page's 404 or 403 for an account bound to some campaigns (results._KNOWN_DETAILS)
    "none_yours": ("Aucune des campagnes de votre compte n'est dans la base : demandez à un "
                   "administrateur.", "None of your account's campaigns is in the store: ask "
                   "an admin."),
    "spans_all": ("Votre compte est limité à certaines campagnes ; cette action concerne "
                  "toutes les campagnes : demandez à un administrateur.",
                  "Your account is bound to some campaigns; this action spans every campaign: "
                  "ask an admin."),
}
