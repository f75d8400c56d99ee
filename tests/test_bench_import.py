"""bench/bench_import.py still measures what it says: the list imported into two campaigns,
every line landing in each with its name (not a timing: the figures are the README's)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_import  # noqa: E402  (bench/ is not a package)

from ivr.store.sqlite import Store  # noqa: E402


def test_the_bench_imports_every_line_into_both_campaigns(
        tmp_path: Path, opened_stores: list[Store]) -> None:
    got = bench_import.measure(40, "sqlite", tmp_path)
    assert (got["a"]["added"], got["b"]["added"]) == (40, 40)
    assert got["a"]["client_s"] >= 0 and "server_s" not in got["a"]
    page = opened_stores[0].contacts_page("b", limit=100)
    assert len(page) == 40 and {r["source"] for r in page} == {"list-b"}
    assert page[7]["name"] == "Personne 7" and page[7]["number"] == "+33612000007"
