"""The thin CLI over the store: opposition, consent proof, GDPR, purge, check (no PBX needed)."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from conftest import add_contact, attempt
from ivr import config
from ivr.cli import cli
from ivr.prompts.build import build_prompts
from ivr.store import CallResult, Store

NUMBER = "+33162000010"


def invoke(cfg_file: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--config", str(cfg_file), *args])
    return result.exit_code, result.output


def seed_consent(cfg_file: Path) -> None:
    cfg = config.load(cfg_file)
    store = Store.open(cfg.path(cfg.store.path))
    now = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)
    contact = add_contact(store, NUMBER, at="x", source="members", basis="member_file")
    call = attempt(store, contact, "c1", "+33162000000", now)
    store.finish_answered(call["id"], CallResult(
        outcome="message_played", stage="goodbye", keys="1", heard={"message": "ab"},
        choice="consent", choice_key="1", answered_prompt="intro",
        answered_sha256="f" * 64), now)


def test_optout_add_then_consent_show(cfg_file: Path) -> None:
    code, out = invoke(cfg_file, "optout", "add", "01 62 00 00 10", "--via", "post")
    assert code == 0 and "added" in out
    code, out = invoke(cfg_file, "optout", "add", NUMBER, "--via", "post")
    assert "already" in out
    code, out = invoke(cfg_file, "consent", "show", NUMBER)
    assert code == 0 and "post" in out


def test_optout_via_must_be_known(cfg_file: Path) -> None:
    code, out = invoke(cfg_file, "optout", "add", NUMBER, "--via", "pigeon")
    assert code != 0 and "pigeon" in out


def test_consent_show_prints_the_proof(cfg_file: Path) -> None:
    seed_consent(cfg_file)
    code, out = invoke(cfg_file, "consent", "show", "01 62 00 00 10")
    proof = json.loads(out.strip().splitlines()[0])
    assert code == 0
    assert proof["key"] == "1" and proof["caller_id"] == "+33162000000"
    assert proof["campaign"] == "c1" and proof["prompt_sha256"] == "f" * 64


def test_gdpr_export_then_erase_keeps_the_opposition(cfg_file: Path) -> None:
    seed_consent(cfg_file)
    invoke(cfg_file, "optout", "add", NUMBER, "--via", "email")
    code, out = invoke(cfg_file, "gdpr", "export", NUMBER)
    assert code == 0 and NUMBER in out and json.loads(out)
    code, out = invoke(cfg_file, "gdpr", "erase", NUMBER)
    assert code == 0
    cfg = config.load(cfg_file)
    store = Store.open(cfg.path(cfg.store.path))
    assert store.is_opted_out(NUMBER)
    assert store.one("SELECT COUNT(*) AS n FROM contacts")["n"] == 0
    actions = [r["action"] for r in store.q("SELECT action FROM audit ORDER BY id")]
    assert "gdpr_export" in actions and "gdpr_erase" in actions


def test_purge_with_bad_duration_is_one_clear_line(cfg_file: Path) -> None:
    code, out = invoke(cfg_file, "purge", "--older-than", "soon")
    assert code == 1 and out.startswith("error:") and len(out.strip().splitlines()) == 1


@pytest.mark.parametrize("typed, means", [("1m", "30 days"), ("36h", "1.5 days")])
def test_purge_shorter_than_the_lookback_echoes_the_option_as_typed(
        backend_cfg_file: Path, typed: str, means: str) -> None:
    """It said '--older-than 30d' for 1m, and '1d' for 36h."""
    code, out = invoke(backend_cfg_file, "purge", "--older-than", typed)
    assert code == 1 and out.startswith(f"error: --older-than {typed} ({means}) is shorter "
                                        "than the 60 days the calling rules read back"), out
    assert "use at least 60d" in out and len(out.strip().splitlines()) == 1
    assert "30-day months" in " ".join(invoke(backend_cfg_file, "purge", "--help")[1].split())


def test_check_and_run_refuse_prompts_not_built_with_the_same_line(
        backend_cfg_file: Path) -> None:
    """`ivr check` said 0 errors, then `ivr run` refused: "prompts are not built"."""
    cfg = config.load(backend_cfg_file)
    line = (f"prompts are not built ({cfg.path(cfg.prompts.build_dir) / 'manifest.json'} "
            "missing): run `ivr prompts build` first")
    code, out = invoke(backend_cfg_file, "check")
    assert code == 1 and f"error prompts_not_built: {line}" in " ".join(out.split()), out
    assert "1 error(s)" in out
    code, out = invoke(backend_cfg_file, "run")
    assert code == 1 and out.splitlines()[-1] == f"error: {line}", out
    code, out = invoke(backend_cfg_file, "run", "--dry-run")  # plays nothing: only told
    assert code == 0 and f"warning prompts_not_built: {line} (a real run refuses)" in out, out
    build_prompts(cfg)
    code, out = invoke(backend_cfg_file, "check")
    assert code == 0 and "prompts_not_built" not in out, out


def test_check_passes_the_shipped_campaign_but_fails_a_mobile_caller_id(
        cfg_file: Path) -> None:
    build_prompts(config.load(cfg_file))  # `ivr run` refuses without a build: so does check
    code, out = invoke(cfg_file, "check")
    assert code == 0, out
    data = yaml.safe_load(cfg_file.read_text())
    data["campaign"]["caller_id"] = "06 12 34 56 78"
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True))
    code, out = invoke(cfg_file, "check")
    assert code == 1 and "caller_id_mobile" in out


def test_check_names_missing_legal_mentions(cfg_file: Path) -> None:
    data = yaml.safe_load(cfg_file.read_text())
    data["prompts"]["items"]["legal"] = {"text": "Message de Marie Dupont."}
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True))
    code, out = invoke(cfg_file, "check")
    assert code == 1 and "postal address" in out and "email" in out


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("dialer:\n  max_concurrent: lots\n")
    code, out = invoke(bad, "check")
    assert code == 1 and "dialer.max_concurrent" in out and len(out.strip().splitlines()) == 1


def test_dry_run_leaves_the_store_file_and_its_wal_byte_identical(cfg_file: Path) -> None:
    """A dry run only reads: not even a stale status is fixed (the claim does that)."""
    cfg = config.load(cfg_file)
    path = cfg.path(cfg.store.path)
    store = Store.open(path)  # kept open: its WAL keeps frames a writer could checkpoint
    now, campaign = datetime.now(timezone.utc), cfg.campaign.name
    new = [add_contact(store, f"+3316200001{i}", at=now, source="members",
                       basis="member_file", acquired_on="2025-11-02") for i in range(5)]
    store.add_optout(new[1]["number"], "post", now)
    store.db.execute("UPDATE contacts SET status = 'pending' WHERE id = ?", (new[1]["id"],))
    busy = attempt(store, new[2], campaign, "+33162000000", now - timedelta(minutes=5))
    store.finish_unanswered(busy["id"], "busy", "17", now, now + timedelta(days=1))
    old = attempt(store, new[3], campaign, "+33162000000", now - timedelta(days=2))
    store.finish_unanswered(old["id"], "no_answer", "19", now - timedelta(days=2),
                            now - timedelta(days=1))
    attempt(store, new[4], "another", "+33162000000", now)  # in flight elsewhere
    files = [path, path.with_name(path.name + "-wal")]
    before = [f.read_bytes() for f in files]
    assert before[1], "the WAL should hold the seeded rows"

    code, out = invoke(cfg_file, "run", "--dry-run")

    assert code == 0, out
    for reason in ("opted_out", "retry_wait", "in_flight"):
        assert reason in out
    due, waiting = map(int, re.findall(r"(\d+) would be called now, (\d+) not", out)[0])
    assert due + waiting == 5 and waiting >= 3  # the other two depend on the hour
    assert [f.read_bytes() for f in files] == before


def test_a_new_store_is_noted_and_an_unknown_campaign_is_warned(cfg_file: Path) -> None:
    """A mistyped store.path made a new, empty store (no opposition list) without a word, and
    `report --campaign` with a typo printed an empty report."""
    runner = CliRunner(mix_stderr=False)
    first = runner.invoke(cli, ["--config", str(cfg_file), "report", "--format", "json"])
    assert first.exit_code == 0 and first.stderr.startswith("note: new store created at ")
    again = runner.invoke(cli, ["--config", str(cfg_file), "report", "--format", "json",
                                "--campaign", "typo"])
    assert again.exit_code == 0 and json.loads(again.stdout)["attempts"] == 0
    assert again.stderr == "warning: no campaign 'typo' in this store (its campaigns: none)\n"
    seed_consent(cfg_file)
    known = runner.invoke(cli, ["--config", str(cfg_file), "report", "--campaign", "c1"])
    assert known.exit_code == 0 and known.stderr == ""


def test_check_notes_the_new_store_it_created(cfg_file: Path) -> None:
    """`ivr check` exits through sys.exit, past the note the other commands print at their
    end: a mistyped store.path passed the preflight with 0 errors and no word, an empty
    opposition list behind it."""
    runner = CliRunner(mix_stderr=False)
    result = runner.invoke(cli, ["--config", str(cfg_file), "check"])
    assert "note: new store created at " in result.stderr
    assert "check store.path" in result.stderr


def test_a_command_ending_on_its_own_status_notes_the_new_store(cfg_file: Path,
                                                                 tmp_path: Path) -> None:
    """`ivr optout import` with a rejected line exits 1 itself (click's ctx.exit): the note
    of the store it created was skipped, as `ivr check`'s was."""
    listed = tmp_path / "optouts.csv"
    listed.write_text("number\n0199000012\nnot a number\n")
    result = CliRunner(mix_stderr=False).invoke(
        cli, ["--config", str(cfg_file), "optout", "import", str(listed)])
    assert result.exit_code == 1 and "1 line(s) rejected" in result.stderr
    assert result.stderr.rstrip("\n").endswith("check store.path if you expected one")


def test_prompts_build_refuses_an_intro_that_is_not_consent_first(cfg_file: Path) -> None:
    """A running campaign takes a rebuilt intro at once (prompts/live.py): the build refuses
    what `ivr check` refuses, and writes nothing."""
    data = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))
    data["prompts"]["items"]["intro"] = {"text": "Votez pour nous dimanche. Merci."}
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    code, out = invoke(cfg_file, "prompts", "build", "--engine", "espeak", "--no-install")
    assert code == 1 and out.startswith("error: prompts.items.intro ") and out.count("\n") == 1
    assert "nothing was built" in out
    cfg = config.load(cfg_file)
    assert not (cfg.path(cfg.prompts.build_dir) / "manifest.json").exists()


