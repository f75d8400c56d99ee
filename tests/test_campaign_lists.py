"""Lists belong to campaigns (issue 18, item 1): an import binds its list to the config's
campaign, a run plans only its own campaign's contacts, a second use of a list is a deliberate
`ivr contacts share` recorded in the audit, and a number may belong to several campaigns while
its attempt cap still counts every campaign's attempts."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from conftest import attempt, make_config, sqlite_at_schema
from ivr.campaign import planning, why
from ivr.cli import cli
from ivr.compliance.campaign_check import check_campaign
from ivr.errors import ImportFileError
from ivr.records.contacts import import_csv, share_list
from ivr.store import Store

NOW = datetime(2026, 3, 4, 9, 30, tzinfo=timezone.utc)  # a Wednesday, 10:30 in Paris
A, B = "campaign-a", "campaign-b"


def cfg(name: str, **schedule: int) -> object:
    return make_config(campaign={"name": name, "caller_id": "+33162000000"},
                       schedule={"demo_any_hour": True, **schedule})


def imported(store: Store, tmp_path: Path, campaign: str, source: str, *numbers: str) -> None:
    path = tmp_path / f"{source}.csv"
    path.write_text("number\n" + "\n".join(numbers) + "\n", encoding="utf-8")
    import_csv(store, path, campaign=campaign, source=source, basis="consent",
               acquired_on="2026-01-10", default_region="FR", now=NOW)


def due(store: Store, campaign: str) -> list[str]:
    return [c["number"] for c in planning.plan(cfg(campaign), store, NOW).due]


def test_a_run_plans_only_its_own_campaigns_contacts(store: Store, tmp_path: Path) -> None:
    imported(store, tmp_path, A, "list-of-a", "+33199000010", "+33199000011")
    imported(store, tmp_path, B, "list-of-b", "+33199000020")
    assert due(store, A) == ["+33199000010", "+33199000011"]
    assert due(store, B) == ["+33199000020"]
    assert due(store, "campaign-c") == []
    assert [s["source"] for s in store.pending_sources(B)] == ["list-of-b"]
    assert "for campaign 'campaign-c'" in why.why_nobody(
        store, planning.plan(cfg("campaign-c"), store, NOW), "campaign-c")


def test_sharing_a_list_is_explicit_and_audited(store: Store, tmp_path: Path) -> None:
    imported(store, tmp_path, A, "list-of-a", "+33199000010", "+33199000011")
    assert share_list(store, source="list-of-a", campaign=B, basis="member_file",
                      now=NOW, from_campaign=A) == 2
    assert due(store, B) == ["+33199000010", "+33199000011"]
    (row,) = store.q("SELECT * FROM audit WHERE action = 'list_shared'")
    assert json.loads(row["detail"]) == {"source": "list-of-a", "from_campaign": A,
                                         "campaign": B, "basis": "member_file", "contacts": 2}
    assert [(s["source"], s["basis"]) for s in store.pending_sources(B)] == [
        ("list-of-a", "member_file")]
    assert share_list(store, source="list-of-a", campaign=B, basis="member_file",
                      now=NOW, from_campaign=A) == 0  # already bound: nothing new


@pytest.mark.parametrize(("source", "basis", "message"), [
    ("no-such-list", "consent", "no list named 'no-such-list' for campaign"),
    ("list-of-a", None, "--basis"),
    ("list-of-a", "scraped from the web", "scrap"),
])
def test_a_share_without_a_list_or_a_basis_writes_nothing(
        store: Store, tmp_path: Path, source: str, basis: str | None, message: str) -> None:
    imported(store, tmp_path, A, "list-of-a", "+33199000010")
    audit_before = store.q("SELECT * FROM audit")
    with pytest.raises(ImportFileError, match=re.escape(message)):
        share_list(store, source=source, campaign=B, basis=basis, now=NOW, from_campaign=A)
    assert due(store, B) == [] and store.q("SELECT * FROM audit") == audit_before


def test_sharing_a_list_shares_that_campaigns_list_not_anothers_of_the_same_name(
        store: Store, tmp_path: Path) -> None:
    """Two campaigns each import their members as 'adherents': sharing B's with C must not
    give C the members A collected for its own candidate."""
    imported(store, tmp_path, A, "adherents", "+33199000010", "+33199000011")
    imported(store, tmp_path, B, "adherents", "+33199000020")
    assert share_list(store, source="adherents", campaign="campaign-c", basis="member_file",
                      now=NOW, from_campaign=B) == 1
    assert due(store, "campaign-c") == ["+33199000020"]
    with pytest.raises(ImportFileError, match="for campaign 'campaign-c'"):
        share_list(store, source="list-of-a", campaign=B, basis="consent", now=NOW,
                   from_campaign="campaign-c")


def test_one_number_in_two_campaigns_keeps_its_progress_per_campaign(
        store: Store, tmp_path: Path) -> None:
    imported(store, tmp_path, A, "list-of-a", "+33199000010")
    imported(store, tmp_path, B, "list-of-b", "+33199000010")
    contact = store.pending_contacts(A)[0]
    call = attempt(store, contact, A, "+33162000000", NOW)
    store.finish_unanswered(call["id"], "failed", "0", NOW, None)  # no retry: over for A
    assert due(store, A) == []
    assert store.pending_contacts(B) == [store.one("SELECT * FROM contacts")]
    assert {r["campaign"]: r["status"] for r in store.contact_campaigns("+33199000010")} == {
        A: "exhausted", B: "pending"}


def test_the_attempt_cap_counts_every_campaigns_attempts(
        store: Store, tmp_path: Path) -> None:
    imported(store, tmp_path, A, "list-of-a", "+33199000010")
    share_list(store, source="list-of-a", campaign=B, basis="consent", now=NOW,
               from_campaign=A)
    contact = store.pending_contacts(A)[0]
    call = attempt(store, contact, A, "+33162000000", NOW.replace(hour=8))
    store.finish_unanswered(call["id"], "no_answer", "19", NOW.replace(hour=8), None)
    waiting = planning.plan(cfg(B, max_attempts_per_30_days=1), store, NOW).waiting
    assert [(c["number"], v.reason) for c, v in waiting] == [("+33199000010", "attempt_cap")]


def v4_store(path: Path) -> None:
    """A store as issue 18 found it: schema 4, contacts bound to no campaign."""
    conn = sqlite_at_schema(path, 4)
    ts = "2026-01-01T00:00:00.000Z"
    conn.executemany("INSERT INTO contacts (number, source, basis, status, created_at, "
                     "updated_at) VALUES (?, ?, 'consent', ?, ?, ?)",
                     [("+33199000010", "old-list", "done", ts, ts),
                      ("+33199000011", "old-list", "pending", ts, ts)])
    conn.execute("INSERT INTO calls (contact_id, number, attempt, campaign, started_at, "
                 "outcome) VALUES (1, '+33199000010', 1, 'old-campaign', ?, 'declined')", (ts,))
    conn.commit()
    conn.close()


def test_the_migration_binds_called_contacts_and_warns_about_the_others(
        tmp_path: Path) -> None:
    v4_store(tmp_path / "ivr.db")
    store = Store.open(tmp_path / "ivr.db", optout_key=b"k")
    assert store.contact_campaigns("+33199000010")[0]["campaign"] == "old-campaign"
    assert store.contact_campaigns("+33199000011") == []
    assert due(store, "old-campaign") == []  # the done one stays done
    (warning,) = [v for v in check_campaign(cfg("old-campaign"), store)  # type: ignore[arg-type]
                  if v.code == "unbound_list"]
    assert warning.severity == "warning"
    assert "ivr contacts share --source old-list --campaign old-campaign" in warning.message
    share_list(store, source="old-list", campaign="old-campaign", basis="consent", now=NOW,
               from_campaign="old-campaign")
    assert due(store, "old-campaign") == ["+33199000011"]


def config_file(base: Path, name: str) -> Path:
    """The test config (cfg_file) under another campaign name, on the same store."""
    data = yaml.safe_load(base.read_text(encoding="utf-8"))
    data["campaign"]["name"] = name
    path = base.with_name(f"{name}.yaml")
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def invoke(path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--config", str(path), *args])
    return result.exit_code, result.output


def test_the_cli_binds_on_import_and_shares_on_request(tmp_path: Path, cfg_file: Path) -> None:
    a, b = config_file(cfg_file, A), config_file(cfg_file, B)
    csv = tmp_path / "a.csv"
    csv.write_text("number\n+33199000010\n", encoding="utf-8")
    code, out = invoke(a, "contacts", "import", str(csv), "--source", "list-of-a",
                       "--basis", "consent")
    assert code == 0, out
    code, out = invoke(b, "run", "--dry-run")
    assert "0 would be called now, 0 not" in out, out
    code, out = invoke(b, "contacts", "share", "--source", "list-of-a", "--campaign", B,
                       "--basis", "consent")  # B's config: B has no list of that name
    assert code != 0 and "no list named 'list-of-a' for campaign 'campaign-b'" in out, out
    code, out = invoke(b, "contacts", "share", "--source", "list-of-a", "--campaign", B,
                       "--basis", "consent", "--from-campaign", A)
    assert code == 0 and "1 contact(s) now belong to campaign 'campaign-b'" in out, out
    code, out = invoke(b, "run", "--dry-run")
    assert "1 would be called now" in out, out
    code, out = invoke(b, "contacts", "share", "--source", "list-of-b", "--campaign", B,
                       "--basis", "consent")
    assert code != 0 and "no list named 'list-of-b'" in out, out


def test_report_shows_the_configs_campaign_or_all_of_them(tmp_path: Path,
                                                          cfg_file: Path) -> None:
    a, b = config_file(cfg_file, A), config_file(cfg_file, B)
    csv = tmp_path / "a.csv"
    csv.write_text("number\n+33199000010\n+33199000011\n", encoding="utf-8")
    assert invoke(a, "contacts", "import", str(csv), "--source", "list-of-a",
                  "--basis", "consent")[0] == 0
    csv.write_text("number\n+33199000020\n", encoding="utf-8")
    assert invoke(b, "contacts", "import", str(csv), "--source", "list-of-b",
                  "--basis", "consent")[0] == 0
    reports = {name: json.loads(invoke(path, "report", "--format", "json", *extra)[1])
               for name, path, extra in (("a", a, ()), ("b", b, ()), ("all", a, ("--all",)),
                                         ("b-by-name", a, ("--campaign", B)))}
    assert (reports["a"]["campaign"], reports["a"]["contacts"]["pending"]) == (A, 2)
    assert (reports["b"]["campaign"], reports["b"]["contacts"]["pending"]) == (B, 1)
    assert reports["b-by-name"] == reports["b"]
    assert (reports["all"]["campaign"], reports["all"]["contacts"]["pending"]) == (None, 3)
    code, out = invoke(a, "report", "--all", "--campaign", B)
    assert code != 0 and out.strip().splitlines() == [
        "error: --all and --campaign exclude each other: give one of them"]


def test_consent_show_and_gdpr_export_list_every_campaign_of_a_number(
        tmp_path: Path, cfg_file: Path) -> None:
    a, b = config_file(cfg_file, A), config_file(cfg_file, B)
    csv = tmp_path / "a.csv"
    csv.write_text("number\n+33199000010\n", encoding="utf-8")
    for path, source in ((a, "list-of-a"), (b, "list-of-b")):
        assert invoke(path, "contacts", "import", str(csv), "--source", source,
                      "--basis", "consent")[0] == 0
    code, out = invoke(a, "consent", "show", "+33199000010")
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert code == 0 and [(r["campaign"], r["list"]) for r in lines] == [
        (A, "list-of-a"), (B, "list-of-b")]
    code, out = invoke(b, "gdpr", "export", "+33199000010")
    assert code == 0 and sorted(r["campaign"] for r in json.loads(out)["campaigns"]) == [A, B]


def test_a_shared_list_keeps_its_own_acquisition_date(store: Store, tmp_path: Path) -> None:
    """A number first imported by another campaign's old list (2019) and then in A's 2026
    petition: sharing the petition with B recorded 2019, the contact's first list's date, as
    the petition's provenance in B."""
    old = tmp_path / "old.csv"
    old.write_text("number\n+33199000030\n", encoding="utf-8")
    import_csv(store, old, campaign="campaign-x", source="old-members", basis="member_file",
               acquired_on="2019-05-01", default_region="FR", now=NOW)
    imported(store, tmp_path, A, "petition-2026", "+33199000030")  # acquired 2026-01-10
    assert share_list(store, source="petition-2026", campaign=B, basis="consent", now=NOW,
                      from_campaign=A) == 1
    dates = {r["campaign"]: r["acquired_on"] for r in store.q(
        "SELECT campaign, acquired_on FROM campaign_contacts ORDER BY campaign")}
    assert dates == {A: "2026-01-10", B: "2026-01-10", "campaign-x": "2019-05-01"}


