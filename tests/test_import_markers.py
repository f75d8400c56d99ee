"""Contact imports: what a list says about a person's objection or consent is never dropped on the
way to a call (a word next to the number, a consent/opposition column, a basis saying there is
no consent), and Excel's usual header shapes and number formats get a reason that says what to fix."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import add_contact, make_config
from web_fixture import CAMPAIGN, login, make_web
from ivr.compliance.campaign_check import check_campaign
from ivr.compliance.preflight import ERROR, check_sources
from ivr.errors import ImportFileError
from ivr.numbers import NumberRejected, parse_callee
from ivr.records.contacts import ImportReport, import_csv
from ivr.store.sqlite import Store

NOW = datetime(2026, 12, 3, 9, 30, tzinfo=timezone.utc)
OPTOUT = "`ivr optout add NUMBER --via post|email|phone|sms`"


def run(store: Store, tmp_path: Path, text: str | bytes, *, basis: str = "consent",
        source: str = "list-a") -> ImportReport:
    path = tmp_path / "list.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return import_csv(store, path, campaign="c1", source=source, basis=basis,
                      acquired_on="2026-11-02", default_region="FR", now=NOW)


def contacts(store: Store) -> list[dict[str, Any]]:
    return store.q("SELECT number, name, extra, status FROM contacts ORDER BY id")


# -- 1. a word noting an objection next to the number -------------------------------------------
@pytest.mark.parametrize("raw, words", [
    ("06 12 34 56 78 STOP", "STOP"), ("06 12 34 56 79 (ne pas appeler)", "(ne pas appeler)"),
    ("06 12 34 56 80 - opposé", "- opposé"), ("06 12 34 56 81 liste rouge", "liste rouge"),
    ("0612345678 Désinscrit", "Désinscrit"), ("0612345678 REFUS", "REFUS"),
    ("0612345678 Opposition", "Opposition")])
def test_a_word_noting_an_objection_is_not_to_be_removed(raw: str, words: str) -> None:
    with pytest.raises(NumberRejected) as exc:
        parse_callee(raw, "FR")
    assert exc.value.reason == (f"text after the number ({words!r}) looks like an objection: "
                                f"record it with {OPTOUT} (or the console's rights page), do "
                                "not remove the word")


def test_other_words_after_the_number_may_record_an_objection_too() -> None:
    with pytest.raises(NumberRejected) as exc:
        parse_callee("06 12 34 56 78 (domicile)", "FR")
    assert exc.value.reason == ("text after the number ('(domicile)'): if it records an "
                                f"objection, record the number with {OPTOUT}; otherwise "
                                "remove the text")


@pytest.mark.parametrize("raw", ["0612345678 poste 3", "0612345678 ext 4", "06 12 34 56 78 x12",
                                 "0612345678,1"])
def test_an_extension_is_still_an_extension(raw: str) -> None:
    with pytest.raises(NumberRejected, match="^trailing characters after the number .*: "
                                             "remove the extension or suffix$"):
        parse_callee(raw, "FR")


def test_a_stop_line_is_rejected_with_the_objection_reason(store: Store, tmp_path: Path) -> None:
    report = run(store, tmp_path, "number;name\n06 12 34 56 78 STOP;Martin\n0612345679;Durand\n")
    ((line, reason),) = report.rejected
    assert line == 2 and "looks like an objection" in reason and OPTOUT in reason
    assert [c["number"] for c in contacts(store)] == ["+33612345679"]


# -- 2. consent and opposition columns ----------------------------------------------------------
def test_a_line_refusing_consent_or_objecting_never_reaches_pending(
        store: Store, tmp_path: Path) -> None:
    report = run(store, tmp_path, "number;name;Consentement;Opposition\n"
                                  "0612345601;A;oui;non\n"
                                  "0612345602;B;non;\n"
                                  "0612345603;C;;oui\n"
                                  "0612345604;D;Refusé;\n"
                                  "0612345605;E;;\n"
                                  "0612345606;F;peut-être;\n"
                                  "0612345607;G;OUI;X\n")
    out = ("not imported, and out of this campaign's queue if a list queued it before: record "
           f"the number with {OPTOUT} so that no campaign calls it")
    assert report.rejected == [
        (3, f"'0612345602': column 'Consentement' says 'non' (no consent): {out}"),
        (4, f"'0612345603': column 'Opposition' says 'oui' (an objection): {out}"),
        (5, f"'0612345604': column 'Consentement' says 'Refusé' (no consent): {out}"),
        (8, f"'0612345607': column 'Opposition' says 'X' (an objection): {out}"),
    ]
    # A consent column's other values (a date, "peut-être") are kept, with one warning.
    assert report.warnings == [
        "column 'Consentement' holds values that say neither yes nor no, such as 'peut-être': "
        "those lines were imported as consented; check the column"]
    assert [(c["number"], c["status"]) for c in contacts(store)] == [
        ("+33612345601", "pending"), ("+33612345605", "pending"), ("+33612345606", "pending")]


def test_an_objection_column_holding_anything_else_rejects_the_line(
        store: Store, tmp_path: Path) -> None:
    report = run(store, tmp_path, "number;Opposition\n0612345601;2024-03-01\n0612345602;non\n")
    assert report.rejected == [(2, "'0612345601': column 'Opposition' holds '2024-03-01': write "
                                   "oui/yes/true/1/x or non/no/false/0, or leave it empty")]
    assert [c["number"] for c in contacts(store)] == ["+33612345602"]


@pytest.mark.parametrize("value", ["2024-03-01", "recueilli le 3 mars 2024", "formulaire web"])
def test_a_consent_column_holding_a_date_or_a_note_keeps_every_line(
        store: Store, tmp_path: Path, value: str) -> None:
    report = run(store, tmp_path, f"number;Date de consentement\n0612345601;{value}\n"
                                  f"0612345602;{value}\n0612345603;non\n")
    assert [line for line, _ in report.rejected] == [4] and report.added == 2
    assert len(report.warnings) == 1 and repr(value) in report.warnings[0]


@pytest.mark.parametrize("value", ["Non recueilli", "Pas de consentement", "Retiré le 12/03/2024",
                                   "Refus le 3/4", "Révoqué", "Retrait", "NON (tél)", "no!",
                                   "pas d'accord"])
def test_a_consent_cell_saying_no_in_other_words_rejects_the_line(
        store: Store, tmp_path: Path, value: str) -> None:
    report = run(store, tmp_path, f"number;Consentement\n0612345601;{value}\n0612345602;oui\n")
    assert [line for line, _ in report.rejected] == [2]
    assert "(no consent)" in report.rejected[0][1] and report.warnings == []
    assert [c["number"] for c in contacts(store)] == ["+33612345602"]


@pytest.mark.parametrize("column", ["Consentement", "consent_given", "Opt-in"])
@pytest.mark.parametrize("value", ["false", "0", "FAUX", "N", "no", "Non"])
def test_a_consent_cell_saying_no_in_one_word_rejects_the_line(
        store: Store, tmp_path: Path, column: str, value: str) -> None:
    """A CRM's export writes a refused consent false or 0: before, only "non" and refusals
    in other words rejected the line; false, 0, faux and n were imported as consented (with
    a warning) and the person was called."""
    report = run(store, tmp_path, f"number;{column}\n0612345601;{value}\n0612345602;oui\n")
    assert [line for line, _ in report.rejected] == [2], report.rejected
    assert "(no consent)" in report.rejected[0][1] and report.warnings == []
    assert [c["number"] for c in contacts(store)] == ["+33612345602"]


@pytest.mark.parametrize("header, cell", [("name", "Martin (ne plus appeler)"),
                                          ("commentaire", "STOP - opposé par courrier"),
                                          ("statut", "opposé"), ("notes", "do not call")])
def test_an_objection_written_in_another_cell_rejects_the_line(
        store: Store, tmp_path: Path, header: str, cell: str) -> None:
    """The words next to the number reject its line; in a name or comment cell they were
    imported as an opaque extra, and the person who objected was called."""
    report = run(store, tmp_path, f"number;{header}\n0612345601;{cell}\n0612345602;Durand\n")
    assert [line for line, _ in report.rejected] == [2], report.rejected
    assert f"column {header!r} says {cell!r}, which looks like an objection" in \
        report.rejected[0][1] and "ivr optout add" in report.rejected[0][1]
    assert [c["number"] for c in contacts(store)] == ["+33612345602"]


@pytest.mark.parametrize("cell", [
    "ne veut plus être appelé", "a demandé à ne plus être appelé",
    "ne souhaite pas être contactée", "demande de radiation reçue par courrier", "désabonné",
    "retirer de la liste SVP", "supprimer ce numéro", "hostile - ne pas recontacter",
    "ne m'appelez plus", "n'appelez plus", "interdit d'appeler", "ne pas solliciter",
    # found in review, still imported after the first fix
    "Ne souhaite plus recevoir d'appels", "Ne plus téléphoner", "Ne veut plus qu'on l'appelle",
    "Ne plus démarcher", "Pas d'appels SVP"])
def test_an_objection_a_crm_note_writes_in_a_sentence_rejects_the_line(
        store: Store, tmp_path: Path, cell: str) -> None:
    """Found by a probe: these notes were imported and their numbers queued, the one-word
    list knowing neither a negated call with words between ("ne veut plus être appelé"),
    "radiation", "désabonné", "recontacter", nor a removal from the list."""
    from ivr.web import import_words
    report = run(store, tmp_path, f"number;notes\n0612345601;{cell}\n0612345602;adhérent\n")
    assert [line for line, _ in report.rejected] == [2], report.rejected
    assert "which looks like an objection" in report.rejected[0][1]
    assert [c["number"] for c in contacts(store)] == ["+33612345602"]
    # in French on the console's page (it was its English behind « Détail en anglais »)
    assert "ce qui ressemble à une opposition" in import_words.reason("fr", report.rejected[0][1])


@pytest.mark.parametrize("cell", ["ne répond pas, rappeler", "n'est pas là, rappeler demain",
                                  "Rappeler après 18h", "Marie Radier", "contact presse",
                                  "nouvel adhérent",
                                  # found in review: taken for objections by the first fix
                                  "Ne répond pas - rappeler demain", "NRP, ne décroche pas - "
                                  "rappeler à 18h", "N'a pas rappelé", "Supprimer ancien "
                                  "numéro fixe", "Retiré du fichier adhérents 2019, réinscrit "
                                  "2024", "N'Diaye"])
def test_a_note_about_when_to_call_is_no_objection(store: Store, tmp_path: Path,
                                                    cell: str) -> None:
    report = run(store, tmp_path, f"number;notes\n0612345601;{cell}\n")
    assert report.rejected == [] and [c["number"] for c in contacts(store)] == ["+33612345601"]


@dataclass(frozen=True)
class Allow:
    allowed: bool


def queued(store: Store, campaign: str = "c1") -> list[str]:
    return [c["number"] for c in store.pending_contacts(campaign)]


def test_a_later_list_objecting_takes_a_queued_number_out_of_the_queue(
        store: Store, tmp_path: Path) -> None:
    run(store, tmp_path, "number\n0612345601\n0612345602\n0612345603\n0612345604\n")
    import_csv(store, _write(tmp_path, "number\n0612345601\n"), campaign="c2",
               source="list-c", basis="consent", acquired_on=None, default_region="FR",
               now=NOW)
    report = run(store, tmp_path, "number;Opposition;Consentement\n0612345601;oui;\n"
                                  "06 12 34 56 02 STOP;;\n0612345603;;non\n0612345604;non;oui\n",
                 source="list-b")
    assert [line for line, _ in report.rejected] == [2, 3, 4]
    assert report.withdrawn == 3 and report.summary().endswith(
        ", 3 taken out of the queue (this file records their objection or no consent)")
    assert queued(store) == ["+33612345604"]
    assert queued(store, "c2") == ["+33612345601"]  # another campaign's list: its own queue
    audit = store.q("SELECT detail FROM audit WHERE action = 'import' ORDER BY id")
    assert json.loads(audit[-1]["detail"])["withdrawn"] == 3
    again = run(store, tmp_path, "number;Opposition\n0612345601;oui\n", source="list-b")
    assert again.withdrawn == 0 and queued(store) == ["+33612345604"]


def test_a_run_planned_before_the_objection_does_not_dial_it(store: Store, tmp_path: Path) -> None:
    """The run's plan may be hours old: the claim reads the queue again (both backends)."""
    run(store, tmp_path, "number\n0612345601\n0612345602\n")
    planned = store.pending_contacts("c1")
    run(store, tmp_path, "number;Opposition\n0612345601;oui\n", source="list-b")
    got = [store.claim_attempt(c, campaign="c1", caller_id="+33162000000", node="n1", now=NOW,
                               attempts_since=NOW, refusals_since=NOW,
                               judge=lambda past: Allow(not past.in_flight)).call
           for c in planned]
    assert got[0] is None and got[1] is not None and got[1]["number"] == "+33612345602"


