"""Render every prompt to 8 kHz mono 16-bit WAV for Asterisk, all-or-nothing, with a cache.

Layout of the build dir (cfg.prompts.build_dir):
  <key>.wav        what Asterisk plays (it is given the name without extension)
  manifest.json    what was built from what, for which campaign (prompts/manifest.py);
                   written last, deterministic (no timestamps)
  .cache/<h>.wav   converted audio keyed by sha256 of the input and the conversion settings

Every prompt is validated and rendered into a staging folder first, then archived by its
sha256 (prompts/archive.py); only when all succeeded are files moved into place, so a bad
prompt, a failed archive or an interruption leaves the build dir exactly as it was.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydub import AudioSegment

from ivr.config import Config, PromptSource
from ivr.errors import PromptError
from ivr.compliance.prompt_legal import check_callback_line, check_legal
from ivr.compliance.prompt_scope import check_scope
from ivr.prompts.archive import archive_build
from ivr.prompts.build_dir import new_staging, one_build_at_a_time, undo
from ivr.prompts.decode import CONVERSION, DECODER, convert
from ivr.prompts.install import atomic_write, install_prompts, same_file, sha
from ivr.records.interrupts import signals_held
from ivr.prompts.manifest import (MANIFEST_NAME, Manifest, check_key_recordings,
                                  check_legal_recording, fingerprint,
                                  flow_keys, load_manifest, prompt_digest, read_manifest,
                                  spoken_source)
from ivr.prompts.spoken import spoken
from ivr.prompts.take_checks import check_intro_length, check_length, check_pace
from ivr.prompts.tts import (ENGINES, GttsServiceError, check_gtts_language, render_tts,
                             resolve_engine)

Log = Callable[[str], None]

# `campaign`, `sources` and `flow_keys` (prompts/manifest.py) were added, nothing changed
MANIFEST_VERSION = 1
CACHE_DIR = ".cache"
__all__ = ["MANIFEST_NAME", "build_prompts", "convert", "install_prompts", "load_manifest"]

KEY_RE = re.compile(r"[A-Za-z0-9_-]+")


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class _Job:
    key: str
    source: str              # "file" | "tts"
    engine: str | None       # resolved engine for tts, None for files
    text: str | None         # whitespace-normalised TTS text
    file: str | None         # as written in the config
    data: bytes | None       # recorded file bytes (read once: hashed and decoded)
    cache_key: str
    transcript: str | None = None  # a recording's: its length must fit it (take_checks.py)
    auto: bool = False       # engine 'auto': falls back to espeak-ng if gTTS fails


# ---------------------------------------------------------------- validation and planning

def _item_engine(cfg: Config, key: str, item: PromptSource, override: str | None) -> str:
    # The command-line override beats the per-prompt engine: `--engine espeak` must work offline.
    engine = override or item.engine or cfg.prompts.engine
    if engine not in ENGINES:
        where = "--engine" if override else f"prompts.items.{key}.engine"
        raise PromptError(f"prompt {key!r}: engine {engine!r} is unknown: set {where} to "
                          "gtts, espeak or auto")
    return engine


def _check_shape(key: str, item: PromptSource) -> None:
    if not KEY_RE.fullmatch(key):
        raise PromptError(f"prompt {key!r}: invalid key: use only letters, digits, _ and -")
    if item.text is not None and item.file is not None:
        raise PromptError(f"prompt {key!r}: has both text: and file: - keep only one")
    if item.text is None and item.file is None:
        raise PromptError(f"prompt {key!r}: has neither text: nor file: - add one")
    if item.text is not None and not item.text.strip():
        raise PromptError(f"prompt {key!r}: text is empty: write what the prompt must say")
    if item.file is not None and not item.file.strip():
        raise PromptError(f"prompt {key!r}: file is empty: give a path under prompts.sources_dir")


def _hash(*parts: Any) -> str:
    blob = json.dumps([CONVERSION, *parts], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _read_source(cfg: Config, key: str, rel: str) -> bytes:
    path = cfg.path(cfg.prompts.sources_dir) / rel
    if not path.exists():
        raise PromptError(f"prompt {key!r}: audio file {path} not found: fix prompts.items."
                          f"{key}.file (relative to prompts.sources_dir)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PromptError(f"prompt {key!r}: cannot read audio file {path} "
                          f"({exc.strerror or exc}): fix its permissions or path") from exc
    if not data:
        raise PromptError(f"prompt {key!r}: audio file {path} is empty: record it again")
    return data


def _plan(cfg: Config, engine_override: str | None, log: Log) -> list[_Job]:
    p = cfg.prompts
    if engine_override is not None and engine_override not in ENGINES:
        raise PromptError(f"engine {engine_override!r} is unknown: use --engine gtts, espeak "
                          "or auto")
    items = sorted(p.items.items())
    for key, item in items:
        _check_shape(key, item)
    wanted = {key: _item_engine(cfg, key, item, engine_override)
              for key, item in items if item.text is not None}
    # 'auto' is resolved once per build so every prompt has the same voice and the cache is
    # keyed on the engine really used.
    auto = resolve_engine("auto", tld=p.gtts_tld, log=log) if "auto" in wanted.values() else ""
    engines = {key: auto if e == "auto" else e for key, e in wanted.items()}
    jobs: list[_Job] = []
    for key, item in items:
        if item.file is not None:
            data = _read_source(cfg, key, item.file)
            digest = hashlib.sha256(data).hexdigest()
            jobs.append(_Job(key, "file", None, None, item.file, data,
                             _hash("file", digest, DECODER), item.transcript))
            continue
        text = spoken_source(item.text or "")  # YAML re-wrapping must not re-render
        jobs.append(_tts_job(cfg, key, text, engines[key], wanted[key] == "auto"))
    return jobs


def _tts_job(cfg: Config, key: str, text: str, engine: str, auto: bool) -> _Job:
    """A TTS prompt, its cache keyed on the engine really used and its voice."""
    p = cfg.prompts
    if engine == "gtts":
        check_gtts_language(p.language, key=key)
        voice: dict[str, str] = {"language": p.language, "tld": p.gtts_tld}
    else:  # keyed on what espeak-ng is given (spoken.py): a new reading is rendered again
        voice = {"voice": p.espeak_voice, "said": spoken(text, p.language)}
    return _Job(key, "tts", engine, text, None, None, _hash("tts", engine, text, voice),
                auto=auto)


def _sources(jobs: list[_Job]) -> dict[str, str]:
    """What each prompt was rendered from, as manifest.config_fingerprint reads it."""
    return {j.key: prompt_digest("text", j.text or "") if j.source == "tts"
            else prompt_digest("file", sha(j.data or b"")) for j in jobs}


# ---------------------------------------------------------------- conversion

def _wav_bytes(seg: AudioSegment) -> bytes:
    buf = io.BytesIO()
    seg.export(buf, format="wav")  # pydub writes plain PCM WAV itself (no ffmpeg)
    return buf.getvalue()


def _wav_info(data: bytes) -> tuple[float, int, int, int]:
    with wave.open(io.BytesIO(data)) as w:
        return (w.getnframes() / w.getframerate(), w.getframerate(), w.getnchannels(),
                w.getsampwidth())


def _render(cfg: Config, job: _Job, log: Log) -> bytes:
    p = cfg.prompts
    if job.source == "file":  # ffmpeg probes the content: the extension decides nothing
        return _wav_bytes(convert(job.key, job.data or b"", f"audio file {job.file}",
                                  p.max_duration_s))
    try:
        audio, _, used = render_tts(job.text or "", job.engine or "espeak", language=p.language,
                                    tld=p.gtts_tld, voice=p.espeak_voice, key=job.key, log=log)
        return _wav_bytes(convert(job.key, audio, f"{used} speech", p.max_duration_s))
    except PromptError as exc:  # for 'auto', audio gTTS made unusable (a portal's page) too
        if job.auto and job.engine == "gtts" and not isinstance(exc, GttsServiceError):
            raise GttsServiceError(str(exc)) from exc
        raise


# ---------------------------------------------------------------- files

def _manifest_bytes(manifest: Manifest) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _cached_wav(path: Path, log: Log) -> bytes | None:
    """The cached conversion, or None when absent or damaged (then it is rendered again)."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    try:
        _wav_info(data)
        short = _frames_missing(data)
    except (wave.Error, EOFError) as exc:
        log(f"cache entry {path.name} is damaged ({exc}): rendering it again")
        return None
    if short:  # its header is whole, its audio cut (a crash, a copy interrupted)
        log(f"cache entry {path.name} is damaged ({short} frame(s) of its length missing): "
            "rendering it again")
        return None
    return data


