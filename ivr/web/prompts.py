"""The prompts page: each prompt's text or recording, its built audio and fingerprint, the
legal checks, a recording's upload (checked by the CLI's own conversion and length limits) and
the rebuild. An upload replaces only the file its prompt names, keeping the previous take."""
from __future__ import annotations

import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ivr.compliance.campaign_check import prompt_violations
from ivr.config import Config
from ivr.errors import IvrError, PromptError
from ivr.prompts.build import KEY_RE, build_prompts, load_manifest
from ivr.prompts.decode import convert
from ivr.prompts.take_checks import check_pace

# What the build decodes (decode.DEMUXERS): a phone's voice note (opus, ogg, m4a, aac), flac,
# aiff, webm. The content decides, not the name; the name must only be one of these.
RECORDING_TYPES = ("wav", "w64", "mp3", "m4a", "mp4", "aac", "ogg", "oga", "opus", "flac",
                   "aif", "aiff", "webm")
MAX_RECORDING_BYTES = 50 * 1024 * 1024


def _manifest(cfg: Config) -> dict[str, Any]:
    try:
        return load_manifest(cfg).get("prompts", {})
    except PromptError:
        return {}  # not built yet: every prompt shows as such


def prompts_view(cfg: Config) -> dict[str, Any]:
    built = _manifest(cfg)
    items = []
    for key, item in sorted(cfg.prompts.items.items()):
        entry = built.get(key) or {}
        items.append({"key": key, "kind": "file" if item.file else "text",
                      "text": item.text if item.file is None else item.transcript,
                      "file": item.file, "built": bool(entry),
                      "sha256": entry.get("sha256"), "duration_s": entry.get("duration_s"),
                      "engine": entry.get("engine")})
    return {"prompts": items,
            "legal": [{"severity": v.severity, "code": v.code, "message": v.message}
                      for v in prompt_violations(cfg)]}


def audio_path(cfg: Config, key: str) -> Path:
    """The built WAV of `key`, as the manifest names it (never a path taken from the URL)."""
    entry = _manifest(cfg).get(key)
    if entry is None:
        raise KeyError(key)
    return cfg.path(entry["path"])


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _write_temp(folder: Path, name: str, data: bytes) -> Path:
    """A new file in `folder`, synced, with the mode the umask gives (O_CREAT 0o666, not
    mkstemp's 0600: a build run by another user must read the recording)."""
    tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _stamped(stem: str, ext: str) -> list[str]:
    stamp = _stamp()
    return [f"{stem}-{stamp}{f'-{n}' if n else ''}.{ext}" for n in range(100)]


def _link_or_copy(src: Path, path: Path) -> None:
    """FileExistsError when path exists: a link (or an exclusive create where the filesystem
    has no hard links) never replaces a file."""
    try:
        os.link(src, path)
    except FileExistsError:
        raise
    except OSError:
        with open(path, "xb") as fh:
            fh.write(src.read_bytes())


def _new_name(src: Path, folder: Path, names: list[str], taken: set[Path]) -> Path:
    """src under the first of `names` that neither a file nor a prompt (`taken`) has yet:
    another config's recording may share the folder."""
    for name in names:
        path = folder / name
        if path in taken:
            continue
        try:
            _link_or_copy(src, path)
        except FileExistsError:
            continue
        return path
    raise ValueError(f"file: no free name like {names[0]} in {folder}: tidy that folder")


def _check_length(cfg: Config, key: str, seconds: float, filename: str) -> None:
    """The build's limits, before anything is written: a take the build refuses must not
    replace the recording that builds."""
    limits = [("prompts.max_duration_s", cfg.prompts.max_duration_s)]
    if key == "intro":
        limits.append(("prompts.intro_max_s", cfg.prompts.intro_max_s))
    for name, limit in limits:
        if seconds > limit:
            raise ValueError(f"file: {filename} lasts {seconds:.1f} s as built, more than "
                             f"{name} = {limit:g} s: shorten it; nothing was saved")


def _replace_configured(target: Path, data: bytes) -> Path | None:
    """The new take in place of the configured recording; the one it replaces stays beside it
    as <stem>-replaced-<UTC stamp>.<ext> (returned) so the operator can go back."""
    tmp = _write_temp(target.parent, target.name, data)
    try:
        kept = None
        if target.is_file() and target.read_bytes() != data:
            kept = _new_name(target, target.parent,
                             _stamped(f"{target.stem}-replaced", target.suffix.lstrip(".")),
                             set())
        os.replace(tmp, target)
        return kept
    finally:
        tmp.unlink(missing_ok=True)


def _check_pace(key: str, filename: str, transcript: str | None, seconds: float) -> None:
    """A take too short for the configured transcript (cut short, another text) is refused
    here as the next build would refuse it; a slow one is left to the build's warning."""
    try:
        check_pace(key, filename, transcript, seconds, lambda _line: None)
    except PromptError as exc:
        said = str(exc).removesuffix("; nothing was built")
        raise ValueError(f"file: {said}; nothing was saved") from None


