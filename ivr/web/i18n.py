"""The console's words, in French (the operators' language) and English: one table, one
lookup. A missing key shows itself (the key) rather than failing a page."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ivr.web.access_words import ACCESS
from ivr.web.refusal_words import REFUSALS

LANGS = ("fr", "en")
DEFAULT = "fr"

# key -> (French, English)
STRINGS: dict[str, tuple[str, str]] = {
    **REFUSALS,  # a refusal's and a file's words (refusal_words.py: display._FRENCH's keys)
    **ACCESS,  # what a screen reader says where the page shows a symbol (access_words.py)
    "title": ("Console de campagne", "Campaign console"),
    "login": ("Connexion", "Log in"),
    "logout": ("Déconnexion", "Log out"),
    "username": ("Identifiant", "User name"),
    "password": ("Mot de passe", "Password"),
    "login_failed": ("Identifiant ou mot de passe incorrect.", "Wrong user name or password."),
    "login_limited": ("Trop d'essais : réessayez dans quelques minutes.",
                      "Too many attempts: try again in a few minutes."),
    "campaign": ("Campagne", "Campaign"),
    "switch": ("Changer", "Switch"),
    "overview": ("Vue d'ensemble", "Overview"),
    "run": ("Pilotage", "Run control"),
    "contacts": ("Contacts", "Contacts"),
    "prompts": ("Messages", "Prompts"),
    "rights": ("Opposition et droits", "Opposition and rights"),
    "reports": ("Rapports", "Reports"),
    "outcomes": ("Résultats par issue", "Outcomes"),
    "outcome": ("Issue", "Outcome"),
    "calls": ("Appels", "Calls"),
    "in_flight": ("Appels en cours", "Calls in flight"),
    "cap": ("Plafond", "Cap"),
    "node": ("Nœud", "Node"),
    "per_minute": ("Appels par minute", "Calls per minute"),
    "complete": ("Avancement", "Complete"),
    "eta": ("Temps restant estimé (h:mm:ss)", "Time left, estimated (h:mm:ss)"),  # a duration, not a clock time
    "per_hour": ("Appels par heure", "Calls per hour"),
    "last_calls": ("Derniers appels", "Last calls"),
    "times_in": ("Heures du fuseau {zone}", "Times in the {zone} time zone"),
    "why_waiting": ("Pourquoi personne n'est appelé", "Why nobody is called"),
    "next_allowed": ("Prochain créneau autorisé", "Next allowed time"),
    "desired": ("État demandé", "Desired state"),
    "controllers": ("Contrôleurs", "Controllers"),
    "no_controller": ("Aucun contrôleur actif : lancez `ivr run` ou `ivr run --standby`.",
                      "No controller running: start `ivr run` or `ivr run --standby`."),
    "start": ("Démarrer", "Start"),
    "pause": ("Pause", "Pause"),
    "resume": ("Reprendre", "Resume"),
    "stop": ("Arrêter", "Stop"),
    "hard_stop": ("Arrêt immédiat (raccroche)", "Hard stop (hangs up)"),
    "preflight": ("Vérifications avant lancement", "Preflight"),
    "no_violation": ("Aucun problème.", "No problem found."),
    "pacing": ("Cadence", "Pacing"),
    "max_concurrent": ("Appels simultanés max", "Max concurrent calls"),
    "calls_per_second": ("Appels par seconde", "Calls per second"),
    "save": ("Enregistrer", "Save"),
    "upload": ("Importer", "Upload"),
    "csv_file": ("Fichier CSV", "CSV file"),
    "source": ("Source (nom de la liste)", "Source (list name)"),
    "basis": ("Base légale", "Legal basis"),
    "acquired_on": ("Date d'acquisition", "Acquisition date"),
    "acquired_unknown": ("inconnue", "unknown"),
    "rejected": ("Lignes rejetées", "Rejected lines"),
    "line": ("Ligne", "Line"),
    "reason": ("Motif", "Reason"),
    "download_csv": ("Télécharger (CSV)", "Download (CSV)"),
    "imported_before_error": (
        "Importé avant l'erreur : {n} ligne(s) du fichier (les rejetées ci-dessous exceptées) ; "
        "rien à partir de la ligne fautive. Corrigez le fichier et importez-le à nouveau.",
        "Imported before the error: {n} line(s) of the file (but for the rejected ones "
        "below); nothing from the faulty line on. Fix the file and upload it again."),
    "lists": ("Listes par source", "Lists per source"),
    "status": ("Statut", "Status"),
    "count": ("Nombre", "Count"),
    "text": ("Texte", "Text"),
    "recording": ("Enregistrement", "Recording"),
    "fingerprint": ("Empreinte (sha256)", "Fingerprint (sha256)"),
    "duration": ("Durée (s)", "Duration (s)"),
    "rebuild": ("Reconstruire les messages", "Rebuild the prompts"),
    "legal_errors": ("Contrôle légal", "Legal check"),
    "not_built": ("pas encore construit", "not built yet"),
    "optout_add": ("Ajouter à la liste d'opposition", "Add to the opposition list"),
    "number": ("Numéro", "Number"),
    "contact_name": ("Nom (selon la liste de cette campagne)",
                     "Name (as this campaign's list gives it)"),
    "via": ("Demande reçue par", "Request came in by"),
    "optout_import": ("Importer une liste d'opposition", "Import an opposition list"),
    "optout_import_added": ("Numéros ajoutés à la liste d'opposition",
                            "Numbers added to the opposition list"),
    "optout_import_partial": ("{n} numéro(s) des lignes avant l'erreur sont déjà sur la liste "
                              "d'opposition et y restent : corrigez le fichier et importez-le "
                              "à nouveau (ils ne seront pas comptés deux fois).",
                              "{n} number(s) from the lines before the error are on the "
                              "opposition list already and stay there: fix the file and import "
                              "it again (they will not be counted twice)."),
    "optout_rejects_not_listed": (
        "Les lignes rejetées ne sont PAS sur la liste d'opposition : corrigez-les (fichier CSV "
        "ci-dessous) puis importez-les à nouveau.",
        "The rejected lines are NOT on the opposition list: correct them (CSV file below), "
        "then import them again."),
    "rejects_capped": ("Seules les {shown} premières des {total} lignes rejetées sont listées "
                       "ici : le fichier CSV les contient toutes.",
                       "Only the first {shown} of the {total} rejected lines are listed here: "
                       "the CSV file holds them all."),
    "prompts_elsewhere": (
        "Cette console détient les messages de la campagne {own}, pas ceux de {campaign} : "
        "lancez `ivr --config CONFIG web` avec la configuration de la campagne {campaign} "
        "pour les voir ou les modifier.",
        "This console holds campaign {own}'s prompts, not {campaign}'s: run "
        "`ivr --config CONFIG web` with campaign {campaign}'s config to see or change them."),
    "lookup": ("Rechercher un numéro", "Look a number up"),
    "opted_out": ("Sur la liste d'opposition", "On the opposition list"),
    "not_opted_out": ("Pas sur la liste d'opposition", "Not on the opposition list"),
    "consent_proof": ("Preuve du consentement", "Proof of consent"),
    "number_lists": ("Listes et campagnes du numéro", "The number's lists and campaigns"),
    "gdpr_export": ("Export RGPD (téléchargement)", "GDPR export (download)"),
    "gdpr_erase": ("Effacement RGPD", "GDPR erasure"),
    "erase_confirm": ("Retapez le numéro pour confirmer l'effacement définitif",
                      "Type the number again to confirm the permanent erasure"),
    "erase": ("Effacer", "Erase"),
    "report_csv": ("Rapport CSV (un appel par ligne)", "CSV report (one call per row)"),
    "report_json": ("Rapport JSON (comptes et taux)", "JSON report (counts and rates)"),
    "done": ("Fait.", "Done."),
    "error": ("Erreur", "Error"),
    "forbidden": ("Votre rôle ne permet pas cette action.", "Your role does not allow this."),
    "role": ("Rôle", "Role"),
    "audit": ("Journal d'audit", "Audit log"),
    "none": ("aucun", "none"),
    "lang_other": ("English", "Français"),
    # logout: a POST with the page's token; GET /logout only shows this button
    "logout_ask": ("La déconnexion ferme toutes vos sessions, sur tous les navigateurs.",
                   "Logging out ends all your sessions, in every browser."),
    # column headings and cell words
    "col_id": ("N°", "Id"),
    "col_start": ("Début", "Start"),
    "col_end": ("Fin", "End"),
    "col_keys": ("Touches", "Keys"),
    "col_kind": ("Type", "Kind"),
    "col_at": ("Date", "At"),
    "col_key": ("Touche ou canal", "Key or channel"),
    "col_prompts": ("Messages entendus", "Prompts heard"),
    "col_prompt": ("Message", "Prompt"),
    "col_list": ("Liste", "List"),
    "node_up": ("actif", "up"),
    "node_down": ("injoignable", "down"),
    "node_down_waiting": ("injoignable ({0} appel(s) en cours l'attendent)",
                          "down ({0} call(s) in flight wait for it)"),
    "node_reconciling": ("rapprochement des appels en cours", "reconciling"),
    "node_holding": ("en attente après une panne du PBX", "holding after a PBX fault"),
    "node_full": ("plein", "full"),
    "sev_error": ("erreur", "error"),
    "sev_warning": ("avertissement", "warning"),
    "sev_info": ("info", "info"),
    "cli_words": ("Détail en anglais, tel que l'écrivent les commandes (ivr check, ivr run), "
                  "après la règle en cause :",
                  "Detail, in the command line's words (ivr check, ivr run):"),
    # flashes after an action
    "flash_control": ("{action} : état demandé « {state} »",
                      "{action}: desired state “{state}”"),
    "state_running": ("en cours", "running"),
    "state_paused": ("en pause", "paused"),
    "state_stopped": ("arrêté", "stopped"),
    "state_hard_stop": ("arrêt immédiat", "hard stop"),
    "flash_pacing": ("Cadence enregistrée : {what}", "Pacing saved: {what}"),
    "flash_optout_added": ("{number} : ajouté à la liste d'opposition", "{number}: added to the opposition list"),
    "flash_optout_already": ("{number} : déjà sur la liste d'opposition",
                             "{number}: already on the opposition list"),
    "flash_erased": ("{number} : effacé", "{number} erased"),
    "flash_recording": ("{key} : enregistrement de {seconds} s sauvegardé",
                        "{key}: {seconds} s saved"),
    # a rebuild the legal check refused: its list on the page says it in words (English: "")
    "rebuild_refused": ("Reconstruction refusée : la liste « Contrôle légal » ci-dessous dit "
                        "quoi corriger. Détail en anglais :", ""),
    "flash_built": ("{n} messages construits", "{n} prompts built"),
    "flash_built_not_installed": ("{n} messages construits, non installés : {why}",
                                  "{n} prompts built, not installed: {why}"),
    # refusals (display.refusal): the field's key first, as in the API's English
    "detail_en": ("Détail en anglais :", "Detail:"),
    # how an objection came in (privacy.OPTOUT_CHANNELS: the values sent stay these codes)
    "via_post": ("courrier", "post"),
    "via_email": ("e-mail", "email"),
    "via_phone": ("téléphone", "phone"),
    "via_sms": ("SMS", "SMS"),
    # how an opposition came in that no form offers: a key pressed in a call, the line's
    "via_phone-key": ("touche pendant l'appel", "key pressed during the call"),
    "via_phone-callback": ("ligne d'opposition", "opposition line"),
    # a form's select that records a declaration: nothing chosen until the operator does
    "choose": ("— choisir —", "— choose —"),
    # a contact's status in a campaign (outcomes.CONTACT_STATUSES)
    "contact_pending": ("à appeler", "pending"),
    "contact_done": ("terminé", "done"),
    "contact_exhausted": ("tentatives épuisées", "attempts exhausted"),
    "contact_opted_out": ("opposé (liste d'opposition)", "opted out"),
    # an upload's counts (import_words.summary; the API's `summary` keeps the CLI's English)
    "import_summary": ("{added} ajouté(s), {merged} fusionné(s){dup}, {unchanged} inchangé(s), "
                       "{opted_out} sur la liste d'opposition (jamais appelés), {rejected} "
                       "rejeté(s)",
                       "{added} added, {merged} merged{dup}, {unchanged} unchanged, {opted_out} "
                       "on the opposition list (never called), {rejected} rejected"),
    "import_dup": (" ({updated} existant(s) mis à jour, {repeated} répété(s) dans le fichier)",
                   " ({updated} existing updated, {repeated} repeated in the file)"),
    "import_withdrawn": (", {n} retiré(s) de la file (ce fichier note leur opposition ou leur "
                         "refus de consentement)",
                         ", {n} taken out of the queue (this file records their "
                         "objection or no consent)"),
    # a proof row's kind (the consents table's kind; privacy.consent_proof's "optout")
    "kind_consent": ("consentement", "consent"),
    "kind_refusal": ("refus", "refusal"),
    "kind_optout": ("opposition", "opt-out"),
    # a list's acquisition basis (list_sources.KNOWN_BASES: the values sent stay these codes)
    "basis_consent": ("consentement recueilli", "consent"),
    "basis_member_file": ("fichier d'adhérents", "member file"),
    "basis_rented_file": ("fichier loué", "rented file"),
    # a console user's role (web_users.ROLES)
    "role_admin": ("administrateur", "admin"),
    "role_operator": ("opérateur", "operator"),
    "role_viewer": ("lecteur", "viewer"),
    # the per-hour chart's bar (chart.per_hour_svg), read on hover
    "chart_bar": ("{hour} {zone} : appels {total}, répondus {answered}",
                  "{hour} {zone}: {total} calls, {answered} answered"),
    # why nobody is called (display.why_text, from why.why_parts). An English page shows
    # why.why_sentence's line as it is (the API's and the CLI's): these English words are
    # near it, for a lookup by key only.
    "why_no_contacts": ("aucun contact dans la campagne « {campaign} » : importez une liste "
                        "(page Contacts, ou `ivr contacts import FICHIER --source NOM`), ou "
                        "liez-en une avec `ivr contacts share`",
                        "no contacts for campaign '{campaign}': import a list with `ivr "
                        "contacts import FILE --source NAME`, or bind one with `ivr contacts "
                        "share`"),
    "why_all_done": ("tout est fait : plus personne à appeler ({done})",
                     "all done: nothing left to call ({done})"),
    "why_nobody_now": ("personne ne peut être appelé maintenant : {reasons}",
                       "nobody can be called now: {reasons}"),
    "why_stopped_due": ("la campagne s'est arrêtée avec {n} contact(s) encore à appeler",
                        "the run stopped with {n} contact(s) still due, not called"),
    "why_reason": ("{n} contact(s) — {reason}{when} (détail en anglais : {detail})",
                   "{n} {reason} ({detail}{when})"),
    "why_when": (", prochain appel permis {next}", ", next allowed {next}"),
    "why_held_paused": ("mis en pause depuis la console", "paused from the console"),
    "why_held_standby": ("en attente du bouton Démarrer de la console",
                         "standby: waiting for the console's Start"),
    "reason_outside_window": ("hors des plages d'appel", "outside window"),
    "reason_holiday": ("jour férié", "holiday"),
    "reason_blackout": ("date exclue du calendrier électoral", "blackout"),
    "reason_slot": ("hors du créneau choisi par la personne", "slot"),
    "reason_refusal_cooldown": ("délai après un refus", "refusal cooldown"),
    "reason_attempt_cap": ("nombre maximal d'essais atteint", "attempt cap"),
    "reason_opted_out": ("sur la liste d'opposition", "opted out"),
    "reason_retry_wait": ("attente avant la prochaine tentative", "retry wait"),
    "reason_caller_id_fiction": ("numéro présenté fictif", "caller id fiction"),
    "reason_in_flight": ("appel en cours", "in flight"),
    # outcomes (outcomes.TABLE): the code stays beside them, as `ivr report` writes it
    "outcome_message_played": ("message écouté", "message played"),
    "outcome_message_partial": ("message interrompu", "message cut short"),
    "outcome_declined": ("refus", "declined"),
    "outcome_declined_partial": ("refus, appel interrompu", "declined, cut short"),
    "outcome_no_input": ("aucune touche", "no key pressed"),
    "outcome_hangup_intro": ("raccroché pendant l'introduction", "hung up during the intro"),
    "outcome_opted_out": ("opposition", "opted out"),
    "outcome_machine": ("répondeur", "answering machine"),
    "outcome_busy": ("occupé", "busy"),
    "outcome_no_answer": ("pas de réponse", "no answer"),
    "outcome_congestion": ("réseau saturé", "network congestion"),
    "outcome_failed": ("échec", "failed"),
    "outcome_error": ("erreur", "error"),
    # upload errors: the form's field where the CLI's message names its flag
    "need_source": ("une liste doit indiquer sa provenance : remplissez le champ « {field} »",
                    "a list needs its provenance: fill in the field “{field}”"),
    "need_basis": ("une liste doit indiquer sa base légale : choisissez-la dans « {field} »",
                   "a list needs its acquisition basis: choose it in “{field}”"),
    "field": ("le champ « {field} »", "the field “{field}”"),
    # error pages (page routes; the API keeps its JSON)
    "http_403": ("Accès refusé", "Forbidden"),
    "http_404": ("Page introuvable", "Not found"),
    "csrf_failed": ("Le formulaire a expiré : rechargez la page et réessayez.",
                    "The form has expired: reload the page and try again."),
    "rejects_gone": ("Ces lignes rejetées ne sont plus gardées (les 20 derniers envois, "
                     "10 minutes au plus) : envoyez le fichier à nouveau pour les revoir.",
                     "These rejected lines are no longer kept (the last 20 uploads, 10 minutes "
                     "at most): upload the file again to see them."),
    "no_campaign": ("Cette campagne n'existe pas dans la base, ou votre compte n'y a pas "
                    "accès.", "This campaign is not in the store, or your account may not "
                    "see it."),
    "back_home": ("Retour à la console", "Back to the console"),
    "http_405": ("Méthode non permise", "Method not allowed"),
    "http_413": ("Envoi trop volumineux", "Too large"),
    "too_large": ("L'envoi dépasse la taille permise (ci-dessous : la limite et que faire).",
                  "What was sent is over the size allowed (below: the limit and what to do)."),
    "no_route_404": ("Aucune page de la console n'a cette adresse.",
                     "No page of the console has this address."),
    "no_route_405": ("Cette adresse reçoit un formulaire : revenez à sa page.",
                     "This address takes a form: go back to its page."),
    "form_incomplete": ("Un champ du formulaire manque ou est mal rempli (ci-dessous : lequel) "
                        ": revenez à sa page et corrigez-le.",
                        "A field of the form is missing or wrong (below: which): go back to "
                        "its page and correct it."),
    "http_503": ("Base de données indisponible", "Store unavailable"),
    "store_trouble": ("La base est occupée ou injoignable : la demande s'est arrêtée là, rien "
                      "n'a été enregistré après ce point. Réessayez dans un moment "
                      "(ci-dessous : la cause).",
                      "The store is busy or away: the request stopped there, nothing after "
                      "that point was written. Retry in a moment (below: why)."),
    # a recording's upload (the API's `note` keeps the English)
    "flash_recording_kept": ("{key} : enregistrement de {seconds} s sauvegardé ; le précédent "
                             "est gardé sous {kept}",
                             "{key}: {seconds} s saved; the previous recording is kept as "
                             "{kept}"),
    "flash_recording_unused": ("{key} : enregistré sous {name} ; pour l'utiliser, indiquez "
                               "prompts.items.{key}.file: {name} et sa transcription dans "
                               "config.yaml",
                               "{key}: saved as {name}: set prompts.items.{key}.file: {name} "
                               "and its transcript in config.yaml to use it"),
}


def pick(lang: str | None) -> str:
    return lang if lang in LANGS else DEFAULT


def translate(lang: str, key: str, default: str | None = None) -> str:
    """`key`'s words in `lang`; an unknown key shows `default`, else the key itself."""
    pair = STRINGS.get(key)
    if pair is None:
        return key if default is None else default
    return pair[LANGS.index(pick(lang))]


