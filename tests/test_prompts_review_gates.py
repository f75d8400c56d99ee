"""What a review of the campaign-bound builds found (2026-12-02), each reproduced first:

- a recorded intro replaced by a longer one passed the build's consent-first gate (it read the
  previous build's duration) and reached a running campaign;
- the console kept the config it loaded at start: after the operator changed a prompt's text
  file and ran `ivr prompts build`, its run page said `prompts_stale`, and its Rebuild put the
  old texts back;
- every other campaign of the console's switcher showed a false `prompts_stale`;
- a missing recording read as "changed since they were built";
- a FastAGI peer without the callback secret could hold its session for the AGI read timeout.
"""
from __future__ import annotations

import asyncio
import json
import io
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydub.generators import Sine

from conftest import store_at
from ivr import config
from ivr.callflow import agi_callback
from ivr.errors import PromptError
from ivr.prompts.build import MANIFEST_NAME, build_prompts
from ivr.prompts.manifest import build_problem
from ivr.telephony.fastagi import StreamResult
from ivr.web import prompts as console_prompts
from ivr.web import service

INTRO = ("Bonjour, ici Marie Dupont. Pour ne plus être appelé, appuyez sur 9. "
         "Acceptez-vous d'écouter mon message ? Pour oui, appuyez sur 1. Pour non, appuyez sur 2.")
ITEMS = {
    "intro": {"text": INTRO},
    "message": {"text": "Votez pour nous."},
    "legal": {"text": "Message de Marie Dupont, 3 place du Marché, Lyon, stop@test.fr."},
    "goodbye": {"text": "Au revoir."},
    "invalid": {"text": "Choix invalide."},
    "no_input": {"text": "Je n'ai rien entendu."},
    "optout_confirm": {"text": "Vous ne serez plus appelé."},
    "callback_notice": {"text": "Pour ne plus être appelé, appuyez sur 1."},
    "slot_question": {"text": "Quel moment ? 1 matin, 2 après-midi, 3 soir."},
}


def tone(ms: int) -> bytes:
    buf = io.BytesIO()
    beep = Sine(440).to_audio_segment(duration=ms, volume=-12)
    # every other 100 ms 30 dB down, like the pauses between words: a steady tone is refused
    # as noise (decode.py: no level rising above the background)
    sum((beep[i:i + 100].apply_gain(-30 if i % 200 else 0) for i in range(100, ms, 100)),
        beep[:100]).export(buf, format="wav")
    return buf.getvalue()


def campaign(base: Path, **items: dict[str, Any]) -> Path:
    (base / "sources").mkdir(parents=True, exist_ok=True)
    data = {"campaign": {"name": "camp-a", "caller_id": "+33162000000"},
            "legal": {"sender": "Marie Dupont", "postal_address": "3 place du Marché, Lyon",
                      "email": "stop@test.fr"},
            "prompts": {"engine": "espeak", "sources_dir": "sources", "build_dir": "build",
                        "intro_max_s": 20, "items": {**ITEMS, **items}},
            "pbx": {"mode": "external", "sounds_dir": str(base / "sounds")},
            "store": {"path": str(base / "s.db")}}
    path = base / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def manifest_bytes(base: Path) -> bytes:
    return (base / "build" / MANIFEST_NAME).read_bytes()


def test_a_longer_recording_under_the_same_name_is_refused_by_the_build(tmp_path: Path) -> None:
    path = campaign(tmp_path, intro={"file": "intro.wav", "transcript": INTRO})
    (tmp_path / "sources" / "intro.wav").write_bytes(tone(8000))
    build_prompts(config.load(path))
    before = manifest_bytes(tmp_path)
    (tmp_path / "sources" / "intro.wav").write_bytes(tone(35000))  # a console upload
    with pytest.raises(PromptError, match=r"intro lasts 35\.0 s as built.*nothing was built"):
        console_prompts.rebuild(config.load(path))
    assert manifest_bytes(tmp_path) == before  # the running campaign keeps its intro


