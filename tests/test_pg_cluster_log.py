"""PgCluster's start failure reads the log from its size before the start (a byte offset):
read as bytes then decoded, the new lines come out whole after non-ASCII ones, undecodable
bytes do not raise, and a log truncated since is read whole (ivr/store/pg_cluster.log_since)."""
from __future__ import annotations

from pathlib import Path

from ivr.store.pg_cluster import _last_line, log_since

OLD = "2026-12-02 LOG:  le système de base de données est arrêté — «ok»\n" * 3
NEW = "2026-12-02 FATAL:  n'a pas pu créer le socket : Adresse déjà utilisée\n"


def test_the_new_lines_after_non_ascii_ones_come_out_whole(tmp_path: Path) -> None:
    log = tmp_path / "postgresql.log"
    log.write_text(OLD, encoding="utf-8")
    seen = log.stat().st_size
    assert seen > len(OLD)  # the multi-byte characters: bytes, not characters
    with log.open("a", encoding="utf-8") as fh:
        fh.write(NEW)
    assert log_since(log, seen) == NEW
    assert _last_line(log_since(log, seen)) == NEW.strip()


def test_undecodable_bytes_are_replaced(tmp_path: Path) -> None:
    log = tmp_path / "postgresql.log"
    log.write_bytes(b"old\n")
    with log.open("ab") as fh:
        fh.write("FATAL:  arr\u00eat\u00e9\n".encode("latin-1"))  # a Latin-1 server
    assert log_since(log, 4) == "FATAL:  arr\ufffdt\ufffd\n"


def test_a_log_truncated_since_is_read_whole(tmp_path: Path) -> None:
    log = tmp_path / "postgresql.log"
    log.write_text(NEW, encoding="utf-8")
    assert log_since(log, 10_000) == NEW
    assert log_since(log, log.stat().st_size) == ""