def test_sharing_a_list_keeps_a_withdrawn_number_out_of_the_new_queue(
        store: Store, tmp_path: Path) -> None:
    run(store, tmp_path, "number\n0612345601\n0612345602\n")
    run(store, tmp_path, "number\n612345601 STOP\n", source="list-b")  # its 0 lost too
    assert queued(store) == ["+33612345602"]
    assert store.share_list("list-a", campaign="c2", basis="consent", now=NOW,
                            from_campaign="c1") == 2
    assert queued(store, "c2") == ["+33612345602"]


def test_an_objection_later_in_the_file_takes_an_earlier_line_out_of_the_queue(
        store: Store, tmp_path: Path) -> None:
    report = run(store, tmp_path, "number;name;Opposition\n0612345601;Martin;\n"
                                  "0612345602;Durand;\n06 12 34 56 01;;oui\n")
    assert [line for line, _ in report.rejected] == [4] and report.withdrawn == 1
    assert queued(store) == ["+33612345602"]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "other.csv"
    path.write_text(text)
    return path


OBJECTION_HEADERS = ["Opposé", "OPT-OUT", "opt_out", "Do Not Call", "STOP",
                                    "ne_pas_appeler", "Bloctel", "Désinscrit", "Refus",
                                    "Opposé(e)", "STOP SMS", "Opposition démarchage",
                                    "Ne pas appeler ?", "Opposant", "DNC",
                                    "Consentement refusé", "Ne plus appeler", "Unsubscribed",
                                    "Don't call", "is_do_not_contact", "Opt out"]