def translator(lang: str):  # type: ignore[no-untyped-def]
    """`t("key")` (or `t("key", default)`) for the templates, bound to one language."""
    return lambda key, default=None: translate(lang, key, default)


def states(lang: str) -> dict[str, str]:
    """A run's desired states (running, paused...) in words, for the overview and its script."""
    return {k[len("state_"):]: translate(lang, k) for k in STRINGS if k.startswith("state_")}


def outcomes(lang: str) -> dict[str, str]:
    """The outcomes' words by code, for the overview's script (a count or a call it draws
    after the page: a run started from the console brings its first outcomes that way)."""
    return {k[len("outcome_"):]: translate(lang, k) for k in STRINGS if k.startswith("outcome_")}


def control_done(lang: str, action: str, desired: str | None) -> str:
    """The run control's flash: the button pressed and the desired state it wrote, in words
    (an unknown state as it is)."""
    state = translate(lang, f"state_{desired}", desired or "—")
    return translate(lang, "flash_control").format(action=translate(lang, action), state=state)


def pacing_saved(lang: str, given: dict[str, str], row: dict[str, Any]) -> str:
    """The pacing flash: what was set, and only that (a field left empty keeps its value,
    and said "None")."""
    what = [f"{translate(lang, name)} {_figure(lang, row[name])}" for name, text in given.items()
            if str(text).strip() and row.get(name) is not None]
    return translate(lang, "flash_pacing").format(what=" · ".join(what))


