"""The secret-file writer: 0600 from the first byte, whole or not at all, and never through a
link someone planted in the folder (found in review: a symlink at the fixed `.NAME.tmp` made
the writer put the SIP password into, and hand ownership of, the file it pointed at)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ivr.secret_files import write_secret


def test_a_planted_link_at_the_old_temporary_name_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("someone else's file\n")
    victim.chmod(0o644)
    target = tmp_path / "pjsip-trunk-auth.conf"
    (tmp_path / f".{target.name}.tmp").symlink_to(victim)
    write_secret(target, "password=s3cret\n")
    assert victim.read_text() == "someone else's file\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert target.read_text() == "password=s3cret\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not target.is_symlink()


def test_a_rewrite_is_whole_and_leaves_no_copy(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    write_secret(target, "one")
    write_secret(target, b"two")
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]


def test_exclusive_never_replaces_nor_follows_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("kept")
    link = tmp_path / "key"
    link.symlink_to(victim)
    with pytest.raises(FileExistsError):
        write_secret(link, "new key", exclusive=True)
    assert victim.read_text() == "kept"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_the_owner_is_set_on_the_secret_alone(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("x")
    target = tmp_path / "auth.conf"
    (tmp_path / f".{target.name}.tmp").symlink_to(victim)
    write_secret(target, "p", owner=(65534, 65534))
    assert (target.stat().st_uid, victim.stat().st_uid) == (65534, os.geteuid())


def test_a_new_store_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """It holds voters' numbers: 0644 under the usual umask let every local user read them."""
    from datetime import datetime, timezone

    from ivr.store import Store
    old = os.umask(0o022)
    try:
        store = Store.open(tmp_path / "ivr.db", optout_key=b"k")
        store.add_optout("+33612345678", "post", datetime.now(timezone.utc))
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"ivr.db": 0o600, "ivr.db-wal": 0o600, "ivr.db-shm": 0o600}
