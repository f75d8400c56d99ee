"""Where the opposition list's HMAC key comes from, and why it may not sit beside the store.

The optouts table keeps HMAC-SHA256(key, number): the opposition survives the erasure of the
number. With the key in the same folder as the database, whoever copies the folder can hash
every +33 6 xx xx xx xx (10^8 numbers, seconds) and recover each number (issue 16 item 5).
So, outside fiction numbers, the key is:
- IVR_OPTOUT_KEY, or
- store.optout_key_file, a file OUTSIDE the store's folder (created 0600 if absent, for a
  store no key was used on yet or a demo store with no opposition leaving the key beside it:
  a store that has its key never gets a new one, resolve_key). Never an empty key.
The key file beside the store (`<store>.optout-key`) is kept only for a store that holds fiction
numbers alone (+33 1 99 00 xx xx: the demo and the tests); such a store refuses to take in a
real number, and a store holding one refuses to open with it.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from ivr.errors import StoreError
from ivr.secret_files import read_or_create, read_text

log = logging.getLogger(__name__)
ENV = "IVR_OPTOUT_KEY"
KEY_SETTING = "store.optout_key_file"
FICTION_GLOB = "+3319900[0-9][0-9][0-9][0-9]"  # ARCEP's fiction range, as in calling_rules


# Oppositions checked against the key at open: the latest ones whose number is still kept.
KEY_SAMPLE = 50


def fingerprint(number_hash: Callable[[str], str]) -> str:
    """The key's fingerprint (schema 15, table optout_key): its HMAC of a constant."""
    return number_hash("ivr opposition key fingerprint v1")


def check_key(rows: list[tuple[str, str]], number_hash: Callable[[str], str],
              stored: str | None) -> None:
    """rows: (number, number_hash) of the latest oppositions; stored: the fingerprint of the
    key the store was first opened with (None: none yet). A key they were not written with
    would let this process dial every opposed number (another controller's key file missing,
    so a new one made; IVR_OPTOUT_KEY set differently on one host): refuse to open."""
    wrong = sum(1 for number, h in rows if number_hash(number) != h)
    if wrong or (stored is not None and stored != fingerprint(number_hash)):
        said = (f"{wrong} of its latest {len(rows)} oppositions do not match" if wrong else
                "its fingerprint differs")
        raise StoreError(f"the opposition key ({ENV} or {KEY_SETTING}) is not the one this "
                         f"store's opposition list was written with ({said}): give this "
                         "process the key the store was opened with first (a new key would "
                         "forget every opposition)")


KEY_MIN = 32  # characters: a short key lets the kept hashes be brute-forced back to numbers
_warned: set[str] = set()  # a console opens a store per thread: warned once per process


def strong_enough(key: bytes, where: str, used: bool) -> None:
    """A new store takes no key shorter than KEY_MIN (its key can never change); a store
    already keyed with one still opens (refusing would lock its operator out), with a warning."""
    if len(key.strip()) >= KEY_MIN:
        return
    said = f"{where} is {len(key.strip())} characters long"
    if not used:
        raise StoreError(f"{said}: a new store's opposition key needs at least {KEY_MIN} random "
                         "characters (e.g. `openssl rand -hex 32`), as it can never be changed "
                         "and a short one lets the numbers it hashes be recovered")
    if where not in _warned:
        _warned.add(where)
        log.warning("%s: weaker than the %d random characters a new store needs (this store "
                    "keeps it: its opposition list was written with it)", said, KEY_MIN)


def fix_hint(beside: Path) -> str:
    # The same key either way: a new one would silently forget every opposition.
    return (f"move {beside.name} outside the store's folder and name it in {KEY_SETTING}, or "
            f"set {ENV} to its content (a new key would forget every opposition)")


def _read_or_create(key_file: Path) -> bytes:
    return read_or_create(key_file, lambda: os.urandom(32).hex()).encode()


def read_key(key_file: Path) -> bytes | None:
    """The key in this file, None if there is none; never makes one."""
    try:
        return read_text(key_file).encode()
    except FileNotFoundError:
        return None


def usable(key: bytes | None, where: str) -> bytes | None:
    """An empty key file (`install -m600 /dev/null`, a writer stopped short) would key the list
    with b"": anyone could hash every number back. Refused, naming the file."""
    if key is not None and not key.strip():
        raise StoreError(f"{where} is empty: write the store's opposition key in it (a new "
                         f"store: delete the file and one is made), or set {ENV}")
    return key


