"""Prompt pipeline with real espeak-ng and ffmpeg: formats, cache, atomicity, bad inputs."""
from __future__ import annotations

import hashlib
import os
import io
import json
import shutil
import socket
import subprocess
import tempfile
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gtts.tts import gTTS
from pydub import AudioSegment
from pydub.silence import detect_leading_silence

from conftest import make_config
from ivr import config
from ivr.prompts import build as prompt_build
from ivr.config import Config
from ivr.errors import ComplianceError, PromptError
from ivr.prompts.build import build_prompts, install_prompts, load_manifest
from ivr.prompts.decode import speech_level
from ivr.telephony.contract import prompt_sound

REPO = Path(__file__).resolve().parents[1]
SENDER, ADDRESS, EMAIL = "Jean Test", "1 rue Haute, Lyon", "stop@test.fr"
ITEMS: dict[str, dict[str, Any]] = {
    "intro": {"text": "Pour ne plus être appelé, appuyez sur 9."},
    "message": {"text": "Votez pour nous."},
    "legal": {"text": f"Par {SENDER}, {ADDRESS}, {EMAIL}."},
    "goodbye": {"text": "Au revoir."},
    "invalid": {"text": "Choix invalide."},
    "no_input": {"text": "Je n'ai rien entendu."},
    "optout_confirm": {"text": "Vous ne serez plus appelé."},
}


def make_cfg(tmp_path: Path, items: dict[str, Any] | None = None, **prompts: Any) -> Config:
    return make_config(
        tmp_path, legal={"sender": SENDER, "postal_address": ADDRESS, "email": EMAIL},
        prompts={"engine": "espeak", "sources_dir": "sources", "build_dir": "build",
                 "items": {**ITEMS, **(items or {})}, **prompts})


def espeak_wav(text: str) -> bytes:
    return subprocess.run(["espeak-ng", "-v", "fr", "--stdout", text], check=True,
                          capture_output=True).stdout