CONSENT_HEADERS = ["Opt-in", "consent_given", "Consentement RGPD", "Accord RGPD", "RGPD",
                   "Accepte d'être contacté"]


@pytest.mark.parametrize("column, cell, said", [
    *[(c, "yes", "an objection") for c in OBJECTION_HEADERS],
    *[(c, "non", "no consent") for c in CONSENT_HEADERS]])
def test_objection_and_consent_columns_are_read_whatever_their_spelling(
        store: Store, tmp_path: Path, column: str, cell: str, said: str) -> None:
    other = "no" if cell == "yes" else "oui"
    report = run(store, tmp_path, f"number;{column}\n0612345601;{cell}\n0612345602;{other}\n")
    assert [line for line, _ in report.rejected] == [2]
    assert f"column {column!r} says {cell!r} ({said})" in report.rejected[0][1]
    assert [c["number"] for c in contacts(store)] == ["+33612345602"]


@pytest.mark.parametrize("column", ["email_opt_in", "Consentement email", "Newsletter opt-out",
                                    "Last opened", "Raccordement", "Bureau de vote",
                                    "Circonscription", "Statut", "adhérent"])
def test_other_columns_are_kept_as_they_are(store: Store, tmp_path: Path, column: str) -> None:
    """Another channel's consent (an email opt-in) or a word that only holds 'stop' or
    'accord' ('Last opened', 'Raccordement') forbids no call."""
    report = run(store, tmp_path, f"number;{column}\n0612345601;false\n0612345602;oui\n")
    assert report.rejected == [] and report.added == 2
    assert json.loads(contacts(store)[0]["extra"]) == {column: "false"}