def beside(db_path: Path) -> Path:
    """The key file beside the store file itself: opened through a symlink, the same key."""
    real = db_path.resolve()
    return real.with_name(real.name + ".optout-key")


def elsewhere(db_path: Path, looked: Path, why: str, fix: str = "") -> str:
    """A store that has its key, which is not where this config looks: refuse, make nothing
    (a new key would forget every opposition) and move nothing (that file is not its key)."""
    fix = fix or f"name that key's file in {KEY_SETTING}, or set {ENV} to its content"
    return (f"the store {db_path} was written with an opposition key that is not where this "
            f"config looks ({looked}: {why}): {fix} (a new key would forget every opposition)")


def _named(db_path: Path, key_file: str | Path, side: Path, fits: Callable[[bytes], bool] | None,
           leaves: Callable[[bytes], bool] | None) -> bytes:
    """store.optout_key_file's key: made (0600) only for a store no key was used on yet, or a
    demo store that will leave the key beside it for this one (`leaves`, no opposition yet)."""
    path = Path(key_file).expanduser().resolve()
    folder = db_path.resolve().parent
    if path.parent == folder or path.is_relative_to(folder):
        raise StoreError(f"{KEY_SETTING} {path} is in the store's folder {folder}: keep the "
                         f"key apart from the database (a secrets folder), or set {ENV}")
    try:
        key = _read_or_create(path) if fits is None else read_key(path)
        side_key = None if key is not None else read_key(side)
        if key is None and side_key and leaves is not None and leaves(side_key):
            key = _read_or_create(path)  # the demo store takes it (sqlite._admit_key)
    except OSError as exc:
        raise StoreError(f"{KEY_SETTING} {path}: cannot read or create it "
                         f"({exc.strerror or exc}): fix the path or set {ENV}") from None
    found = usable(key, f"{KEY_SETTING} {path}")
    if found is not None:
        return found
    move = (f"its key is {side.name} beside it: move that file to {path}, or set {ENV} to "
            "its content") if side_key and fits is not None and fits(side_key) else ""
    raise StoreError(elsewhere(db_path, path, "no such file", move))


def resolve_key(db_path: Path, key_file: str | Path | None,
                fits: Callable[[bytes], bool] | None = None,
                leaves: Callable[[bytes], bool] | None = None) -> tuple[bytes, bool]:
    """(key, fiction_only): fiction_only when the key is the file beside the store.
    `fits`: None for a store no key was used on yet (no fingerprint, no opposition), which
    may get a new key file; else whether a key is the store's. A store that has its key gets
    no new one, and the key beside it is taken only if it is that key. `leaves`: whether the
    store, keyed with this key beside it, would take another (a demo store, no opposition):
    then a named key file that does not exist yet is made for it."""
    env = os.environ.get(ENV)
    if env:  # a demo store leaving the key beside it takes this one as its first real key
        side_key = read_key(beside(db_path)) if leaves is not None else None
        strong_enough(env.encode(), ENV, fits is not None and not (
            side_key and leaves is not None and leaves(side_key)))
        return env.encode(), False
    side = beside(db_path)
    if key_file:
        key = _named(db_path, key_file, side, fits, leaves)
        strong_enough(key, f"{KEY_SETTING} {Path(key_file).expanduser()}", fits is not None)
        return key, False
    try:
        key = _read_or_create(side) if fits is None else read_key(side)
    except OSError as exc:
        raise StoreError(f"the opposition key {side}: cannot read or create it "
                         f"({exc.strerror or exc}): fix its folder or set {ENV}") from None
    key = usable(key, f"the opposition key {side}")
    if key is None:
        raise StoreError(elsewhere(db_path, side, f"no such file, no {KEY_SETTING}"))
    if fits is not None and not fits(key):
        raise StoreError(elsewhere(db_path, side, f"another key, no {KEY_SETTING}"))
    strong_enough(key, f"the opposition key {side}", fits is not None)
    return key, True


__all__ = ["ENV", "FICTION_GLOB", "KEY_SAMPLE", "KEY_SETTING", "beside", "check_key",
           "elsewhere", "fingerprint", "fix_hint", "read_key", "resolve_key", "strong_enough",
           "usable"]