def test_the_console_says_to_restart_when_its_config_moved_on_and_does_not_revert(
        tmp_path: Path) -> None:
    path = campaign(tmp_path, goodbye={"text_file": "goodbye.txt"})
    (tmp_path / "sources" / "goodbye.txt").write_text("Au revoir.\n", encoding="utf-8")
    console_cfg = config.load(path)  # `ivr web` starts
    build_prompts(console_cfg)
    (tmp_path / "sources" / "goodbye.txt").write_text("Merci, au revoir.\n", encoding="utf-8")
    build_prompts(config.load(path))  # the operator's `ivr prompts build`
    assert build_problem(config.load(path)) is None  # `ivr check` is clean
    built = manifest_bytes(tmp_path)
    shown = service.preflight(console_cfg, store_at(tmp_path / "s.db"), "camp-a")
    codes = [v["code"] for v in shown if v["severity"] == "error"]
    assert codes == ["console_config_stale"]
    assert "restart `ivr web`" in shown[-1]["message"]
    with pytest.raises(PromptError, match="restart `ivr web`"):
        console_prompts.rebuild(console_cfg)
    assert manifest_bytes(tmp_path) == built


def test_another_campaign_of_the_switcher_is_not_judged_on_this_build(tmp_path: Path) -> None:
    path = campaign(tmp_path)
    cfg = config.load(path)
    build_prompts(cfg)
    store = store_at(tmp_path / "s.db")
    assert [v["code"] for v in service.preflight(cfg, store, "camp-b")
            if v["code"] in ("prompts_stale", "console_config_stale")] == []


def test_a_missing_recording_is_named_as_missing(tmp_path: Path) -> None:
    path = campaign(tmp_path, message={"file": "message.wav", "transcript": "Votez pour nous."})
    (tmp_path / "sources" / "message.wav").write_bytes(tone(800))
    build_prompts(config.load(path))
    (tmp_path / "sources" / "message.wav").unlink()
    problem = build_problem(config.load(path))
    assert problem is not None and "message.wav is missing or unreadable" in problem


class _Silent:
    """A FastAGI peer without the secret that never answers a command."""
    headers = {"agi_callerid": "+33612345678"}

    class writer:  # noqa: N801 - the attribute AgiRequest has
        @staticmethod
        def get_extra_info(name: str) -> Any:
            return ("127.0.0.1", 40000)

    async def stream_file(self, name: str, keys: str = "") -> None:
        await asyncio.sleep(3600)


def test_a_session_without_the_secret_is_not_held_long(monkeypatch: pytest.MonkeyPatch) -> None:
    handler = agi_callback.CallbackHandler(store=None, default_region="FR",  # type: ignore
                                           clock=lambda: None, secret="s" * 20)  # type: ignore
    started = time.monotonic()
    asyncio.run(handler(_Silent()))  # type: ignore[arg-type]
    assert time.monotonic() - started < 2.0


class _AnswersThenSilent(_Silent):
    """The same peer, answering the legal mentions at once, then silent on what follows."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def stream_file(self, name: str, keys: str = "") -> StreamResult:
        self.sent.append(name)
        return StreamResult(endpos=8000)

    async def set_variable(self, name: str, value: str) -> None:
        self.sent.append(name)
        await asyncio.sleep(3600)


def test_a_refused_session_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A peer answering at once: it gets no command at all, so it holds no FastAGI slot, and
    a real caller (the secret changed without `dialplan reload`) gets the dialplan's failsafe,
    which asks for the key and journals them (before: the legal mentions, then IVR_DONE, which
    skipped that failsafe: nobody could object by key)."""
    handler = agi_callback.CallbackHandler(store=None, default_region="FR",  # type: ignore
                                           clock=lambda: None, secret="s" * 20)  # type: ignore
    peer = _AnswersThenSilent()
    asyncio.run(asyncio.wait_for(handler(peer), 5))  # type: ignore[arg-type]  # else: fails
    assert peer.sent == []


def test_a_shorter_recording_under_the_same_name_builds(tmp_path: Path) -> None:
    """The fix of a too-long intro: judged on its own audio, not the previous build's length."""
    path = campaign(tmp_path, intro={"file": "intro.wav", "transcript": INTRO})
    (tmp_path / "sources" / "intro.wav").write_bytes(tone(8000))
    build_prompts(config.load(path))
    manifest = json.loads(manifest_bytes(tmp_path))
    manifest["prompts"]["intro"]["duration_s"] = 22.0  # as a too-long build left it
    (tmp_path / "build" / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    (tmp_path / "sources" / "intro.wav").write_bytes(tone(10000))  # the shorter one
    built = console_prompts.rebuild(config.load(path))
    assert built["prompts"]["intro"] != manifest["prompts"]["intro"]["sha256"]