def ffmpeg(data: bytes, *args: str) -> bytes:
    """Encode with ffmpeg through a real file (MP4/M4A cannot be muxed into a pipe)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", "pipe:0", *args,
                        str(out)], input=data, check=True, capture_output=True)
        return out.read_bytes()


def write_source(tmp_path: Path, name: str, data: bytes) -> None:
    (tmp_path / "sources").mkdir(exist_ok=True)
    (tmp_path / "sources" / name).write_bytes(data)


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under folder (cache included) with its content hash and mtime."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                         p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def wav_params(path: Path) -> tuple[int, int, int, int]:
    with wave.open(str(path)) as w:
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()


@pytest.fixture
def render_spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record which prompts reach the TTS engine (the real render still runs)."""
    calls: list[str] = []
    real = prompt_build.render_tts

    def spy(text: str, engine: str, **kw: Any) -> tuple[bytes, str, str]:
        calls.append(kw["key"])
        return real(text, engine, **kw)

    monkeypatch.setattr(prompt_build, "render_tts", spy)
    return calls


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> socket.socket:
        raise OSError(101, "Network is unreachable")
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def fake_google(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """gTTS's HTTP call replaced by real MP3 bytes (espeak-ng speech encoded by ffmpeg)."""
    calls: list[dict[str, str]] = []

    def stream(self: gTTS) -> Iterator[bytes]:
        calls.append({"text": self.text, "lang": self.lang, "tld": self.tld})
        yield ffmpeg(espeak_wav(self.text), "-ar", "24000", "-ac", "1", "-b:a", "32k",
                     "-f", "mp3")

    monkeypatch.setattr(gTTS, "stream", stream)
    return calls


def test_demo_config_builds_offline(tmp_path: Path, no_network: None) -> None:
    cfg = config.load(REPO / "config.yaml")
    cfg.prompts.build_dir = str(tmp_path / "build")  # never write into the checkout
    lines: list[str] = []
    manifest = build_prompts(cfg, engine_override="espeak", log=lines.append)
    build = tmp_path / "build"
    assert manifest["version"] == 1 and "built_at" not in manifest
    assert sorted(manifest["prompts"]) == sorted(cfg.prompts.items)
    assert json.loads((build / "manifest.json").read_text()) == manifest
    for key, entry in manifest["prompts"].items():
        wav = build / f"{key}.wav"
        rate, channels, width, frames = wav_params(wav)
        assert (rate, channels, width) == (8000, 1, 2)
        assert entry["duration_s"] == pytest.approx(frames / 8000, abs=0.001) and frames > 4000
        assert entry["sha256"] == hashlib.sha256(wav.read_bytes()).hexdigest()
        assert (entry["source"], entry["engine"]) == ("tts", "espeak")
        assert entry["text"] == " ".join(cfg.prompts.items[key].text.split())
        assert (entry["sample_rate"], entry["channels"]) == (8000, 1)
        assert cfg.path(entry["path"]) == wav
        seg = AudioSegment.from_wav(str(wav))
        assert seg.max_dBFS <= -2.99  # the limiter's ceiling, headroom for the codecs
        assert speech_level(seg) == pytest.approx(-20.0, abs=0.1)  # levelled on the speech
        assert detect_leading_silence(seg, silence_threshold=-45) <= 70  # trimmed, 50 ms kept
        assert detect_leading_silence(seg.reverse(), silence_threshold=-45) <= 70
    assert len(lines) == len(cfg.prompts.items)


def test_second_build_renders_nothing(tmp_path: Path, render_spy: list[str]) -> None:
    cfg = make_cfg(tmp_path)
    first = build_prompts(cfg)
    assert sorted(render_spy) == sorted(ITEMS)
    before = snapshot(tmp_path / "build")
    render_spy.clear()
    assert build_prompts(cfg) == first
    assert render_spy == []
    assert snapshot(tmp_path / "build") == before  # same bytes and same mtimes


def test_only_changed_prompt_is_rendered_again(tmp_path: Path, render_spy: list[str]) -> None:
    build_prompts(make_cfg(tmp_path))
    before = snapshot(tmp_path / "build")
    render_spy.clear()
    rewrapped = {"goodbye": {"text": "  Au\n revoir. "}, "message": {"text": "Votez bien."}}
    manifest = build_prompts(make_cfg(tmp_path, rewrapped))
    assert render_spy == ["message"]  # re-wrapping whitespace is not a change
    after = snapshot(tmp_path / "build")
    assert after["goodbye.wav"] == before["goodbye.wav"]
    assert after["message.wav"] != before["message.wav"]
    assert manifest["prompts"]["message"]["text"] == "Votez bien."


def test_cache_is_shared_between_keys_and_reused_after_revert(tmp_path: Path,
                                                              render_spy: list[str]) -> None:
    build_prompts(make_cfg(tmp_path))
    build_prompts(make_cfg(tmp_path, {"message": {"text": "Autre chose."}}))
    render_spy.clear()
    build_prompts(make_cfg(tmp_path))  # back to the first text: served from .cache
    assert render_spy == []


@pytest.mark.parametrize(("ext", "args"), [
    ("wav", ["-ar", "44100", "-ac", "2", "-f", "wav"]),  # stereo 44.1 kHz: downmix + resample
    ("mp3", ["-ar", "22050", "-f", "mp3"]),
    ("ogg", ["-c:a", "libvorbis", "-f", "ogg"]),
    ("flac", ["-f", "flac"]),
    ("m4a", ["-c:a", "aac", "-f", "ipod"]),
])
def test_recorded_sources(tmp_path: Path, ext: str, args: list[str]) -> None:
    speech = espeak_wav("Ce message vous est adressé par Jean Test.")
    write_source(tmp_path, f"message.{ext}", ffmpeg(speech, *args))
    cfg = make_cfg(tmp_path, {"message": {"file": f"message.{ext}"}})
    entry = build_prompts(cfg)["prompts"]["message"]
    rate, channels, width, frames = wav_params(tmp_path / "build" / "message.wav")
    assert (rate, channels, width) == (8000, 1, 2)
    assert (entry["source"], entry["engine"], entry["file"]) == ("file", None, f"message.{ext}")
    assert "text" not in entry
    # The speech itself is kept (50 ms of silence at each end), whatever the container.
    seg = AudioSegment.from_file(io.BytesIO(speech), format="wav")
    voiced = (len(seg) - detect_leading_silence(seg, -45)
              - detect_leading_silence(seg.reverse(), -45))
    assert frames / 8000 == pytest.approx(voiced / 1000 + 0.1, abs=0.1)


def test_recorded_source_cached_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_source(tmp_path, "m.wav", espeak_wav("Bonjour à tous."))
    cfg = make_cfg(tmp_path, {"message": {"file": "m.wav"}})
    build_prompts(cfg)
    converted: list[str] = []
    real = prompt_build.convert
    monkeypatch.setattr(prompt_build, "convert",
                        lambda key, *a: converted.append(key) or real(key, *a))
    build_prompts(cfg)
    assert converted == []
    write_source(tmp_path, "m.wav", espeak_wav("Bonsoir à tous."))
    build_prompts(cfg)
    assert converted == ["message"]


def test_gtts_mp3_is_converted(tmp_path: Path, fake_google: list[dict[str, str]]) -> None:
    cfg = make_cfg(tmp_path, engine="gtts", gtts_tld="ca")
    manifest = build_prompts(cfg)
    assert sorted(c["text"] for c in fake_google) == sorted(i["text"] for i in ITEMS.values())
    assert all((c["lang"], c["tld"]) == ("fr", "ca") for c in fake_google)
    for key, entry in manifest["prompts"].items():
        assert entry["engine"] == "gtts"
        assert wav_params(tmp_path / "build" / f"{key}.wav")[:3] == (8000, 1, 2)
    fake_google.clear()
    build_prompts(cfg)
    assert fake_google == []  # cached: no second request to Google


def test_auto_offline_falls_back_to_espeak(tmp_path: Path, no_network: None,
                                           fake_google: list[dict[str, str]]) -> None:
    lines: list[str] = []
    manifest = build_prompts(make_cfg(tmp_path, engine="auto"), log=lines.append)
    assert {e["engine"] for e in manifest["prompts"].values()} == {"espeak"}
    assert fake_google == []
    assert sum("engine auto" in ln and "espeak" in ln for ln in lines) == 1  # probed once


def test_auto_online_uses_gtts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               fake_google: list[dict[str, str]]) -> None:
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: socket.socket())
    manifest = build_prompts(make_cfg(tmp_path, engine="auto"))
    assert {e["engine"] for e in manifest["prompts"].values()} == {"gtts"}


