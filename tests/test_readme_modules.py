"""The README's module table lists every module of the package, and nothing that is gone."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _table_modules() -> set[str]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Architecture"):]
    section = section[:section.index("\n## ", 1)]
    rows = [line for line in section.splitlines() if line.startswith("| `ivr/")]
    return {m for row in rows for m in re.findall(r"`(ivr/[\w/]+\.py)`", row.split("|")[1])}


def test_every_module_is_in_the_readme_table() -> None:
    modules = {str(p.relative_to(REPO)) for p in (REPO / "ivr").rglob("*.py")
               if p.name != "__init__.py"}
    listed = _table_modules()
    assert modules - listed == set(), "add these modules to README.md's Architecture table"
    assert listed - modules == set(), "these README rows name modules that no longer exist"
