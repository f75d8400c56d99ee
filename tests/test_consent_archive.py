"""Issue 16 item 6: the proof of consent. The consent row keeps every prompt heard (sha256),
the AMD status and the answer time; every prompt version ever built stays in the archive by
its sha256; `ivr consent show` lists it all and exports the audio."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from conftest import add_contact, attempt
from ivr import config
from ivr.cli import cli
from ivr.prompts.archive import archive_dir
from ivr.prompts.build import build_prompts
from ivr.store import CallResult, Store

SENDER, ADDRESS, EMAIL = "Jean Test", "1 rue Haute, Lyon", "stop@test.fr"
ITEMS: dict[str, dict[str, Any]] = {
    "intro": {"text": "Ici Jean Test. Pour ne plus être appelé, appuyez sur 9."},
    "message": {"text": "Votez pour nous."},
    "legal": {"text": f"Par {SENDER}, {ADDRESS}, {EMAIL}."},
    "goodbye": {"text": "Au revoir."},
    "invalid": {"text": "Choix invalide."},
    "no_input": {"text": "Rien entendu."},
    "optout_confirm": {"text": "Vous ne serez plus appelé."},
}
NOW = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)
NUMBER = "+33162000010"


def write_cfg(tmp_path: Path, intro: str) -> Path:
    data = {"legal": {"sender": SENDER, "postal_address": ADDRESS, "email": EMAIL},
            "store": {"path": "ivr.db"},
            "prompts": {"engine": "espeak", "build_dir": "prompts/build",
                        "items": {**ITEMS, "intro": {"text": intro}}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def test_a_rebuild_keeps_the_old_intro_reachable_by_its_sha256(tmp_path: Path) -> None:
    first = build_prompts(config.load(write_cfg(tmp_path, ITEMS["intro"]["text"])))
    old = first["prompts"]["intro"]["sha256"]
    old_audio = (tmp_path / "prompts/build/intro.wav").read_bytes()
    second = build_prompts(config.load(write_cfg(tmp_path, "Ici Jean Test, autrement. Pour ne "
                                                 "plus être appelé, appuyez sur 9.")))
    assert second["prompts"]["intro"]["sha256"] != old
    archive = tmp_path / "prompts/archive"
    assert archive == archive_dir(config.load(tmp_path / "config.yaml"))
    assert (archive / f"{old}.wav").read_bytes() == old_audio  # the build dir has moved on
    assert (archive / f"{second['prompts']['intro']['sha256']}.wav").is_file()
    manifests = [json.loads(p.read_text()) for p in (archive / "manifests").glob("*.json")]
    assert sorted(m["prompts"]["intro"]["sha256"] for m in manifests) == sorted(
        [old, second["prompts"]["intro"]["sha256"]])


def test_an_archived_file_is_never_overwritten(tmp_path: Path) -> None:
    manifest = build_prompts(config.load(write_cfg(tmp_path, ITEMS["intro"]["text"])))
    sha = manifest["prompts"]["goodbye"]["sha256"]
    kept = tmp_path / "prompts/archive" / f"{sha}.wav"
    kept.write_bytes(b"what was archived first")  # whatever is there stays as it is
    build_prompts(config.load(tmp_path / "config.yaml"))
    assert kept.read_bytes() == b"what was archived first"


@pytest.fixture
def consented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    cfg_file = write_cfg(tmp_path, ITEMS["intro"]["text"])
    sha = build_prompts(config.load(cfg_file))["prompts"]["intro"]["sha256"]
    build_prompts(config.load(write_cfg(tmp_path, "Ici Jean Test encore. Pour ne plus être "
                                        "appelé, appuyez sur 9.")))  # the intro changed since
    store = Store.open(tmp_path / "ivr.db")
    call = attempt(store, add_contact(store, NUMBER, at=NOW, basis="consent"), "c1",
                   "+33162000000", NOW)
    store.mark_answered(call["id"], NOW)
    store.finish_answered(call["id"], CallResult(
        outcome="message_played", stage="goodbye", keys="1",
        heard={"intro": sha, "message": "0" * 64}, choice="consent", choice_key="1",
        answered_prompt="intro", answered_sha256=sha, amd_status="HUMAN"), NOW)
    return cfg_file, sha


def test_consent_row_keeps_heard_prompts_amd_and_answer_time(consented: tuple[Path, str],
                                                             tmp_path: Path) -> None:
    _, sha = consented
    row = Store.open(tmp_path / "ivr.db").one("SELECT * FROM consents")
    assert row is not None
    assert json.loads(row["heard_sha256"]) == {"intro": sha, "message": "0" * 64}
    assert row["amd_status"] == "HUMAN" and row["answered_at"] == "2026-12-01T10:00:00.000Z"


def test_consent_show_lists_and_exports_what_the_person_heard(
        consented: tuple[Path, str], tmp_path: Path) -> None:
    cfg_file, sha = consented
    out = CliRunner().invoke(cli, ["--config", str(cfg_file), "consent", "show",
                                   "01 62 00 00 10", "--export", str(tmp_path / "proof")])
    assert out.exit_code == 0, out.output
    proof = json.loads(out.output.splitlines()[0])
    assert (proof["campaign"], proof["call_id"], proof["key"], proof["caller_id"]) == (
        "c1", 1, "1", "+33162000000")
    assert proof["amd_status"] == "HUMAN" and proof["answered_at"] == "2026-12-01T10:00:00.000Z"
    assert proof["heard"] == [{"prompt": "intro", "sha256": sha, "archived": True},
                              {"prompt": "message", "sha256": "0" * 64, "archived": False}]
    (exported,) = (tmp_path / "proof").iterdir()
    assert exported.name == f"1-intro-{sha}.wav"
    assert hashlib.sha256(exported.read_bytes()).hexdigest() == sha
    assert "1 audio file(s) exported" in out.output