def upload_recording(cfg: Config, key: str, data: bytes, filename: str) -> dict[str, Any]:
    """Check the recording with the build's own conversion and limits, then keep it under
    prompts.sources_dir; the next rebuild renders it. Only the file this prompt names is ever
    replaced (its previous take kept); any other take gets a name no file has yet."""
    if key not in cfg.prompts.items or not KEY_RE.fullmatch(key):
        raise ValueError(f"prompt: {key!r} is not in prompts.items of the config")
    ext = Path(filename or "").suffix.lower().lstrip(".")
    if ext not in RECORDING_TYPES:
        raise ValueError(f"file: {filename!r} is not a {', '.join(RECORDING_TYPES)} recording")
    if not data or len(data) > MAX_RECORDING_BYTES:
        raise ValueError(f"file: {len(data)} bytes: give a recording of 1 byte to "
                         f"{MAX_RECORDING_BYTES // 2**20} MiB")
    seg = convert(key, data, f"the uploaded {filename}", cfg.prompts.max_duration_s)
    _check_length(cfg, key, len(seg) / 1000, filename)
    seconds = round(len(seg) / 1000, 2)
    sources = cfg.path(cfg.prompts.sources_dir)
    try:
        return _save(cfg, key, data, ext, filename, seconds, sources)
    except OSError as exc:  # not writable, a file where a folder should be, the disk full
        raise ValueError(f"file: cannot write under {sources} ({exc.strerror or exc}): fix "
                         "prompts.sources_dir or its permissions; nothing was saved") from None


def _save(cfg: Config, key: str, data: bytes, ext: str, filename: str, seconds: float,
          sources: Path) -> dict[str, Any]:
    """upload_recording's file, checked: in place of the take the prompt names, or beside."""
    item = cfg.prompts.items[key]
    if item.file and Path(item.file).suffix.lower().lstrip(".") == ext:
        _check_pace(key, filename, item.transcript, seconds)  # it replaces the take: same text
        target = sources / item.file
        target.parent.mkdir(parents=True, exist_ok=True)
        kept = _replace_configured(target, data)
        note = f"the previous recording is kept as {kept.name}" if kept else ""
        return {"key": key, "saved": str(target), "duration_s": seconds,
                "used_by_config": True, "kept": str(kept) if kept else None,
                "note": f"{key}: {seconds} s saved; {note}" if note else ""}
    sources.mkdir(parents=True, exist_ok=True)
    named = {sources / i.file for i in cfg.prompts.items.values() if i.file}
    tmp = _write_temp(sources, f"{key}.{ext}", data)
    try:
        target = _new_name(tmp, sources, [f"{key}.{ext}", *_stamped(key, ext)], named)
    finally:
        tmp.unlink(missing_ok=True)
    return {"key": key, "saved": str(target), "duration_s": seconds, "used_by_config": False,
            "kept": None, "note": f"saved as {target.name}: set prompts.items.{key}.file: "
                                  f"{target.name} and its transcript in config.yaml to use it"}


def config_moved_on(cfg: Config) -> str | None:
    """One line when the config on disk (its file or a prompt's text_file) is no longer the one
    the console loaded: its checks and a rebuild would use the old texts, and a rebuild would
    undo the operator's `ivr prompts build`."""
    if cfg.source is None:
        return None
    from ivr.config import load
    path, loaded = cfg.source
    try:
        fresh = load(path)
    except IvrError as exc:
        return f"{path} no longer loads ({exc}): fix it, then restart `ivr web`"
    # The same file: only a text_file can have changed, read into its item's text. A recording
    # is read from disk by both alike, so its digest need not be computed here.
    if fresh.source == cfg.source and fresh.prompts.items == cfg.prompts.items:
        return None
    return (f"{path} or a prompt's text file changed since `ivr web` started: restart `ivr web` "
            "to check and rebuild the prompts as they are now")


def rebuild(cfg: Config) -> dict[str, Any]:
    """`ivr prompts build` then the install: with engine auto, gTTS when its service answers,
    else espeak-ng, as the command does (the prompts table names the engine each one used)."""
    from ivr.prompts.install import install_prompts_to_pbx
    from ivr.compliance.consent_first import require_consent_first
    moved_on = config_moved_on(cfg)
    if moved_on:
        raise PromptError(f"{moved_on}; nothing was built")
    require_consent_first(cfg)  # a run would take the new intro at once
    manifest = build_prompts(cfg)
    installed, note = True, ""
    try:
        install_prompts_to_pbx(cfg)
    except IvrError as exc:
        installed, note = False, f"not installed: {exc}"
    return {"prompts": {k: v["sha256"] for k, v in manifest["prompts"].items()},
            "installed": installed, "note": note}