def test_an_objection_does_not_merge_into_a_contact_or_an_earlier_line(
        store: Store, tmp_path: Path) -> None:
    add_contact(store, "+33612345601", at=NOW, source="list-a", basis="consent")
    report = run(store, tmp_path, "number;name;Opposition\n"
                                  "0612345601;Martin;oui\n"   # an existing contact
                                  "0612345602;;\n"
                                  "06 12 34 56 02;Durand;oui\n")  # repeats line 3
    assert [line for line, _ in report.rejected] == [2, 4]
    assert (report.added, report.merged, report.duplicates) == (1, 0, 0)
    assert [(c["number"], c["name"], json.loads(c["extra"] or "{}"), c["status"])
            for c in contacts(store)] == [("+33612345601", None, {}, "pending"),
                                          ("+33612345602", None, {"Opposition": ""}, "pending")]


# -- 3. Excel's header shapes -------------------------------------------------------------------
def test_empty_header_cells_are_not_duplicates_and_keep_no_empty_values(
        store: Store, tmp_path: Path) -> None:
    report = run(store, tmp_path, "number;;name;;cp;;\n0612345601;;A;;75001;;\n"
                                  "0612345602;x;B;;;;\n")
    assert report.added == 2 and report.rejected == []
    assert [(c["name"], c["extra"]) for c in contacts(store)] == [
        ("A", '{"cp": "75001"}'), ("B", '{"column_2": "x", "cp": ""}')]