def test_engine_override_beats_item_engine(tmp_path: Path,
                                           fake_google: list[dict[str, str]]) -> None:
    cfg = make_cfg(tmp_path, {"goodbye": {"text": "Au revoir.", "engine": "gtts"}})
    manifest = build_prompts(cfg, engine_override="espeak")
    assert manifest["prompts"]["goodbye"]["engine"] == "espeak" and fake_google == []


def bad_cases() -> dict[str, tuple[str, Callable[[Path], dict[str, Any]], str]]:
    """name -> (key named in the error, setup returning item/prompts overrides, message part)."""
    def src(name: str, data: bytes) -> Callable[[Path], dict[str, Any]]:
        def setup(tmp: Path) -> dict[str, Any]:
            write_source(tmp, name, data)
            return {"items": {"zz_bad": {"file": name}}}
        return setup

    def unreadable(tmp: Path) -> dict[str, Any]:
        (tmp / "sources" / "dir.wav").mkdir(parents=True)
        return {"items": {"zz_bad": {"file": "dir.wav"}}}

    speech = espeak_wav("Bonjour.")
    silence = subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i",
                              "anullsrc=r=8000:cl=mono", "-t", "2", "-f", "wav", "pipe:1"],
                             check=True, capture_output=True).stdout
    return {
        "missing file": ("zz_bad", lambda t: {"items": {"zz_bad": {"file": "nope.wav"}}},
                         "not found"),
        "unreadable file": ("zz_bad", unreadable, "cannot read"),
        "corrupt wav": ("zz_bad", src("c.wav", b"RIFF\x10\x00\x00\x00WAVEjunk" * 50),
                        "cannot decode"),
        "corrupt mp3": ("zz_bad", src("c.mp3", speech[44:3000]), "cannot decode"),
        "truncated flac": ("zz_bad", src("t.flac", ffmpeg(speech, "-f", "flac")[:60]),
                           "cannot decode"),
        "silent file": ("zz_bad", src("s.wav", silence), "silent"),
        "clipped file": ("zz_bad", src("k.wav", ffmpeg(speech, "-af", "volume=30dB",
                                                       "-f", "wav")), "clipped"),
        "empty text": ("zz_bad", lambda t: {"items": {"zz_bad": {"text": "  "}}}, "empty"),
        "text and file": ("zz_bad", lambda t: {"items": {"zz_bad": {"text": "a", "file": "a"}}},
                          "both"),
        "neither": ("zz_bad", lambda t: {"items": {"zz_bad": {"transcript": "x"}}}, "neither"),
        # the voice is global: the first prompt to render (goodbye changed) is the one named
        "unknown voice": ("goodbye", lambda t: {"items": {"zz_bad": {"text": "Oui."}},
                                               "prompts": {"espeak_voice": "xx-nope"}},
                          "no voice 'xx-nope'"),
        "unknown language": ("zz_bad", lambda t: {"items": {"zz_bad": {"text": "Oui.",
                                                                     "engine": "gtts"}},
                                                  "prompts": {"language": "xx"}},
                             "language 'xx'"),
        "too long": ("zz_bad", lambda t: {"items": {"zz_bad": {"text": "Bonjour. " * 20}},
                                          "prompts": {"max_duration_s": 6}},
                     "longer than prompts.max_duration_s = 6 s"),
    }


