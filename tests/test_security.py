"""Issue 7.3 (pure parts): loopback defaults, dial-string injection, parameterised SQL."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ivr import config
from ivr.campaign.dialer import dial_string, safe_value
from ivr.errors import ConfigError

PACKAGE = Path(__file__).resolve().parent.parent / "ivr"


def test_network_defaults_are_loopback() -> None:
    cfg = config.Config()
    assert cfg.pbx.host == "127.0.0.1" and cfg.agi.host == "127.0.0.1"
    assert cfg.agi.allowed_peers == ["127.0.0.1"]


@pytest.mark.parametrize("number", ["+33199000010&Local/666@evil", "+33199000010/x",
                                    "+33199000010,1", "+33199000010|x", "+33199000010\nAction: X",
                                    "33199000010", "+33 1 99 00 00 10", ""])
def test_numbers_that_would_inject_are_rejected_before_ami(number: str) -> None:
    with pytest.raises(ConfigError):
        dial_string("Local/{number}@ivr-sim", number)


def test_a_clean_number_fills_the_template() -> None:
    assert dial_string("PJSIP/{number}@carrier", "+33199000010") == "PJSIP/+33199000010@carrier"


@pytest.mark.parametrize("template", ["Local/{number}@a&Local/1@b", "Local/{number}@a|x",
                                      "Local/{number}@a,1", "Local/{number}@a\nX"])
def test_dial_string_templates_that_would_inject_are_refused_at_load(template: str) -> None:
    with pytest.raises(ConfigError, match="dial_string"):
        config.from_dict({"dialer": {"dial_string": template}})


@pytest.mark.parametrize("value", ["+33162000000\r\nAction: Command", "+3316&2", "+33,1"])
def test_caller_id_that_would_inject_is_refused(value: str) -> None:
    with pytest.raises(ConfigError):
        safe_value("campaign.caller_id", value)


# -- SQL safety: every statement is a literal; only ivr/store/ holds SQL --------------------------
EXEC = frozenset({"execute", "executemany", "executescript"})
RUNS_SQL = EXEC | {"q", "one", "_rows", "_row", "_exec"}  # the store's helpers take SQL first
# psycopg's bound parameters (%s, %(name)s), in the PostgreSQL backend's modules (store/pg_*):
# there they are parameters, and any % operator at all is an offence (no formatting needed).
PSYCOPG_PARAM = re.compile(r"%(\([a-z_]+\))?s")
# Words of SQL as this package writes it (upper case); prose and messages are lower case.
SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|PRAGMA|WHERE|VALUES|"
                       r"FROM|JOIN|SET(?! VARIABLE\b)|INTO|AND|OR|IN|LIKE|GLOB|LIMIT|ORDER BY|GROUP BY)\b")
# (AGI's SET VARIABLE command, sent by telephony/fastagi.py, is not SQL's SET)
# str.format or % fields; a quoted '{}' is an SQL text value (an empty JSON object), not one.
PLACEHOLDER = re.compile(r"(?<!')\{[A-Za-z_0-9]*(![rsa])?(:[^}]*)?\}(?!')|%[sdr]")
STATEMENT = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b.*\b(FROM|INTO|SET)\b", re.S)


def _text(node: ast.AST) -> str:
    """The literal text of a string expression (f-string parts, + operands), else ''."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return " ".join(_text(v) for v in node.values)
    if isinstance(node, ast.BinOp):
        return _text(node.left) + " " + _text(node.right)
    return ""


def _built_sql(node: ast.AST, psycopg: bool = False) -> bool:
    """SQL text assembled at run time: an f-string, %, + or .format/.join on SQL words, or a
    template (SQL words with a {} or %s placeholder) kept for later. `psycopg`: %s and
    %(name)s are bound parameters, and every % operator is an offence."""
    if psycopg and isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return True
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = PSYCOPG_PARAM.sub("", node.value) if psycopg else node.value
        return bool(SQL_WORDS.search(text) and PLACEHOLDER.search(text))
    if isinstance(node, ast.JoinedStr):
        return bool(SQL_WORDS.search(_text(node)))
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return bool(SQL_WORDS.search(_text(node.left) + " " + _text(node.right)))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
            node.func.attr in ("format", "join"):
        return bool(SQL_WORDS.search(_text(node.func.value)))
    return False


