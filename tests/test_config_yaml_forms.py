"""YAML forms that turned into something else than written, or into a traceback, when the
config was read (ivr/config.load): each is one line naming its line or key now."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ivr import config, config_yaml
from ivr.errors import ConfigError


def load_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("date", ["2026-02-30", "2026-13-01", "2026-01-01 25:00:00"])
def test_a_date_that_does_not_exist_is_named_by_its_line(tmp_path: Path, date: str) -> None:
    """PyYAML raised a bare ValueError (day is out of range for month): a traceback."""
    message = load_error(tmp_path, f"schedule:\n  blackout_dates: [{date}]\n")
    assert message.endswith(f"line 2: '{date}' is not a date: write it as YYYY-MM-DD "
                            "(2026-03-01)")


@pytest.mark.parametrize("written, read", [("0755", "493"), ("0x1F", "31"), ("1_000", "1000")])
def test_a_number_form_in_a_text_setting_asks_for_quotes(tmp_path: Path, written: str,
                                                         read: str) -> None:
    """campaign.name: 0755 became '493' silently, and the campaign's rows are keyed by it."""
    message = load_error(tmp_path, f"campaign:\n  name: {written}\n")
    assert message == (f"config.campaign.name: YAML read {written} as the number {read}: put "
                       f'it in quotes, e.g. "{written}"')


def test_a_plain_number_in_a_text_setting_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("campaign:\n  name: 2026\n", encoding="utf-8")
    assert config.load(path).campaign.name == "2026"


def test_an_alias_of_itself_is_one_line(tmp_path: Path) -> None:
    """`x: &a [*a]` is a loop: the NUL check recursed until RecursionError, a traceback."""
    assert load_error(tmp_path, "x: &a [*a]\n").startswith("config.x: unknown key")


def test_aliases_of_aliases_are_walked_once(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Nine levels of nine aliases: 387 million paths to ten lists. The check walked each path
    (26 s of CPU before its one-line error); each list once now: counted, not timed."""
    visits = []
    walk = config_yaml.printable

    def counted(*args: Any) -> None:
        visits.append(1)
        walk(*args)
    monkeypatch.setattr(config_yaml, "printable", counted)
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]"
                                for i in range(1, 10)]
    assert load_error(tmp_path, "\n".join(lines) + "\n").startswith("config.a0: unknown key")
    assert 10 <= len(visits) <= 200  # the root, 10 lists, their 82 items; not 387 million