def test_a_title_row_above_the_header_is_named(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError) as exc:
        run(store, tmp_path, "Liste adhérents 2026;;;\r\n\r\nnumber;name;ville;cp\r\n"
                             "0612345678;A;Paris;75001\r\n")
    assert str(exc.value) == ("list.csv: the header must be the first line: remove the title "
                              "rows above it (line 3 looks like the header)")
    assert contacts(store) == []


# -- 4. a basis stating there is no consent -----------------------------------------------------
@pytest.mark.parametrize("basis", ["pas de consentement", "sans consentement",
                                   "consentement refusé", "no consent", "consent: no"])
def test_a_basis_without_consent_is_refused(store: Store, tmp_path: Path, basis: str) -> None:
    found = check_sources([{"source": "x", "basis": basis, "acquired_on": "2026-01-01"}])
    assert [v.code for v in found if v.severity == ERROR] == ["basis_no_consent"]
    with pytest.raises(ImportFileError, match="says there is no consent: a list without "
                                              "consent may not be called; drop it$"):
        run(store, tmp_path, "number\n0612345678\n", basis=basis)
    assert contacts(store) == []


@pytest.mark.parametrize("basis", ["consent not given", "consentement non recueilli",
                                   "consent: non.", "without any prior consent",
                                   "consentement : non recueilli", "consentement: non (tél)",
                                   "sans recueil du consentement", "without obtaining consent",
                                   "sans accord ni consentement"])
def test_a_basis_denying_consent_in_other_words_is_refused(basis: str) -> None:
    found = check_sources([{"source": "x", "basis": basis, "acquired_on": "2026-01-01"}])
    assert [v.code for v in found if v.severity == ERROR] == ["basis_no_consent"]


@pytest.mark.parametrize("basis", ["opt-in: no objection recorded", "consent: non-withdrawn",
                                   "non-partisan opt-in", "no-cost opt-in",
                                   "consent given, no resale"])
def test_a_negation_bearing_on_something_else_is_a_consent(basis: str) -> None:
    found = check_sources([{"source": "x", "basis": basis, "acquired_on": "2026-01-01"}])
    assert [v.code for v in found if v.severity == ERROR] == []


def test_a_stored_list_without_consent_refuses_the_campaign(store: Store) -> None:
    add_contact(store, "+33612345678", at=NOW, source="old", basis="pas de consentement")
    cfg = make_config(campaign={"name": "c1", "caller_id": "+33162000000"})
    found = check_campaign(cfg, store, build=False, dry_run=True, prompts=False)
    assert "basis_no_consent" in [v.code for v in found if v.severity == ERROR]


# -- 5. numbers exported as a decimal or in French scientific notation --------------------------
def test_a_number_exported_as_a_decimal_says_so(store: Store, tmp_path: Path) -> None:
    report = run(store, tmp_path, "number\n612345678.0\n33612345678.0\n")
    reason = ("the number was exported as a decimal (its leading 0 or + is lost): format the "
              "column as text and export the list again")
    assert report.rejected == [(2, f"'612345678.0': {reason}"), (3, f"'33612345678.0': {reason}")]


