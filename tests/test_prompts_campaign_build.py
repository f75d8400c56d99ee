"""A build is one campaign's, made from given sources (ivr/prompts/manifest.py).

Found in review (2026-12-02), reproduced with two campaign configs in one folder (a cloned
config keeps prompts.build_dir): after `prompts build` for A then for B, `ivr check` of A said
0 errors while A's manifest held B's legal mention; installing A put B's prompts in A's
campaign folder and a running A switched to B's prompts. A legal.postal_address and legal
text changed without a rebuild passed `ivr check` too, the built audio saying the old address.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO, make_config
from ivr import app, config
from ivr.prompts.install import install_prompts_to_pbx
from ivr.compliance.campaign_check import build_violations
from ivr.config import Config
from ivr.errors import PromptError
from ivr.prompts.build import MANIFEST_NAME, build_prompts, load_manifest
from ivr.prompts.live import CHECK_EVERY_S, LivePrompts
from ivr.telephony.contract import campaign_sound_dir, prompt_sound


def legal(who: str, address: str) -> dict[str, str]:
    return {"sender": who, "postal_address": address, "email": "stop@test.fr"}


def items(who: str, address: str) -> dict[str, Any]:
    return {
        "intro": {"text": f"Bonjour, ici {who}. Pour ne plus être appelé, appuyez sur 9."},
        "message": {"text": "Votez pour nous."},
        "legal": {"text": f"Message de {who}, {address}, stop@test.fr."},
        "goodbye": {"text": "Au revoir."},
        "invalid": {"text": "Choix invalide."},
        "no_input": {"text": "Je n'ai rien entendu."},
        "optout_confirm": {"text": "Vous ne serez plus appelé."},
        "callback_notice": {"text": "Pour ne plus être appelé, appuyez sur 1."},
    }


def campaign_cfg(base: Path, name: str, who: str, address: str) -> Config:
    """A campaign config of the folder `base`: every campaign keeps the same build_dir."""
    return make_config(
        base, campaign={"name": name, "caller_id": "+33162000000"}, legal=legal(who, address),
        prompts={"engine": "espeak", "sources_dir": "sources", "build_dir": "build",
                 "items": items(who, address)},
        pbx={"mode": "external", "sounds_dir": str(base / "sounds")})


@pytest.fixture
def two(tmp_path: Path) -> tuple[Config, Config]:
    a = campaign_cfg(tmp_path, "a-municipales", "Marie Dupont", "3 place du Marché, Lyon")
    b = campaign_cfg(tmp_path, "b-legislatives", "Jean Martin", "12 rue Haute, Paris")
    return a, b


def errors(cfg: Config) -> list[str]:
    return [v.message for v in build_violations(cfg) if v.is_error]


def test_check_refuses_the_build_of_another_campaign_in_the_same_build_dir(two) -> None:
    a, b = two
    build_prompts(a)
    assert errors(a) == []
    build_prompts(b)
    (line,) = errors(a)
    assert "'a-municipales'" in line and "'b-legislatives'" in line
    assert "run `ivr prompts build`" in line and "prompts.build_dir" in line
    assert "\n" not in line
    assert errors(b) == []


def test_install_and_a_run_refuse_the_build_of_another_campaign(two) -> None:
    a, b = two
    build_prompts(b)
    with pytest.raises(PromptError, match="'b-legislatives'.*run `ivr prompts build`"):
        install_prompts_to_pbx(a)
    assert not (Path(a.pbx.sounds_dir) / "ivr" / campaign_sound_dir(a.campaign.name)).exists()
    with pytest.raises(PromptError, match="is the build of campaign 'b-legislatives'"):
        app.prompt_hashes(a)  # what `ivr run` plays from
    with pytest.raises(PromptError, match="is the build of campaign"):
        load_manifest(a)


def test_a_running_campaign_does_not_follow_another_campaigns_build(two) -> None:
    a, b = two
    hashes = {k: v["sha256"] for k, v in build_prompts(a)["prompts"].items()}
    install_prompts_to_pbx(a)
    clock = [0.0]
    # as app.live_prompts wires it for an external PBX
    live = LivePrompts(a.campaign.name, hashes, load=lambda: app.prompt_hashes(a),
                       manifest=a.path(a.prompts.build_dir) / MANIFEST_NAME,
                       installed_dir=Path(a.pbx.sounds_dir), monotonic=lambda: clock[0])
    b_hashes = {k: v["sha256"] for k, v in build_prompts(b)["prompts"].items()}
    assert b_hashes["legal"] != hashes["legal"]
    # B's build installed under A's name, as `ivr pbx up` with A's config did before: every
    # file is there, only the campaign the manifest names keeps A from playing it.
    built = a.path(a.prompts.build_dir)
    for key, digest in b_hashes.items():
        dest = Path(a.pbx.sounds_dir) / f"{prompt_sound(a.campaign.name, key, digest)}.wav"
        dest.write_bytes((built / f"{key}.wav").read_bytes())
    clock[0] += CHECK_EVERY_S
    assert dict(live.current().hashes) == hashes
    sound = live.current().sounds["legal"]
    assert campaign_sound_dir(a.campaign.name) in sound and hashes["legal"][:12] in sound


def changed_address(cfg: Config, tmp_path: Path) -> Config:
    """The same campaign with legal.postal_address and the legal text moved: not rebuilt."""
    moved = "4 place du Marché, Lyon"
    return make_config(
        tmp_path, campaign={"name": cfg.campaign.name, "caller_id": "+33162000000"},
        legal=legal("Marie Dupont", moved),
        prompts={"engine": "espeak", "sources_dir": "sources", "build_dir": "build",
                 "items": items("Marie Dupont", moved)},
        pbx={"mode": "external", "sounds_dir": str(tmp_path / "sounds")})


def test_check_refuses_a_build_made_before_the_legal_mentions_changed(two,
                                                                     tmp_path: Path) -> None:
    a, _ = two
    build_prompts(a)
    moved = changed_address(a, tmp_path)
    (line,) = errors(moved)
    assert "'a-municipales'" in line and "legal.postal_address" in line
    assert "prompts.items.legal" in line and "run `ivr prompts build`" in line
    assert "prompts.items.intro" not in line  # only what changed is named
    build_prompts(moved)
    assert errors(moved) == []


def test_a_recording_replaced_after_the_build_is_stale(tmp_path: Path) -> None:
    a = campaign_cfg(tmp_path, "a-municipales", "Marie Dupont", "3 place du Marché, Lyon")
    wav = tmp_path / "sources" / "message.wav"
    wav.parent.mkdir()
    src = build_prompts(a)  # the message as text first, then as a recording of it
    wav.write_bytes(Path(a.path(src["prompts"]["message"]["path"])).read_bytes())
    rec = make_config(
        tmp_path, campaign={"name": "a-municipales", "caller_id": "+33162000000"},
        legal=legal("Marie Dupont", "3 place du Marché, Lyon"),
        prompts={"engine": "espeak", "sources_dir": "sources", "build_dir": "build",
                 "items": {**items("Marie Dupont", "3 place du Marché, Lyon"),
                           "message": {"file": "message.wav"}}})
    assert "prompts.items.message" in errors(rec)[0]
    build_prompts(rec)
    assert errors(rec) == []
    wav.write_bytes(wav.read_bytes()[:-800])  # the recording re-exported: shorter
    assert "prompts.items.message" in errors(rec)[0]


def test_a_manifest_from_before_campaigns_were_recorded_asks_for_a_rebuild(two) -> None:
    a, _ = two
    build_prompts(a)
    path = a.path(a.prompts.build_dir) / MANIFEST_NAME
    old = json.loads(path.read_text())
    del old["campaign"], old["sources"]
    path.write_text(json.dumps(old))
    (line,) = errors(a)
    assert "'a-municipales'" in line and "run `ivr prompts build`" in line
    build_prompts(a)
    assert errors(a) == []


def test_not_built_and_a_damaged_manifest_are_errors(two) -> None:
    a, _ = two
    path = a.path(a.prompts.build_dir) / MANIFEST_NAME
    # the line `ivr run` refuses with: a check that said 0 errors was contradicted by the run
    assert errors(a) == [f"prompts are not built ({path} missing): run `ivr prompts build` first"]
    assert [v.severity for v in build_violations(a, dry_run=True)] == ["warning"]
    path.parent.mkdir()
    path.write_text("{")
    (line,) = errors(a)
    assert "run `ivr prompts build`" in line


def test_the_shipped_config_built_fresh_passes(tmp_path: Path) -> None:
    """What `ivr demo` does: build, then check."""
    data = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    data["prompts"]["sources_dir"] = str((REPO / "prompts").resolve())
    data["prompts"]["build_dir"] = str(tmp_path / "build")
    data["prompts"]["archive_dir"] = str(tmp_path / "archive")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    cfg = config.load(path)
    build_prompts(cfg)
    assert errors(cfg) == []