@pytest.fixture(scope="module")
def built_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where the default prompts were built: copied (mtimes kept) by each case
    below instead of rendering the same speech again (2-3 s a case, 185 s a module in CI)."""
    home = tmp_path_factory.mktemp("built-once")
    build_prompts(make_cfg(home))
    return home


@pytest.mark.parametrize("case", sorted(bad_cases()))
def test_bad_input_names_key_and_leaves_build_untouched(tmp_path: Path, case: str,
                                                        render_spy: list[str],
                                                        built_once: Path) -> None:
    key, setup, part = bad_cases()[case]
    shutil.copytree(built_once, tmp_path, dirs_exist_ok=True)  # copy2: contents and mtimes
    assert build_prompts(make_cfg(tmp_path)) is not None and render_spy == []  # up to date
    before = snapshot(tmp_path / "build")
    over = setup(tmp_path)
    # goodbye changes too and sorts before zz_bad: it is rendered, then must be thrown away.
    items = {"goodbye": {"text": "À bientôt."}, **over.get("items", {})}
    render_spy.clear()
    with pytest.raises(PromptError) as exc:
        build_prompts(make_cfg(tmp_path, items, **over.get("prompts", {})))
    msg = str(exc.value)
    assert f"prompt {key!r}" in msg and part in msg and "\n" not in msg
    assert snapshot(tmp_path / "build") == before
    assert sorted(p.name for p in (tmp_path / "build").iterdir()) == sorted(
        {Path(k).parts[0] for k in before})  # no staging or temp files left behind


def test_failed_first_build_creates_nothing(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, {"zz_bad": {"file": "missing.ogg"}}, build_dir="out/deep/build")
    with pytest.raises(PromptError, match="'zz_bad'"):
        build_prompts(cfg)
    assert not (tmp_path / "out").exists()


def test_rendering_failure_after_mkdir_creates_nothing(tmp_path: Path) -> None:
    write_source(tmp_path, "c.ogg", b"OggS not really")
    with pytest.raises(PromptError, match="'zz_bad'.*cannot decode"):
        build_prompts(make_cfg(tmp_path, {"zz_bad": {"file": "c.ogg"}}, build_dir="new/build"))
    assert not (tmp_path / "new").exists()


def test_legal_check_runs_before_rendering(tmp_path: Path, render_spy: list[str]) -> None:
    cfg = make_cfg(tmp_path, {"legal": {"text": "Au revoir."}})
    with pytest.raises(ComplianceError, match="sender"):
        build_prompts(cfg)
    assert render_spy == [] and not (tmp_path / "build").exists()


def test_removed_prompt_is_cleaned_but_foreign_files_kept(tmp_path: Path) -> None:
    build_prompts(make_cfg(tmp_path, {"extra": {"text": "En plus."}}))
    (tmp_path / "build" / "notes.txt").write_text("mine")
    manifest = build_prompts(make_cfg(tmp_path))
    assert "extra" not in manifest["prompts"]
    assert not (tmp_path / "build" / "extra.wav").exists()
    assert (tmp_path / "build" / "notes.txt").read_text() == "mine"


def test_damaged_cache_entry_is_rendered_again(tmp_path: Path, render_spy: list[str]) -> None:
    cfg = make_cfg(tmp_path)
    first = build_prompts(cfg)
    for entry in (tmp_path / "build" / ".cache").iterdir():
        entry.write_bytes(b"garbage")
    render_spy.clear()
    assert build_prompts(cfg) == first
    assert sorted(render_spy) == sorted(ITEMS)


def test_load_manifest(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    with pytest.raises(PromptError, match="run `ivr prompts build` first"):
        load_manifest(cfg)
    built = build_prompts(cfg)
    assert load_manifest(cfg) == built


def test_install_prompts(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    manifest = build_prompts(cfg)
    paths = install_prompts(cfg, manifest, tmp_path / "sounds")
    sha = {k: manifest["prompts"][k]["sha256"] for k in ITEMS}
    addressed = {k: tmp_path / "sounds" / f"{prompt_sound('campaign', k, sha[k])}.wav"
                 for k in ITEMS}
    assert paths == [p for k in sorted(ITEMS)
                     for p in (tmp_path / "sounds" / "ivr" / f"{k}.wav", addressed[k])]
    for key in ITEMS:
        built = (tmp_path / "build" / f"{key}.wav").read_bytes()
        assert (tmp_path / "sounds" / "ivr" / f"{key}.wav").read_bytes() == built
        assert hashlib.sha256(addressed[key].read_bytes()).hexdigest() == sha[key]
        assert addressed[key].name == f"{key}-{sha[key][:12]}.wav"
    for path in paths:
        assert path.stat().st_mode & 0o044 == 0o044  # readable by Asterisk's user


@pytest.mark.parametrize("umask", [0o027, 0o077])
def test_installed_folders_are_open_to_asterisk_whatever_the_umask(tmp_path: Path,
                                                                   umask: int) -> None:
    """Found in a hunt: under umask 027 (or systemd's UMask=0077) sounds/ivr/ and the
    campaign's folder were 0750/0700; Asterisk, another user, could open no prompt."""
    cfg = make_cfg(tmp_path)
    manifest = build_prompts(cfg)
    (tmp_path / "sounds").mkdir()
    old = os.umask(umask)
    try:
        paths = install_prompts(cfg, manifest, tmp_path / "sounds")
    finally:
        os.umask(old)
    folders = {p.parent for p in paths}
    assert folders == {tmp_path / "sounds" / "ivr",
                       (tmp_path / "sounds" / f"{prompt_sound('campaign', 'intro', 'x')}").parent}
    for folder in folders:
        assert folder.stat().st_mode & 0o755 == 0o755, (folder, oct(folder.stat().st_mode))
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in paths)


