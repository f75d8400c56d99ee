"""The one secret-file writer: 0600 from the first byte, written whole or not at all.

Used for every secret the program keeps on disk (the sandbox's AMI and callback secrets and its
manager.conf/extensions.conf, the carrier's PJSIP auth section, the opposition-list key).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

MODE = 0o600


def write_secret(path: Path, data: str | bytes, *, exclusive: bool = False,
                 owner: tuple[int, int] | None = None) -> None:
    """Write `data` readable by its owner only. `exclusive`: create, never replace (a key
    that must not change once made). Otherwise written to a temporary file then renamed, so a
    reader never sees half a secret and no partial copy is left behind on failure."""
    raw = data.encode() if isinstance(data, str) else data
    if exclusive:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        return
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        os.chmod(tmp, MODE)  # O_CREAT's mode is ignored when the file already existed
        if owner is not None:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # never leave a copy of the secret behind
        raise


def read_or_create(path: Path, make: Callable[[], str]) -> str:
    """The secret kept in `path`, made by `make()` and written (exclusively) on first use."""
    if path.exists():
        return path.read_text().strip()
    value = make()
    write_secret(path, value, exclusive=True)
    return value
