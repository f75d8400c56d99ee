"""Every third-party module the package, its tests and its benches import is declared in
pyproject.toml: the package's own in `dependencies`, the tests' and benches' there or in the
`test` extra. Found in review: two test files imported numpy, which only this machine's Python
had (scipy brought it); a fresh machine's virtual environment would stop at collection."""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(requirements: list[str]) -> set[str]:
    return {_norm(re.split(r"[\[=<>!~; ]", r, maxsplit=1)[0]) for r in requirements}


def _imported(folder: Path) -> dict[str, str]:
    """{top-level module: the first file importing it}, absolute imports only."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], path.name)
    return found


def undeclared(folder: Path, allowed: set[str], *beside: Path) -> list[str]:
    """'file imports module' for each module neither the stdlib's, the folder's own (or of the
    folders `beside` it on sys.path: the tests import the benches' helpers), ivr, nor
    provided by an allowed distribution."""
    local = {"ivr", "__future__"}
    for own in (folder, *beside):
        local |= {p.stem for p in own.rglob("*.py")} | {p.name for p in own.rglob("*")
                                                        if p.is_dir()}
    dists = packages_distributions()
    return [f"{where} imports {module}" for module, where in _imported(folder).items()
            if module not in sys.stdlib_module_names and module not in local
            and not {_norm(d) for d in dists.get(module, [])} & allowed]


def test_every_imported_distribution_is_declared() -> None:
    runtime = _declared(PROJECT["dependencies"])
    test = runtime | _declared(PROJECT["optional-dependencies"]["test"])
    assert undeclared(ROOT / "ivr", runtime) == []
    assert undeclared(ROOT / "tests", test, ROOT / "bench") == []
    assert undeclared(ROOT / "bench", test, ROOT / "tests") == []


def test_the_check_sees_an_undeclared_import(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("import numpy\nimport json\nfrom yaml import safe_load\n"
                                   "from . import sibling\nimport m\n")
    assert undeclared(tmp_path, _declared(PROJECT["dependencies"])) == ["m.py imports numpy"]
