"""The prompts page and routes of another campaign than the console's own: the console holds
only its config's prompts, so it neither shows them as that campaign's nor changes them from
that campaign's page. They did: campaign B's page showed campaign A's prompts, and an upload or
a rebuild there replaced and installed A's (a running A plays them at once). Now 409 with the
line saying which config to start the console with; the audit of a prompt action names the
campaign."""
from __future__ import annotations

import html
import io
import json

import pytest
from pydub.generators import Sine

from conftest import Backend, backend_sqlite_only
from web_fixture import CAMPAIGN, NOW, login, make_web

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
OTHER = "autre-candidat"
WHERE = (f"prompts: this console holds campaign {CAMPAIGN}'s prompts, not {OTHER}'s: run "
         f"`ivr --config CONFIG web` with campaign {OTHER}'s config to see or change them")


def _tone(ms: int = 800) -> bytes:
    buf = io.BytesIO()
    beep = Sine(440).to_audio_segment(duration=ms, volume=-12.0)
    # every other 100 ms 30 dB down, like the pauses between words: a steady tone is refused
    # as noise (decode.py: no level rising above the background)
    sum((beep[i:i + 100].apply_gain(-30 if i % 200 else 0) for i in range(100, ms, 100)),
        beep[:100]).export(buf, format="wav")
    return buf.getvalue()


@pytest.fixture
def web(backend: Backend, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    (tmp_path / "src").mkdir()
    web = make_web(tmp_path, monkeypatch, backend, prompts={
        "sources_dir": "src", "build_dir": "build",
        "items": {"intro": {"text": "Bonjour, ceci est un appel de Marie Dupont."},
                  "message": {"file": "message.wav", "transcript": "Votez."}}})
    (tmp_path / "src" / "message.wav").write_bytes(_tone())
    build = tmp_path / "build"
    build.mkdir()
    (build / "intro.wav").write_bytes(_tone())
    (build / "manifest.json").write_text(json.dumps({"version": 1, "prompts": {"intro": {
        "source": "tts", "sha256": "ab" * 32, "duration_s": 0.8, "path": "build/intro.wav"}}}))
    web.store.set_run_control(OTHER, desired="stopped", by="ada", now=NOW)  # in the store
    return web


def test_another_campaigns_prompts_are_neither_shown_nor_changed(web) -> None:
    c = web.client()
    token = login(c, "otto")
    h = {"X-CSRF-Token": token}
    source = web.cfg.path("src/message.wav").read_bytes()
    manifest = web.cfg.path("build/manifest.json").read_text()
    page = c.get(f"/c/{OTHER}/prompts")
    assert page.status_code == 409
    assert "Marie Dupont" not in page.text and 'id="prompts-table"' not in page.text
    assert 'id="btn-rebuild"' not in page.text and 'name="file"' not in page.text
    text = html.unescape(page.text)
    assert f"Cette console détient les messages de la campagne {CAMPAIGN}, pas ceux de " \
           f"{OTHER}" in text and WHERE in text
    api = f"/api/campaigns/{OTHER}/prompts"
    for r in (c.get(api), c.get(f"{api}/intro/audio"),
              c.post(f"{api}/message/recording", headers=h,
                     files={"file": ("autre.wav", _tone(1500), "audio/wav")}),
              c.post(f"{api}/rebuild", headers=h)):
        assert (r.status_code, r.json()) == (409, {"detail": WHERE})
    for r in (c.post(f"/c/{OTHER}/prompts/message/recording",
                     data={"csrf_token": token},
                     files={"file": ("autre.wav", _tone(1500), "audio/wav")}),
              c.post(f"/c/{OTHER}/prompts/rebuild", data={"csrf_token": token})):
        assert r.status_code == 409 and WHERE in html.unescape(r.text)
    assert web.cfg.path("src/message.wav").read_bytes() == source
    assert not web.cfg.path("src/autre.wav").exists()
    assert web.cfg.path("build/manifest.json").read_text() == manifest
    assert not [a for a in web.store.audit_log(50)
                if a["action"] in ("prompt_recording", "prompts_rebuilt")]
    assert c.get("/api/campaigns/nope/prompts").status_code == 404


@backend_sqlite_only  # the console's own campaign: as before, its audit names it
def test_the_own_campaigns_prompt_actions_name_it_in_the_audit(web) -> None:
    c = web.client()
    token = login(c, "otto")
    assert c.get(f"/c/{CAMPAIGN}/prompts").status_code == 200
    r = c.post(f"/api/campaigns/{CAMPAIGN}/prompts/message/recording",
               headers={"X-CSRF-Token": token},
               files={"file": ("take2.wav", _tone(1200), "audio/wav")})
    assert r.status_code == 200, r.text
    r = c.post(f"/c/{CAMPAIGN}/prompts/message/recording", data={"csrf_token": token},
               files={"file": ("take3.wav", _tone(1000), "audio/wav")})
    assert r.status_code == 303
    rows = [a for a in web.store.audit_log(50) if a["action"] == "prompt_recording"]
    assert len(rows) == 2
    for row in rows:
        detail = row["detail"] if isinstance(row["detail"], dict) else json.loads(row["detail"])
        assert detail["campaign"] == CAMPAIGN and detail["prompt"] == "message"