def _figure(lang: str, value: Any) -> str:
    """A pacing value as the page writes it: a rate's decimal comma in French (0,5)."""
    text = str(value)
    return text.replace(".", ",") if isinstance(value, float) and pick(lang) == "fr" else text


# The CLI's flags the import's messages name (records/contacts.py, shared with the CLI) and
# the console form's field that stands for each: (the CLI's words, key, field's label key,
# which is also the API's field: web/records.api_fields).
FLAG_FIELDS = (("a list needs its provenance: pass --source NAME", "need_source", "source"),
                ("a list needs its acquisition basis: pass --basis consent, member_file or "
                 "rented_file", "need_basis", "basis"),
                ("--acquired-on", "field", "acquired_on"),
                ("--source", "field", "source"),
                ("--basis", "field", "basis"))


def form_words(lang: str, message: str) -> str:
    """An import error as the console shows it: the form's field named where the CLI's
    message names a command-line flag (the CLI keeps its own words)."""
    for cli, key, field in FLAG_FIELDS:
        if cli in message:
            message = message.replace(cli, translate(lang, key).format(
                field=translate(lang, field)))
    return message


def recording_saved(lang: str, res: dict[str, Any]) -> str:
    """The flash after a recording's upload (prompts.upload_recording's answer): the take it
    replaced kept aside, or the name to set in the config; its seconds otherwise."""
    values = {"key": res["key"], "seconds": res["duration_s"]}
    if not res["used_by_config"]:
        key, values["name"] = "flash_recording_unused", Path(res["saved"]).name
    elif res.get("kept"):
        key, values["kept"] = "flash_recording_kept", Path(res["kept"]).name
    else:
        key = "flash_recording"
    return translate(lang, key).format(**values)


def rebuilt(lang: str, res: dict[str, Any]) -> str:
    """The flash after a rebuild (prompts.rebuild's answer; the API keeps its English note)."""
    n = len(res["prompts"])
    if not res["note"]:
        return translate(lang, "flash_built").format(n=n)
    why = res["note"].removeprefix("not installed: ")  # the PBX's own words stay as they are
    return translate(lang, "flash_built_not_installed").format(n=n, why=why)