def test_a_sounds_folder_the_install_creates_is_open_to_asterisk(tmp_path: Path) -> None:
    """Found in review: a pbx.sounds_dir that did not exist yet (a new shared folder) was
    created 0700 under UMask=0077, its prompts out of Asterisk's reach; a folder that existed
    keeps its mode."""
    cfg = make_cfg(tmp_path)
    manifest = build_prompts(cfg)
    (tmp_path / "private").mkdir(mode=0o700)
    (tmp_path / "private").chmod(0o700)
    old = os.umask(0o077)
    try:
        paths = install_prompts(cfg, manifest, tmp_path / "private" / "asterisk" / "sounds")
    finally:
        os.umask(old)
    for folder in (tmp_path / "private" / "asterisk", tmp_path / "private" / "asterisk" / "sounds",
                   *{p.parent for p in paths}):
        assert folder.stat().st_mode & 0o755 == 0o755, (folder, oct(folder.stat().st_mode))
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o700  # not created here: its own


def test_a_rebuild_adds_a_version_and_keeps_the_one_in_flight(tmp_path: Path) -> None:
    """Issue 18: a call in flight plays its attempt's version, which no rebuild replaces."""
    cfg = make_cfg(tmp_path)
    old = build_prompts(cfg)["prompts"]["intro"]["sha256"]
    install_prompts(cfg, build_prompts(cfg), tmp_path / "sounds")
    old_file = tmp_path / "sounds" / f"{prompt_sound('campaign', 'intro', old)}.wav"
    old_bytes = old_file.read_bytes()
    cfg = make_cfg(tmp_path, {"intro": {"text": "Bonjour. Pour ne plus être appelé, "
                                                "appuyez sur 9."}})
    new = build_prompts(cfg)["prompts"]["intro"]["sha256"]
    install_prompts(cfg, build_prompts(cfg), tmp_path / "sounds")
    new_file = tmp_path / "sounds" / f"{prompt_sound('campaign', 'intro', new)}.wav"
    assert new != old and old_file.read_bytes() == old_bytes
    assert hashlib.sha256(new_file.read_bytes()).hexdigest() == new
    other = make_config(tmp_path, campaign={"name": "B / other"})
    assert prompt_sound(other.campaign.name, "intro", new).startswith("ivr/B-other-")