def test_a_shared_undated_list_stays_undated(store: Store, tmp_path: Path) -> None:
    """A list imported without its date and shared: the share is undated too (and `ivr check`
    says so in the other campaign), not the date of the contact's first list."""
    old = tmp_path / "old.csv"
    old.write_text("number\n+33199000031\n", encoding="utf-8")
    import_csv(store, old, campaign="campaign-x", source="old-members", basis="member_file",
               acquired_on="2019-05-01", default_region="FR", now=NOW)
    undated = tmp_path / "undated.csv"
    undated.write_text("number\n+33199000031\n", encoding="utf-8")
    import_csv(store, undated, campaign=A, source="petition", basis="consent",
               acquired_on=None, default_region="FR", now=NOW)
    assert share_list(store, source="petition", campaign=B, basis="consent", now=NOW,
                      from_campaign=A) == 1
    dates = {r["campaign"]: r["acquired_on"] for r in store.q(
        "SELECT campaign, acquired_on FROM campaign_contacts ORDER BY campaign")}
    assert dates == {A: None, B: None, "campaign-x": "2019-05-01"}
    # The same list imported again with its date in B records it there.
    import_csv(store, undated, campaign=B, source="petition", basis="consent",
               acquired_on="2026-02-01", default_region="FR", now=NOW)
    assert store.one("SELECT acquired_on FROM campaign_contacts WHERE campaign = ?",
                     (B,))["acquired_on"] == "2026-02-01"