def _frames_missing(data: bytes) -> int:
    """How many of the frames a wav's header announces its data lacks: a file cut after its
    header still reads whole to `wave`'s header fields, duration included."""
    with wave.open(io.BytesIO(data)) as w:
        frame = w.getnchannels() * w.getsampwidth()
        return w.getnframes() - len(w.readframes(w.getnframes())) // max(frame, 1)


def _write_staged(path: Path, data: bytes) -> None:
    try:
        with open(path, "wb") as fh:  # on disk before its rename: never a cut cache entry
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:  # a full disk: one line, and the build dir is left as it was
        raise PromptError(f"cannot write the prompts in {path.parent.parent} "
                          f"({exc.strerror or exc}): free space or fix its permissions "
                          "(prompts.build_dir); nothing was built") from None


# ---------------------------------------------------------------- staging

@dataclass
class _Staged:
    """What a build put in its staging folder, to move into place once all succeeded."""
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_cache: list[str] = field(default_factory=list)  # names for build_dir/.cache
    outputs: list[str] = field(default_factory=list)    # <key>.wav that changed

    def forget(self, key: str) -> None:
        """Drop a prompt's staged audio (a gTTS render stays cached, keyed on gtts)."""
        self.entries.pop(key, None)
        if f"{key}.wav" in self.outputs:
            self.outputs.remove(f"{key}.wav")


