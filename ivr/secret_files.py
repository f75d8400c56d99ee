"""The one secret-file writer: 0600 from the first byte, written whole or not at all.

Used for every secret the program keeps on disk (the sandbox's AMI and callback secrets and its
manager.conf/extensions.conf, the carrier's PJSIP auth section, the opposition-list key).
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ivr.errors import IvrError

MODE = 0o600
WAIT_S = 2.0  # how long an empty secret file is taken for one being written


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
    # A fresh name, created exclusively (mkstemp: O_EXCL, 0600): a fixed ".NAME.tmp" could be
    # a symlink planted by whoever can write the folder, and the secret, then its mode and
    # owner, would go to the file it points at. Mode and owner are set on the open file.
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            os.fchmod(fh.fileno(), MODE)
            if owner is not None:
                os.fchown(fh.fileno(), *owner)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # never leave a copy of the secret behind
        raise


def read_text(path: Path) -> str:
    """A secret file's text, stripped; one that is not text (raw random bytes: `openssl rand 32`
    without -hex) is refused in one line, naming the file, never quoting its bytes."""
    try:
        return path.read_text().strip()
    except UnicodeDecodeError:
        raise IvrError(f"{path} is not text: write the secret as hex (e.g. `openssl rand -hex 32 "
                       f"> {path}`)") from None


def read_or_create(path: Path, make: Callable[[], str]) -> str:
    """The secret kept in `path`, made by `make()` and written (exclusively) on first use.
    Two processes may both find it missing: the one whose exclusive create fails reads the
    winner's, which is empty for an instant (created, not written yet), so an empty file is
    read again for up to WAIT_S. Still empty after that: "" (the caller refuses it)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            value = read_text(path)
        except FileNotFoundError:
            value = None
        if value is None:
            try:
                value = make()
                write_secret(path, value, exclusive=True)
                return value
            except FileExistsError:  # made by another process meanwhile: read that one
                if time.monotonic() >= deadline:
                    raise  # e.g. a dangling link in its place
        elif value or time.monotonic() >= deadline:
            return value
        time.sleep(0.01)
