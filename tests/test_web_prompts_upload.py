"""The console's recording upload, as a read-only review found it (2026-12-03), each reproduced
first:

- a float or ADPCM WAV, or an mp3 named .wav, was an HTTP 500 or refused ("re-export it");
- a take the build refuses (an intro over prompts.intro_max_s) replaced the recording that built,
  and the good take was gone; a two-hour file was accepted;
- a take for a prompt that is a text overwrote sources_dir/<key>.<ext>, which may be another
  campaign's recording (two configs share the default prompts/ folder);
- the take was saved mode 0600 whatever the umask, unreadable by a build run as another user.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_prompt_build import espeak_wav, ffmpeg
from test_web_prompts import _tone
from web_fixture import CAMPAIGN, Web, login, make_web

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def web(tmp_path, monkeypatch) -> Web:  # type: ignore[no-untyped-def]
    src = tmp_path / "src"
    src.mkdir()
    (src / "intro.wav").write_bytes(_tone(1500))
    (src / "message.wav").write_bytes(_tone(800))
    return make_web(tmp_path, monkeypatch, prompts={
        "sources_dir": "src", "build_dir": "build", "max_duration_s": 20, "intro_max_s": 10,
        "items": {"intro": {"file": "intro.wav", "transcript": "Bonjour."},
                  "message": {"file": "message.wav", "transcript": "Votez."},
                  "goodbye": {"text": "Au revoir."}}})


def _post(web: Web, key: str, name: str, data: bytes):  # type: ignore[no-untyped-def]
    c = web.client()
    h = {"X-CSRF-Token": login(c, "otto")}
    return c.post(f"/api/campaigns/{CAMPAIGN}/prompts/{key}/recording", headers=h,
                  files={"file": (name, data, "audio/wav")})


def _files(web: Web) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in web.cfg.path("src").iterdir()}


@pytest.mark.parametrize("args", [["-c:a", "pcm_f32le", "-f", "wav"],
                                  ["-c:a", "pcm_f64le", "-f", "wav"],
                                  ["-c:a", "adpcm_ms", "-f", "wav"],
                                  ["-c:a", "libmp3lame", "-f", "mp3"]],
                         ids=["f32", "f64", "adpcm", "mp3-named-wav"])
def test_any_recording_ffmpeg_decodes_is_accepted(web: Web, args: list[str]) -> None:
    data = ffmpeg(espeak_wav("Votez pour nous dimanche."), *args)
    r = _post(web, "message", "take.wav", data)
    assert r.status_code == 200, r.text
    assert r.json()["used_by_config"] is True and 1.0 < r.json()["duration_s"] < 4.0
    assert web.cfg.path("src/message.wav").read_bytes() == data


@pytest.mark.parametrize("name,args", [
    ("note.opus", ["-c:a", "libopus", "-f", "ogg"]),  # a phone's voice note
    ("take.ogg", ["-c:a", "libvorbis", "-f", "ogg"]),
    ("take.flac", ["-c:a", "flac", "-f", "flac"]),
    ("take.aiff", ["-f", "aiff"]),
    ("take.webm", ["-c:a", "libopus", "-f", "webm"])], ids=["opus", "ogg", "flac", "aiff", "webm"])
def test_a_format_the_hint_names_or_a_voice_note_is_taken(web: Web, name: str,
                                                          args: list[str]) -> None:
    """Found in review: the build decodes these, and the refusal of an undecodable file says
    "export it again as wav, mp3, ogg, m4a or flac", but the upload took wav, mp3 and m4a
    only (« 's.ogg' is not a wav, mp3, m4a recording »)."""
    data = ffmpeg(espeak_wav("Votez pour nous dimanche."), *args)
    r = _post(web, "goodbye", name, data)
    assert r.status_code == 200, r.text
    assert r.json()["used_by_config"] is False and 1.0 < r.json()["duration_s"] < 4.0
    assert (web.cfg.path("src") / f"goodbye.{name.rsplit('.', 1)[1]}").read_bytes() == data


def test_the_pages_file_picker_offers_what_the_upload_takes(web: Web) -> None:
    import re

    from ivr.web.prompts import RECORDING_TYPES
    c = web.client()
    login(c, "otto")
    picker = re.findall(r'<input type="file" name="file" accept="([^"]*)"',
                        c.get(f"/c/{CAMPAIGN}/prompts").text)
    assert picker and set(picker) == {",".join(f".{t}" for t in RECORDING_TYPES) + ",audio/*"}
    r = _post(web, "goodbye", "take.caf", b"x" * 100)
    assert r.status_code == 400 and "is not a wav, w64, mp3" in r.json()["detail"]


def test_an_undecodable_upload_is_one_line_naming_it_and_nothing_is_written(web: Web) -> None:
    before = _files(web)
    r = _post(web, "message", "take.wav", b"not audio at all\n" * 100)
    detail = r.json()["detail"]
    assert r.status_code == 400 and "take.wav" in detail and "cannot decode" in detail
    assert "export it again as wav" in detail and "\n" not in detail
    assert _files(web) == before


def test_a_take_over_the_build_limits_replaces_nothing(web: Web) -> None:
    before = _files(web)
    r = _post(web, "intro", "intro-take2.wav", _tone(12_000))  # intro_max_s = 10
    assert r.status_code == 400
    assert r.json()["detail"] == ("file: intro-take2.wav lasts 12.0 s as built, more than "
                                  "prompts.intro_max_s = 10 s: shorten it; nothing was saved")
    r = _post(web, "message", "long.wav", _tone(25_000))  # max_duration_s = 20
    assert r.status_code == 400 and "prompts.max_duration_s = 20 s" in r.json()["detail"]
    assert _files(web) == before


def test_a_very_long_upload_is_refused_after_the_limit_not_decoded_whole(web: Web,
                                                                         tmp_path: Path) -> None:
    out = tmp_path / "meeting.mp3"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=8000", "-t", "1200", "-b:a", "8k",
                    str(out)], check=True)
    before = _files(web)
    r = _post(web, "message", "meeting.mp3", out.read_bytes())
    assert r.status_code == 400
    assert "meeting.mp3 lasts more than 50 s" in r.json()["detail"]  # 20 s + 30 s decoded
    assert _files(web) == before


def test_a_new_take_keeps_the_one_it_replaces(web: Web) -> None:
    old = web.cfg.path("src/message.wav").read_bytes()
    new = _tone(900, volume=-6)
    r = _post(web, "message", "take2.wav", new)
    assert r.status_code == 200, r.text
    body = r.json()
    kept = Path(body["kept"])
    assert kept.parent == web.cfg.path("src") and kept.name.startswith("message-replaced-")
    assert kept.suffix == ".wav" and kept.read_bytes() == old
    assert web.cfg.path("src/message.wav").read_bytes() == new
    assert kept.name in body["note"] and "message: 0.9 s saved" in body["note"]
    r = _post(web, "message", "take2.wav", new)  # the same take again: nothing to keep
    assert r.json()["kept"] is None
    assert sorted(_files(web)) == sorted(["intro.wav", "message.wav", kept.name])


def test_a_take_for_a_text_prompt_never_overwrites_a_file(web: Web) -> None:
    other = _tone(700)  # another campaign's recording in the shared folder
    web.cfg.path("src/goodbye.wav").write_bytes(other)
    r = _post(web, "goodbye", "bye.wav", _tone(600, volume=-6))
    assert r.status_code == 200, r.text
    body = r.json()
    saved = Path(body["saved"])
    assert web.cfg.path("src/goodbye.wav").read_bytes() == other
    assert saved.name.startswith("goodbye-") and saved.name.endswith("Z.wav")
    assert saved.read_bytes() == _tone(600, volume=-6) and not body["used_by_config"]
    assert f"saved as {saved.name}" in body["note"]
    # A recording of another type than the configured one is a new file too.
    r = _post(web, "message", "take.mp3", _tone(600, fmt="mp3"))
    assert r.status_code == 200 and Path(r.json()["saved"]).name == "message.mp3"
    r = _post(web, "message", "take.mp3", _tone(650, fmt="mp3"))
    assert Path(r.json()["saved"]).name.startswith("message-")
    assert web.cfg.path("src/message.mp3").read_bytes() == _tone(600, fmt="mp3")
    assert not [n for n in os.listdir(web.cfg.path("src")) if n.endswith(".tmp")]


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_022")
def test_a_take_is_saved_with_the_mode_the_umask_gives(web: Web) -> None:
    r = _post(web, "message", "take2.wav", _tone(900, volume=-6))
    assert r.status_code == 200, r.text
    assert web.cfg.path("src/message.wav").stat().st_mode & 0o777 == 0o644
    r = _post(web, "goodbye", "bye.wav", _tone(600))
    assert Path(r.json()["saved"]).stat().st_mode & 0o777 == 0o644


def test_a_take_too_short_for_its_transcript_replaces_nothing(web: Web) -> None:
    """A cut file (or another text) uploaded over the configured take: the build would refuse
    it for its transcript's pace, so the upload does, and the good take stays."""
    web.cfg.prompts.items["message"].transcript = " ".join(["mot"] * 40)  # 40 words
    before = _files(web)
    r = _post(web, "message", "message.wav", _tone(2_000))  # 2 s: 1,200 words a minute
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert detail.startswith("file: prompts.items.message: recording message.wav lasts 2.0 s "
                             "for a 40-word transcript")
    assert detail.endswith("check it or record it again; nothing was saved")
    assert "\n" not in detail and _files(web) == before


@pytest.mark.parametrize("name", ["take.wav", "other.mp3"])  # in place, and beside
def test_a_sources_dir_that_cannot_be_written_is_one_line(web: Web, name: str) -> None:
    """Found in review: a file where prompts.sources_dir should be (or a folder not writable)
    was a NotADirectoryError traceback and a 500."""
    import shutil
    shutil.rmtree(web.cfg.path("src"))
    web.cfg.path("src").write_text("not a folder\n")
    data = ffmpeg(espeak_wav("Votez pour nous dimanche."), "-c:a", "libmp3lame", "-f", "mp3") \
        if name.endswith(".mp3") else _tone(900)
    r = _post(web, "message", name, data)
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert detail.startswith("file: cannot write under ") and "\n" not in detail
    assert detail.endswith("fix prompts.sources_dir or its permissions; nothing was saved")
    assert web.cfg.path("src").read_text() == "not a folder\n"