def _exec_aliases(tree: ast.AST) -> set[str]:
    """Names bound to an execute method: `execute = self.db.execute`, `a, x = b, c.execute`."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            pairs: list[tuple[ast.AST, ast.AST | None]] = []
            for t in targets:
                if isinstance(t, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs += list(zip(t.elts, node.value.elts))
                else:
                    pairs.append((t, node.value))
            for target, value in pairs:
                if isinstance(target, ast.Name) and isinstance(value, ast.Attribute) and \
                        value.attr in EXEC:
                    names.add(target.id)
    return names


def sql_offences(source: str, name: str = "<src>") -> list[str]:
    """Every place SQL is built at run time, or an execute (or alias) gets non-literal SQL."""
    tree = ast.parse(source)
    aliases, out = _exec_aliases(tree), []
    psycopg = Path(name).name.startswith("pg_")
    for node in ast.walk(tree):
        if _built_sql(node, psycopg):
            out.append(f"{name}:{node.lineno}: SQL built at run time")  # type: ignore[attr-defined]
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else \
            func.id if isinstance(func, ast.Name) else ""
        if called in RUNS_SQL or (isinstance(func, ast.Name) and func.id in aliases):
            sql = node.args[0]
            literal = isinstance(sql, ast.Constant) and isinstance(sql.value, str)
            if not (literal or isinstance(sql, ast.Name)):
                out.append(f"{name}:{node.lineno}: {called}() of a non-literal")
    return out


def _modules() -> list[Path]:
    paths = sorted(PACKAGE.rglob("*.py"))
    assert len(paths) > 30 and PACKAGE / "store" / "sqlite_calls.py" in paths  # recursive
    return paths


def test_all_sql_is_literal_and_parameterised() -> None:
    """Values always travel as bound parameters; no statement is assembled at run time."""
    offences = [o for path in _modules()
                for o in sql_offences(path.read_text(), str(path.relative_to(PACKAGE)))]
    assert offences == []


@pytest.mark.parametrize("code", [
    'def f(db, col):\n    db.execute(f"UPDATE contacts SET {col} = ?", (1,))',
    'def f(self, sets):\n    execute = self.db.execute\n    execute(f"UPDATE t SET {sets}")',
    'def f(s, c):\n    a, x = 1, c.executemany\n    x("INSERT INTO t VALUES " + s)',
    'def f(c, s):\n    c.executescript("DELETE FROM t WHERE %s" % s)',
    'def f(c, s):\n    c.execute("SELECT * FROM t WHERE {}".format(s))',
    'def f(c, s):\n    c.execute(" AND ".join(s))',
    'def f(c, t):\n    sql = f"SELECT 1 FROM {t}"\n    c.execute(sql)',
    'def f(c, t):\n    c.execute(t + "x")',
    'def f(c, t):\n    run = c.execute\n    run(str(t))',
    'def f(s, part):\n    sql = "SELECT id FROM t WHERE n IN ({})"\n    s.q(sql.format(part))',
    'def f(s, t):\n    s.q("SELECT * FROM %s" % t)',
])
def test_the_sql_check_catches_built_statements(code: str) -> None:
    assert sql_offences(code) != []


@pytest.mark.parametrize("code", [
    'def f(db, n):\n    db.execute("SELECT 1 FROM t WHERE n = ?", (n,))',
    'def f(db, sql):\n    db.execute(sql)',
    'def f(n):\n    return f"{n} is not a valid phone number: give it as +33…"',
])
def test_the_sql_check_accepts_literals(code: str) -> None:
    assert sql_offences(code) == []


@pytest.mark.parametrize("code", [
    'def f(c, t):\n    sql = "SELECT * FROM t WHERE n = %s"\n    c.execute(sql % t)',
    'def f(c, t):\n    c.execute("SELECT * FROM %s" % t)',
    'def f(c, t):\n    c.execute(f"SELECT * FROM t WHERE n = {t}")',
    'def f(s, t):\n    s._exec(t + " WHERE n = %s", (1,))',
])
def test_the_sql_check_catches_built_statements_in_postgresql_modules(code: str) -> None:
    assert sql_offences(code, "store/pg_x.py") != []


def test_psycopg_parameters_are_parameters_only_in_postgresql_modules() -> None:
    code = 'def f(db, n):\n    db.execute("SELECT 1 FROM t WHERE n = %s AND m = %(m)s", (n,))'
    assert sql_offences(code, "store/pg_x.py") == []
    assert sql_offences(code, "store/sqlite_x.py") != []  # SQLite's parameter is ?


# Modules outside ivr/store/ that still hold SQL text, each with the reason. Empty: the store
# owns every statement.
KNOWN_SQL_OUTSIDE_STORE: dict[str, str] = {}


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def sql_texts(source: str) -> list[int]:
    """Lines of string literals (docstrings aside) that read as an SQL statement."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in skip and STATEMENT.search(node.value)]


def test_only_the_store_holds_sql() -> None:
    found = {}
    for path in _modules():
        rel = str(path.relative_to(PACKAGE))
        if rel.startswith("store/"):
            continue
        lines = sql_texts(path.read_text())
        if lines:
            found[rel] = lines
    assert set(found) == set(KNOWN_SQL_OUTSIDE_STORE), found


def test_the_store_check_catches_a_query() -> None:
    assert sql_texts('def f(s):\n    return s.q("SELECT COUNT(*) FROM calls")') == [2]
    assert sql_texts('def f(s):\n    """SELECT x FROM y, in prose."""') == []