def test_a_failed_command_names_the_store_it_created_on_its_one_error_line(
        cfg_file: Path, tmp_path: Path) -> None:
    runner = CliRunner(mix_stderr=False)
    result = runner.invoke(cli, ["--config", str(cfg_file), "optout", "import",
                                 str(tmp_path / "missing.csv")])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ") and "created a new, empty store at" in result.stderr


def test_a_store_path_that_cannot_be_made_is_one_line(cfg_file: Path) -> None:
    data = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))
    data["store"] = {"path": "/proc/self/ivr.db"}  # a folder no one can create files in
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    code, out = invoke(cfg_file, "report")
    assert code == 1 and out.startswith("error: cannot open the store /proc/self/ivr.db")
    assert out.count("\n") == 1


def test_a_store_path_that_is_a_folder_says_to_name_a_file(cfg_file: Path,
                                                           tmp_path: Path) -> None:
    """Before: "unable to open database file", naming neither store.path nor what to do."""
    data = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))
    data["store"] = {"path": str(tmp_path)}
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    code, out = invoke(cfg_file, "report")
    assert code == 1 and out == (f"error: cannot open the store {tmp_path}: a folder, not a "
                                 "file: give store.path a file name (e.g. ivr.db) inside it\n")


def test_report_csv_and_json_are_utf8_whatever_the_locale(cfg_file: Path) -> None:
    """Found in review: `ivr report --format csv|json` wrote in the terminal's encoding. Under
    a latin-1 locale its bytes were not the console's, and a name outside latin-1 stopped the
    CSV half-way with a UnicodeEncodeError; a list named "[/2026]" crashed the table (rich
    markup)."""
    import io
    import os
    import subprocess
    import sys
    from ivr.records.report import calls_csv
    store = Store.open(Path(yaml.safe_load(cfg_file.read_text())["store"]["path"]))
    now = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
    row = add_contact(store, "+33199000001", at=now, source="mairie [/2026] été 中文")
    call = attempt(store, row, "demo-municipales-2026", "+33162000000", now)
    store.finish_unanswered(call["id"], "no_answer", "19", now, None)
    expected = io.BytesIO()
    calls_csv(store, expected, campaign="demo-municipales-2026")
    env = {**os.environ, "PYTHONIOENCODING": "latin-1"}

    def ivr_report(fmt: str, encoding: str = "latin-1") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-c", "from ivr.cli import main; main()",
                               "--config", str(cfg_file), "report", "--format", fmt,
                               "--campaign", "demo-municipales-2026"], capture_output=True,
                              env={**env, "PYTHONIOENCODING": encoding}, timeout=120)
    csv_out = ivr_report("csv")
    assert csv_out.returncode == 0, csv_out.stderr
    assert csv_out.stdout == expected.getvalue()
    assert "mairie [/2026] été 中文".encode() in csv_out.stdout
    json_out = ivr_report("json")
    assert json_out.returncode == 0, json_out.stderr
    assert "mairie [/2026] été 中文" in json_out.stdout.decode("utf-8")
    table = ivr_report("table", "utf-8")  # for a person: the terminal's own characters
    assert table.returncode == 0, table.stderr
    assert "mairie [/2026]" in table.stdout.decode("utf-8")


