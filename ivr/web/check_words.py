"""The rule each `ivr check` finding names, in French for the run and prompts pages: a headline
per code (compliance/preflight.py, campaign_check.py, telephony/pbx_probe.py, web/service.py),
before the finding's own line, which stays the command line's English (it names the config
keys and commands to fix it). tests/test_web_check_words.py reads every code those modules
write, so a new code without its French headline fails there."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from markupsafe import Markup, escape

from ivr.web import i18n

DECREE = " (décret 2022-1313)"
ARCEP = " (ARCEP 2022-1583)"
HEADLINES: dict[str, str] = {
    # the calling rules
    "no_window": "aucune plage d'appel",
    "window_syntax": "plage d'appel illisible",
    "window_wider_than_decree": "plages d'appel plus larges que la loi" + DECREE,
    "holidays_not_skipped": "appels les jours fériés" + DECREE,
    "holidays_not_french": "jours fériés d'un autre pays que la France" + DECREE,
    "attempt_cap_above_decree": "trop d'essais par numéro" + DECREE,
    "refusal_cooldown_short": "délai trop court après un refus" + DECREE,
    "override_reason_too_short": "motif de dérogation trop court",
    "override_reason_unused": "motif de dérogation sans objet",
    "limits_negative": "limite négative",
    "attempts_zero": "aucun appel permis (plafond à 0)",
    "timezone_invalid": "fuseau horaire inconnu",
    "holidays_country_invalid": "pays des jours fériés inconnu",
    "blackout_invalid": "date exclue illisible",
    "demo_any_hour": "mode démonstration : horaires levés",
    "retry_delay_demo": "délais de nouvel essai de démonstration",
    "amd_on": "détection de répondeur active : un blanc au décroché",
    # the number presented
    "caller_id_missing": "numéro présenté absent",
    "caller_id_invalid": "numéro présenté invalide",
    "caller_id_masked": "numéro présenté masqué",
    "caller_id_mobile": "numéro présenté mobile, interdit aux appels automatisés" + ARCEP,
    "caller_id_range": "numéro présenté hors des tranches des appels automatisés" + ARCEP,
    "caller_id_fiction": "numéro présenté fictif pour des numéros réels",
    "caller_name_unsafe": "nom présenté refusé",
    # the lists
    "source_missing": "provenance de la liste absente",
    "source_scraped": "numéros collectés automatiquement, interdit par la CNIL",
    "basis_missing": "base légale de la liste absente",
    "basis_unknown": "base légale inconnue",
    "basis_no_consent": "liste sans consentement",
    "basis_scraped": "base légale : collecte automatique, interdite par la CNIL",
    "acquired_on_missing": "date d'acquisition de la liste absente",
    "acquired_on_invalid": "date d'acquisition de la liste illisible",
    "unbound_list": "liste rattachée à aucune campagne : jamais appelée",
    # the prompts
    "consent_first": "le consentement d'abord : l'introduction",
    "legal_mentions": "mentions légales du message",
    "callback_line": "ligne d'opposition : son annonce",
    "ask_slot": "créneau de rappel demandé avec le consentement",
    "prompts_not_built": "messages pas encore construits",
    "prompts_stale": "messages construits périmés : à reconstruire",
    # the PBX
    "pbx_unreachable": "PBX injoignable",
    "pbx_not_checked": "PBX non vérifié",
    "pbx_ami_login": "connexion AMI refusée",
    "pbx_ami_user": "droits de l'utilisateur AMI",
    "pbx_dialplan": "dialplan du PBX",
    "pbx_agi_url": "adresse FastAGI du dialplan",
    "pbx_journal": "Asterisk trop ancien pour lire le journal des oppositions",
    "pbx_optout_digit": "touche d'opposition de la ligne d'opposition",
    "dial_string_sandbox": "numérotation vers les correspondants simulés du bac à sable",
    "ring_timeout_short": "sonnerie abandonnée trop tôt",
    "sounds_dir_unset": "dossier des sons d'Asterisk non indiqué",
    # the console
    "other_campaign": "jugée avec la configuration d'une autre campagne",
    "console_config_stale": "configuration de la console modifiée depuis son lancement",
}


def finding(lang: str, v: Mapping[str, Any]) -> Markup:
    """A finding (the pages' dict: severity, code, message) as a page in `lang` shows it: in
    French, its rule's headline, then its own English line (the list's note says so); a code
    with no headline, its English line alone. On a French page the English line is in
    `<span lang="en">`, so a French screen-reader voice does not read it as French."""
    message = str(v["message"])
    if i18n.pick(lang) == "en":
        return escape(message)
    english = Markup('<span lang="en">{}</span>').format(message)
    headline = HEADLINES.get(v["code"])
    return english if headline is None else Markup("{} — {}").format(headline, english)
