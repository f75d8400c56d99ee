"""The prompts page: texts, built audio served for listening (only what the manifest names), a
recording uploaded through the build's own checks, and the legal check's findings."""
from __future__ import annotations

import io
import json

import pytest
from pydub.generators import Sine

from web_fixture import CAMPAIGN, login, make_web

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _tone(ms: int = 800, fmt: str = "wav", volume: float = -12.0) -> bytes:
    buf = io.BytesIO()
    beep = Sine(440).to_audio_segment(duration=ms, volume=volume)
    # every other 100 ms 30 dB down, like the pauses between words: a steady tone is refused
    # as noise (decode.py: no level rising above the background)
    sum((beep[i:i + 100].apply_gain(-30 if i % 200 else 0) for i in range(100, ms, 100)),
        beep[:100]).export(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def web(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    (tmp_path / "src").mkdir()
    return make_web(tmp_path, monkeypatch, prompts={
        "sources_dir": "src", "build_dir": "build",
        "items": {"intro": {"text": "Bonjour, ceci est un appel politique."},
                  "message": {"file": "message.wav", "transcript": "Votez."}}})


def test_the_page_lists_texts_recordings_and_the_legal_check(web) -> None:
    c = web.client()
    login(c, "vera")
    body = c.get(f"/api/campaigns/{CAMPAIGN}/prompts").json()
    kinds = {p["key"]: (p["kind"], p["built"]) for p in body["prompts"]}
    assert kinds == {"intro": ("text", False), "message": ("file", False)}
    assert any(v["code"] == "legal_mentions" for v in body["legal"])
    html = c.get(f"/c/{CAMPAIGN}/prompts").text
    assert "Bonjour, ceci est un appel politique." in html and 'id="legal"' in html
    assert 'name="file"' not in html  # a viewer uploads nothing


def test_listen_serves_only_the_built_file_the_manifest_names(web) -> None:
    build = web.cfg.path("build")
    build.mkdir()
    wav = _tone()
    (build / "intro.wav").write_bytes(wav)
    (build / "manifest.json").write_text(json.dumps({"version": 1, "prompts": {"intro": {
        "source": "tts", "sha256": "ab" * 32, "duration_s": 0.8, "path": "build/intro.wav"}}}))
    c = web.client()
    login(c, "vera")
    r = c.get(f"/api/campaigns/{CAMPAIGN}/prompts/intro/audio")
    assert r.status_code == 200 and r.content == wav and r.headers["content-type"] == "audio/wav"
    assert c.get(f"/api/campaigns/{CAMPAIGN}/prompts/message/audio").status_code == 404
    assert c.get(f"/api/campaigns/{CAMPAIGN}/prompts/..%2Fmanifest.json/audio").status_code \
        == 404
    html = c.get(f"/c/{CAMPAIGN}/prompts").text
    assert f'src="/api/campaigns/{CAMPAIGN}/prompts/intro/audio"' in html and "abababab" in html


def test_a_recording_upload_goes_through_the_builds_checks(web) -> None:
    c = web.client()
    h = {"X-CSRF-Token": login(c, "otto")}
    url = f"/api/campaigns/{CAMPAIGN}/prompts/message/recording"
    r = c.post(url, headers=h, files={"file": ("take2.wav", _tone(), "audio/wav")})
    assert r.status_code == 200, r.text
    assert r.json()["used_by_config"] is True
    assert web.cfg.path("src/message.wav").read_bytes() == _tone()
    r = c.post(url, headers=h, files={"file": ("quiet.wav", _tone(volume=-80), "audio/wav")})
    assert r.status_code == 400 and "silent" in r.json()["detail"]
    r = c.post(url, headers=h, files={"file": ("notes.txt", b"hello", "text/plain")})
    assert r.status_code == 400 and r.json()["detail"].startswith("file:")
    r = c.post(f"/api/campaigns/{CAMPAIGN}/prompts/intro/recording", headers=h,
               files={"file": ("intro.mp3", _tone(fmt="mp3"), "audio/mpeg")})
    assert r.status_code == 200 and r.json()["used_by_config"] is False
    assert "prompts.items.intro.file" in r.json()["note"]
    assert web.cfg.path("src/intro.mp3").is_file()
    viewer = web.client()
    vh = {"X-CSRF-Token": login(viewer, "vera")}
    assert viewer.post(url, headers=vh, files={"file": ("x.wav", _tone(), "audio/wav")}
                       ).status_code == 403
    actions = [(a["action"], a["actor"]) for a in web.store.audit_log(10)]
    assert ("prompt_recording", "otto") in actions