def test_french_scientific_notation_in_a_one_column_file(store: Store, tmp_path: Path) -> None:
    report = run(store, tmp_path, "number\n6,12345678E+08\n0612345679\n")
    assert report.rejected == [(2, "'6,12345678E+08': a spreadsheet turned the number into "
                                   "scientific notation (its leading 0 or + is lost, maybe "
                                   "digits too): format the column as text and export the list "
                                   "again")]
    assert report.added == 1


# -- the console's upload: the same reasons, on its rejects page and in their CSV ---------------
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_console_upload_lists_objection_rejects(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    web = make_web(tmp_path, monkeypatch)
    c = web.client()
    token = login(c, "otto")
    text = "number;Opposition\n06 12 34 56 78 STOP;\n0612345679;oui\n0612345680;non\n"
    r = c.post(f"/c/{CAMPAIGN}/contacts/upload",
               files={"file": ("list.csv", text.encode(), "text/csv")},
               data={"source": "door-to-door", "basis": "consent", "csrf_token": token})
    assert r.status_code == 200 and 'id="rejects" data-count="2"' in r.text
    link = r.text.split('id="rejects-download" href="')[1].split('"')[0]
    lines = c.get(link).text.splitlines()
    assert [ln.split(",")[0] for ln in lines[1:]] == ["2", "3"]
    assert "looks like an objection" in lines[1] and "(an objection)" in lines[2]
    assert [n["number"] for n in contacts(web.store)] == ["+33612345680"]


def test_an_objection_in_another_cell_takes_a_queued_number_out_of_the_queue(
        store: Store, tmp_path: Path) -> None:
    """'Martin (ne plus appeler)' in a name cell rejected the line but left the number an
    earlier list queued: the person who wrote it was still called by this campaign."""
    run(store, tmp_path, "number\n0612345601\n0612345602\n")
    report = run(store, tmp_path, "number,name\n0612345601,Martin (ne plus appeler)\n",
                 source="list-b")
    assert [line for line, _ in report.rejected] == [2] and report.withdrawn == 1
    assert queued(store) == ["+33612345602"]


def test_objection_lines_are_listed_past_the_rejects_cap(store: Store, tmp_path: Path) -> None:
    """Past the first 1,000 rejects the others are only counted: an objection among them was
    shown nowhere, and the operator could not record it on the opposition list."""
    from ivr.records.contacts import MAX_LISTED_REJECTS
    garbage = "".join(f"not-a-number-{i}\n" for i in range(MAX_LISTED_REJECTS + 5))
    report = run(store, tmp_path, "number,name\n" + garbage + "0612345601,Martin (STOP)\n"
                 "also-garbage\n")
    last = MAX_LISTED_REJECTS + 5 + 2
    assert report.rejected_total == MAX_LISTED_REJECTS + 7
    assert len(report.rejected) == MAX_LISTED_REJECTS + 1  # the cap, and the objection
    assert report.rejected[-1][0] == last and "looks like an objection" in report.rejected[-1][1]


@pytest.mark.parametrize("zone", ["UTC", "Etc/GMT-2", "GMT", "Etc/UTC", "Zulu", "posix/UTC",
                                  "right/UTC", "Factory"])
def test_a_time_zone_of_no_place_rejects_its_line(store: Store, tmp_path: Path,
                                                   zone: str) -> None:
    """Found by a probe: a CRM's default zone, UTC, on a mobile's line moved its calls to
    20:30 in Paris (the mobile's place is the list's zone); it now names the line, the cell
    and the fix, in French on the console's page too."""
    from ivr.web import import_words
    report = run(store, tmp_path, f"number,timezone\n0612345601,{zone}\n"
                                  "0612345602,Europe/Paris\n0612345603,\n")
    assert [line for line, _ in report.rejected] == [2], report.rejected
    why = report.rejected[0][1]
    assert why == f"time zone {zone!r} names no place: give the callee's (e.g. " \
        "Europe/Paris), or leave the cell empty for the number's own"
    assert [c["number"] for c in contacts(store)] == ["+33612345602", "+33612345603"]
    assert import_words.reason("fr", why).startswith(f"le fuseau horaire {zone!r} ne désigne "
                                                     "aucun lieu")