def _stage_job(cfg: Config, job: _Job, build_dir: Path, staging: Path, staged: _Staged,
               log: Log) -> None:
    """Render (or take from the cache) one prompt into staging and record its manifest entry."""
    cached = build_dir / CACHE_DIR / f"{job.cache_key}.wav"
    wav = _cached_wav(cached, log)
    state = "cached"
    if wav is None:
        wav = _render(cfg, job, log)
        _write_staged(staging / cached.name, wav)
        staged.new_cache.append(cached.name)
        state = "rendered"
    duration, rate, channels, width = _wav_info(wav)
    check_length(cfg, job.key, duration)
    if job.source == "file":  # checked on the cached take too: it may predate the check
        check_pace(job.key, job.file or "", job.transcript, duration, log)
    digest = sha(wav)
    if not same_file(build_dir / f"{job.key}.wav", digest):
        _write_staged(staging / f"{job.key}.wav", wav)
        staged.outputs.append(f"{job.key}.wav")
    entry: dict[str, Any] = {
        "source": job.source, "engine": job.engine, "sha256": digest,
        "duration_s": round(duration, 3), "sample_rate": rate, "channels": channels,
        "sample_width": width,
        "path": (Path(cfg.prompts.build_dir) / f"{job.key}.wav").as_posix()}
    entry["text" if job.source == "tts" else "file"] = job.text or job.file
    staged.entries[job.key] = entry
    log(f"{job.key}: {state} ({job.engine or 'file'}, {duration:.1f} s)")


def _archive_staged(cfg: Config, manifest: Manifest, staged: _Staged, build_dir: Path,
                    staging: Path) -> None:
    """Every prompt of the new build into the archive before any is put in place: a callee
    never hears a prompt whose audio the proof of consent cannot produce."""
    files = {key: (staging if f"{key}.wav" in staged.outputs else build_dir) / f"{key}.wav"
             for key in manifest["prompts"]}
    archive_build(cfg, manifest, files)


def _move_into_place(staged: _Staged, build_dir: Path, staging: Path) -> None:
    """Everything rendered: cache first, then the wavs (the manifest comes last)."""
    cache_dir = build_dir / CACHE_DIR
    if staged.new_cache:
        cache_dir.mkdir(exist_ok=True)
    for name in staged.new_cache:
        os.replace(staging / name, cache_dir / name)
    for name in staged.outputs:
        os.replace(staging / name, build_dir / name)


def _finish(build_dir: Path, manifest: Manifest, old_manifest: Manifest | None,
            log: Log) -> None:
    """Write the manifest if it changed, then drop the wavs of prompts no longer configured."""
    manifest_path = build_dir / MANIFEST_NAME
    try:
        if not manifest_path.is_file() or manifest_path.read_bytes() != _manifest_bytes(manifest):
            atomic_write(manifest_path, _manifest_bytes(manifest))
    except OSError as exc:  # a full disk: the old manifest stays, whole
        raise PromptError(f"cannot write {manifest_path} ({exc.strerror or exc}): free space "
                          "or fix its permissions, then run `ivr prompts build` again") from None
    # Only wavs this pipeline wrote before are removed; other files in the folder are left.
    for stale in sorted(set((old_manifest or {}).get("prompts", {})) - set(manifest["prompts"])):
        (build_dir / f"{stale}.wav").unlink(missing_ok=True)
        log(f"{stale}: removed (no longer in prompts.items)")