def test_the_clis_rights_commands_name_who_ran_them_and_erase_asks_on_a_terminal(
        cfg_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review: `ivr gdpr erase` erased at once, for good, and its audit row, as every
    rights command's from the CLI, named nobody (the console's name their user)."""
    from ivr import cli_rights
    monkeypatch.setenv("SUDO_USER", "alice")
    number = "+33199000021"
    store = Store.open(Path(yaml.safe_load(cfg_file.read_text())["store"]["path"]))
    add_contact(store, number, at=datetime(2026, 3, 2, 10, tzinfo=timezone.utc))
    assert invoke(cfg_file, "optout", "add", "+33199000022", "--via", "post")[0] == 0
    monkeypatch.setattr(cli_rights, "on_terminal", lambda: True)
    runner = CliRunner()
    refused = runner.invoke(cli, ["--config", str(cfg_file), "gdpr", "erase", number],
                            input="n\n")
    assert refused.exit_code == 1 and "cannot be undone" in refused.output
    assert store.one("SELECT count(*) AS n FROM contacts WHERE number = ?", (number,))["n"] == 1
    done = runner.invoke(cli, ["--config", str(cfg_file), "gdpr", "erase", number], input="y\n")
    assert done.exit_code == 0, done.output
    assert store.one("SELECT count(*) AS n FROM contacts WHERE number = ?", (number,))["n"] == 0
    actors = {r["action"]: r["actor"] for r in store.q("SELECT action, actor FROM audit")}
    assert actors["gdpr_erase"] == actors["optout"] == "alice (cli)", actors
    assert runner.invoke(cli, ["--config", str(cfg_file), "gdpr", "erase", "+33199000023",
                               "--yes"]).exit_code == 0  # a script says so, and is not asked
