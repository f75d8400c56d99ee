"""The prompts page: each prompt's text or recording, its built audio and fingerprint, the
legal checks, a recording's upload (checked by the CLI's own conversion) and the rebuild."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from ivr.compliance.campaign_check import prompt_violations
from ivr.config import Config
from ivr.errors import IvrError, PromptError
from ivr.prompts.build import KEY_RE, build_prompts, convert, load_manifest

RECORDING_TYPES = ("wav", "mp3", "m4a")
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


def _target(cfg: Config, key: str, ext: str) -> Path:
    """Where the recording goes: the configured file when the prompt is a recording of the
    same type, else <key>.<ext> beside the texts (config.yaml must then name it)."""
    item = cfg.prompts.items[key]
    sources = cfg.path(cfg.prompts.sources_dir)
    if item.file and Path(item.file).suffix.lower().lstrip(".") == ext:
        return sources / item.file
    return sources / f"{key}.{ext}"


def upload_recording(cfg: Config, key: str, data: bytes, filename: str) -> dict[str, Any]:
    """Check the recording with the CLI's conversion (decodes, not silent, not clipped), then
    keep it under prompts.sources_dir; the next rebuild renders it."""
    if key not in cfg.prompts.items or not KEY_RE.fullmatch(key):
        raise ValueError(f"prompt: {key!r} is not in prompts.items of the config")
    ext = Path(filename or "").suffix.lower().lstrip(".")
    if ext not in RECORDING_TYPES:
        raise ValueError(f"file: {filename!r} is not a {', '.join(RECORDING_TYPES)} recording")
    if not data or len(data) > MAX_RECORDING_BYTES:
        raise ValueError(f"file: {len(data)} bytes: give a recording of 1 byte to "
                         f"{MAX_RECORDING_BYTES // 2**20} MiB")
    seg = convert(key, data, "wav" if ext == "wav" else None, f"the uploaded {filename}")
    target = _target(cfg, key, ext)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, target)
    item = cfg.prompts.items[key]
    used = bool(item.file) and cfg.path(cfg.prompts.sources_dir) / item.file == target
    note = "" if used else (f"saved as {target.name}: set prompts.items.{key}.file: "
                            f"{target.name} and its transcript in config.yaml to use it")
    return {"key": key, "saved": str(target), "duration_s": round(len(seg) / 1000, 2),
            "used_by_config": used, "note": note}


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
    """`ivr prompts build` (offline engine when the config says auto) then the install."""
    from ivr.app import install_prompts_to_pbx
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