def _stage_jobs(cfg: Config, jobs: list[_Job], build_dir: Path, staging: Path,
                staged: _Staged, log: Log) -> list[_Job]:
    """Stage every job not yet staged; returns the jobs as staged. On gTTS's first failure
    after a probe that passed (HTTP 429, a proxy, a captive portal), espeak-ng speaks every
    'auto' prompt, those gTTS spoke included (one voice), rather than the build ending."""
    for job in jobs:
        if job.key in staged.entries:
            continue
        try:
            _stage_job(cfg, job, build_dir, staging, staged, log)
        except GttsServiceError as exc:
            if not (job.auto and job.engine == "gtts"):
                raise
            log(f"engine auto: {exc}; using espeak-ng for every prompt of this build instead")
            jobs = [_tts_job(cfg, j.key, j.text or "", "espeak", True) if j.auto else j
                    for j in jobs]
            for j in jobs:
                if j.auto:
                    staged.forget(j.key)
            return _stage_jobs(cfg, jobs, build_dir, staging, staged, log)
    return jobs


def _stage_all(cfg: Config, jobs: list[_Job], build_dir: Path, staging: Path,
               log: Log) -> tuple[Manifest, _Staged]:
    """Render, check and archive every prompt; returns the new manifest (not yet written) and
    what is staged (not yet in place). Anything raised here leaves the build dir as it was."""
    staged = _Staged()
    jobs = _stage_jobs(cfg, jobs, build_dir, staging, staged, log)
    check_intro_length(cfg, staged.entries)
    manifest: Manifest = {"version": MANIFEST_VERSION, "campaign": cfg.campaign.name,
                          "sources": fingerprint(cfg, _sources(jobs)),
                          "flow_keys": flow_keys(cfg),  # a run with other keys never plays it
                          "prompts": staged.entries}
    _archive_staged(cfg, manifest, staged, build_dir, staging)
    return manifest, staged


# ---------------------------------------------------------------- public API

def build_prompts(cfg: Config, *, engine_override: str | None = None,
                  log: Log = _quiet) -> Manifest:
    """Render all prompts into cfg.prompts.build_dir; returns the manifest written there."""
    check_legal(cfg)
    check_scope(cfg)  # the opposition key, no call to vote before the consent, legal only
    check_callback_line(cfg)  # its plain copy is installed for the opposition line at once
    jobs = _plan(cfg, engine_override, log)
    build_dir = cfg.path(cfg.prompts.build_dir)
    with one_build_at_a_time(build_dir) as created:
        staging = new_staging(build_dir, created)
        done = False
        try:
            old_manifest = _old_manifest(cfg, jobs, build_dir, log)
            manifest, staged = _stage_all(cfg, jobs, build_dir, staging, log)
            # The wavs and their manifest as one step: Ctrl-C or SIGTERM between two renames
            # left a new goodbye.wav beside the old message.wav and the old manifest
            with signals_held():
                _move_into_place(staged, build_dir, staging)
                done = True
                _finish(build_dir, manifest, old_manifest, log)
        finally:  # all-or-nothing, whatever stopped it (an error, Ctrl-C, SIGTERM made one)
            shutil.rmtree(staging, ignore_errors=True)
            if not done:
                undo(created)
    return manifest


def _old_manifest(cfg: Config, jobs: list[_Job], build_dir: Path, log: Log
                  ) -> Manifest | None:
    """The build folder's manifest (None: none, or damaged: a rebuild repairs it), once the
    legal recording's checks against it passed."""
    try:
        old_manifest = read_manifest(build_dir / MANIFEST_NAME)
    except PromptError as exc:
        log(f"{exc}; it will be rewritten")
        old_manifest = None
    now = fingerprint(cfg, _sources(jobs))
    check_legal_recording(cfg, old_manifest, now)
    check_key_recordings(cfg, old_manifest, now)
    before = (old_manifest or {}).get("campaign", cfg.campaign.name)
    if before != cfg.campaign.name:  # two configs sharing prompts.build_dir
        log(f"note: {cfg.prompts.build_dir} held the build of campaign {before!r}, whose "
            "`ivr check` refuses this one: give that config its own prompts.build_dir")
    return old_manifest
