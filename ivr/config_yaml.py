"""How config.yaml is read: YAML's own forms held to what the operator wrote.

A key written twice in one section is refused (YAML keeps the last: a second `dialer:` block
silently replaced the first), a key must be a word, an integer or float keeps the text it was
written as (config._build refuses 0755 read as 493 in a text setting), an impossible date is
a one-line error, and no text may hold a NUL or a lone surrogate. config.load uses them.
"""
from __future__ import annotations

from typing import Any

import yaml

from ivr.errors import ConfigError


class UniqueKeys(yaml.SafeLoader):
    """safe_load that refuses a key written twice in one mapping: YAML keeps the last, so a
    second `dialer:` block silently replaced the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be
                continue                                   # overridden, as YAML means them to
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if not isinstance(key, (str, int, float, bool, type(None))):  # `? [1, 2]`, `{a: 1}:`
                raise ConfigError(f"line {key_node.start_mark.line + 1}: a key must be a word, "
                                  f"not a {type(key).__name__}: write `name: value`")
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: {key!r} is written "
                                  "twice in the same section: keep one")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _Int(int):
    """An integer as YAML read it, with the text it was written as: 0755 (octal), 0x1F or 1_000
    in a text setting became '493', '31', '1000' silently."""
    text = ""


class _Float(float):
    text = ""


def _number(loader: yaml.SafeLoader, node: yaml.ScalarNode, kind: type, base: Any) -> Any:
    value = kind(base(loader, node))
    value.text = str(node.value)
    return value


def _timestamp(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except (ValueError, OverflowError):  # 2026-02-30: a date YAML recognised, but none
        raise ConfigError(f"line {node.start_mark.line + 1}: {node.value!r} is not a date: "
                          "write it as YYYY-MM-DD (2026-03-01)") from None


UniqueKeys.add_constructor("tag:yaml.org,2002:int", lambda lo, n: _number(
    lo, n, _Int, yaml.SafeLoader.construct_yaml_int))
UniqueKeys.add_constructor("tag:yaml.org,2002:float", lambda lo, n: _number(
    lo, n, _Float, yaml.SafeLoader.construct_yaml_float))
UniqueKeys.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


def printable(value: Any, where: str, seen: set[int] | None = None) -> None:
    """No NUL and no lone surrogate in any text ("\\0", "\\ud800" escapes): no path, name or
    file can hold them, and they failed deep inside as tracebacks. A list or mapping reached
    twice (a YAML alias) is walked once: `x: &a [*a]` is a loop, and aliases of aliases nine
    deep make hundreds of millions of paths to the same few lists."""
    seen = set() if seen is None else seen
    if isinstance(value, (dict, list)):
        if id(value) in seen:
            return
        seen.add(id(value))
    if isinstance(value, dict):
        for k, v in value.items():
            printable(v, f"{where}.{k}" if where else str(k), seen)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            printable(v, f"{where}[{i}]", seen)
    elif isinstance(value, str) and ("\0" in value or any(
            "\ud800" <= c <= "\udfff" for c in value)):
        raise ConfigError(f"{where}: holds a NUL or an invalid character (an escape such as "
                          "\\0 or \\ud800): remove it")
