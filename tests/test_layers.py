"""The package's layers, as the README's Architecture section states them: no subpackage
imports the CLI, the demos or the composition root (`ivr/app.py`), even lazily inside a
function; and `callflow/` names `campaign/` for type checking only. Before: the opposition
line's module imported `app.callback_secret` inside a function (app imports that module), the
console's prompts page `app.install_prompts_to_pbx`, and the cluster demo the CLI's
`cli_db.cluster_for`."""
from __future__ import annotations

import ast
from pathlib import Path

IVR = Path(__file__).resolve().parents[1] / "ivr"
ENTRY = ("ivr.app", "ivr.cli", "ivr.demo")  # ivr.cli*, ivr.demo* and the composition root


def _imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, module, under `if TYPE_CHECKING:`) of each `ivr` import in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", "") == "TYPE_CHECKING"
                   for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ivr"):
            mods = [f"ivr.{a.name}" for a in node.names] if node.module == "ivr" else [node.module]
            found += [(node.lineno, m, id(node) in typing_only) for m in mods]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, id(node) in typing_only) for a in node.names
                      if a.name.startswith("ivr")]
    return found


def _subpackage_files() -> list[Path]:
    return [p for p in IVR.rglob("*.py") if p.parent != IVR]


def test_no_subpackage_imports_the_cli_the_demos_or_the_composition_root() -> None:
    wrong = [f"{p.relative_to(IVR.parent)}:{line} imports {mod}"
             for p in _subpackage_files() for line, mod, _ in _imports(p)
             if mod.startswith(ENTRY)]
    assert wrong == []


def test_callflow_names_campaign_for_type_checking_only() -> None:
    wrong = [f"{p.relative_to(IVR.parent)}:{line} imports {mod}"
             for p in (IVR / "callflow").glob("*.py") for line, mod, typing in _imports(p)
             if mod.startswith("ivr.campaign") and not typing]
    assert wrong == []