def test_install_refuses_stale_build(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    manifest = build_prompts(cfg)
    (tmp_path / "build" / "goodbye.wav").write_bytes(b"edited by hand")
    with pytest.raises(PromptError, match="'goodbye'.*does not match manifest"):
        install_prompts(cfg, manifest, tmp_path / "sounds")
    assert not (tmp_path / "sounds").exists()


def test_two_builds_at_once_run_one_after_the_other(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review: a console rebuild and an `ivr prompts build` at once each moved their
    wavs into the build folder, and the later manifest could name the other's audio. Builds of
    one folder now hold a lock from the old manifest's read to the new one's write."""
    import threading
    import time
    from ivr.prompts import build as build_mod
    inside, most, errors = [0], [0], []
    real = build_mod._stage_all

    def slow(*args: Any, **kwargs: Any) -> Any:
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.3)
        try:
            return real(*args, **kwargs)
        finally:
            inside[0] -= 1
    monkeypatch.setattr(build_mod, "_stage_all", slow)
    cfg = make_cfg(tmp_path)

    def build() -> None:
        try:
            build_prompts(cfg)
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)
    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and most[0] == 1
    manifest = json.loads((tmp_path / "build" / "manifest.json").read_text())
    for key, entry in manifest["prompts"].items():
        assert hashlib.sha256((tmp_path / "build" / f"{key}.wav").read_bytes()).hexdigest() \
            == entry["sha256"], key


def test_a_build_waiting_on_one_that_fails_in_a_new_folder_still_builds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The failed build removes the build folder it made (all or nothing) while the other
    waits on that folder's lock: the other makes the folder again, locks it and builds."""
    import threading
    import time
    from ivr.prompts import build as build_mod
    real, errors = build_mod._stage_all, {}

    def first_fails(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "A":
            time.sleep(0.5)
            raise PromptError("A failed")
        return real(*args, **kwargs)
    monkeypatch.setattr(build_mod, "_stage_all", first_fails)
    cfg = make_cfg(tmp_path, build_dir="new/build")

    def build() -> None:
        try:
            build_prompts(cfg)
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors[threading.current_thread().name] = str(exc)
    a = threading.Thread(target=build, name="A")
    a.start()
    time.sleep(0.2)  # A holds the lock of the folder it made
    b = threading.Thread(target=build, name="B")
    b.start()
    a.join(60)
    b.join(60)
    assert errors == {"A": "A failed"}
    assert (tmp_path / "new" / "build" / "manifest.json").is_file()


def test_a_folder_another_build_makes_meanwhile_is_not_an_error(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    """Two builds into a missing folder at once: the one whose mkdir comes second found it
    made ("cannot write (File exists)"); it takes it as it is, and does not undo it."""
    from ivr.prompts import build_dir
    real_mkdir = Path.mkdir

    def raced(self: Path, *args: Any, **kwargs: Any) -> None:
        real_mkdir(self, *args, **kwargs)  # the other build's
        raise FileExistsError(17, "File exists", str(self))
    monkeypatch.setattr(Path, "mkdir", raced)
    assert build_dir.mkdirs(tmp_path / "new" / "build") == []
    assert (tmp_path / "new" / "build").is_dir()


def test_a_cache_entry_cut_after_its_header_is_rendered_again(tmp_path: Path,
                                                               render_spy: list[str]) -> None:
    """A cache entry that lost the end of its audio (a crash before it reached the disk, a copy
    interrupted) keeps a whole header, which still announces the full length: it must not be
    served, archived and installed as the prompt."""
    cfg = make_cfg(tmp_path)
    first = build_prompts(cfg)
    for entry in (tmp_path / "build" / ".cache").iterdir():
        data = entry.read_bytes()
        entry.write_bytes(data[: len(data) // 2])
    for wav in (tmp_path / "build").glob("*.wav"):
        wav.unlink()
    render_spy.clear()
    assert build_prompts(cfg) == first
    assert sorted(render_spy) == sorted(ITEMS)