def test_an_import_counts_another_campaigns_numbers_as_added(store: Store,
                                                             tmp_path: Path) -> None:
    """Left open at the last stop: a number campaign A holds was counted merged or unchanged
    in B's import, so B's importer (a user bound to B alone) learnt which of B's numbers
    another party's lists hold. New to the campaign is added, whoever else has it."""
    path = tmp_path / "a.csv"
    path.write_text("number,name\n+33199000010,Ana\n+33199000011,\n", encoding="utf-8")

    def counts(campaign: str, text: str) -> tuple[int, int, int]:
        path.write_text(text, encoding="utf-8")
        r = import_csv(store, path, campaign=campaign, source="l", basis="consent",
                       acquired_on="2026-01-10", default_region="FR", now=NOW)
        return r.added, r.merged, r.unchanged

    assert counts(A, "number,name\n+33199000010,Ana\n+33199000011,\n") == (2, 0, 0)
    # B: one number as A has it, one filling A's blank name, one nobody has
    b_file = "number,name\n+33199000010,Ana\n+33199000011,Bea\n+33199000012,\n"
    assert counts(B, b_file) == (3, 0, 0)
    assert counts(B, b_file) == (0, 0, 3)  # B's own now: as any re-import
    assert counts(A, "number,name\n+33199000010,Ana\n+33199000012,Cy\n") == (1, 0, 1)
    assert len(store.q("SELECT id FROM contacts")) == 3  # still one row a person
