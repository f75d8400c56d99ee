"""config.yaml documents every key of ivr/config.py: every section, and every key of each
section (nested ones too), either set or in a comment; the commented-out blocks, uncommented,
are valid config and hold exactly the defaults of ivr/config.py."""
from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest
import yaml

from ivr import config

REPO = Path(__file__).resolve().parents[1]
TEXT = (REPO / "config.yaml").read_text(encoding="utf-8")
SECTIONS = [f for f in dataclasses.fields(config.Config) if not f.metadata.get("internal")]
COMMENTED = ("retention", "contacts", "web", "webhooks", "db")


def _block(name: str) -> str:
    """The lines of top-level section `name`, set (`name:`) or commented out (`# name:`)."""
    lines = TEXT.splitlines()
    start = next((i for i, ln in enumerate(lines) if re.match(rf"(# )?{name}:", ln)), None)
    assert start is not None, f"config.yaml: no `{name}:` section (not even commented)"
    end = next((j for j in range(start + 1, len(lines))
                if re.match(r"(# )?[a-z_]+:", lines[j])), len(lines))
    return "\n".join(lines[start:end])


def _dataclass_in(tp: typing.Any) -> typing.Any:
    """The dataclass a field holds (itself, in a list, a dict's values, or Optional)."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        found = _dataclass_in(arg)
        if found is not None:
            return found
    return None


def _keys(tp: typing.Any) -> set[str]:
    hints = typing.get_type_hints(tp)
    out = set()
    for f in dataclasses.fields(tp):
        out.add(f.name)
        inner = _dataclass_in(hints[f.name])
        if inner is not None:
            out |= _keys(inner)
    return out


@pytest.mark.parametrize("section", [f.name for f in SECTIONS])
def test_every_section_and_key_of_config_py_is_in_config_yaml(section: str) -> None:
    block = _block(section)
    tp = _dataclass_in(typing.get_type_hints(config.Config)[section])
    if tp is None:  # a plain top-level value (default_region): written as it is
        assert re.search(rf"^#? ?{section}:", block, re.M), f"config.yaml lacks `{section}:`"
        return
    missing = [k for k in sorted(_keys(tp)) if not re.search(rf"\b{k}:", block)]
    assert not missing, f"config.yaml's `{section}:` block does not mention {missing}"


@pytest.mark.parametrize("section", COMMENTED)
def test_a_commented_block_uncommented_is_the_default(section: str) -> None:
    block = _block(section)
    assert block.startswith(f"# {section}:"), f"{section}: expected a commented-out block"
    uncommented = "\n".join(ln[2:] for ln in block.splitlines() if ln.startswith("# "))
    data = yaml.safe_load(uncommented)
    cfg = config.from_dict(data)
    assert getattr(cfg, section) == getattr(config.Config(), section)
    assert set(data[section]) == {f.name for f in dataclasses.fields(getattr(cfg, section))}


def test_no_secret_is_in_config_yaml() -> None:
    # Secrets are named as environment variables only: no value is ever given for one.
    for env in ("IVR_WEB_SECRET", "IVR_WEBHOOK_SECRET", "IVR_STORE_PASSWORD", "IVR_AMI_SECRET"):
        assert env in TEXT, env
        assert not re.search(rf"{env}\s*[=:]\s*\S", TEXT), env
    data = yaml.safe_load(TEXT)
    assert not any(k in (data.get(s) or {}) for s in data if isinstance(data.get(s), dict)
                   for k in ("secret", "password", "key"))
