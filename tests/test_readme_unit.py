"""The README's systemd unit for `ivr run` works as written. systemd takes `#` or `;` as a
comment only at the start of a line (systemd.syntax(7)): after a value it is part of the value.
The unit had its comments beside the values: `TimeoutStopSec=1200   # …` was refused (systemd's
90 s default then killed a draining run with calls in flight), `PrivateTmp=yes   # …` too, and
`EnvironmentFile=` named a file whose path ran to the end of the comment."""
from __future__ import annotations

import re
from pathlib import Path

from ivr import cli

README = Path(__file__).resolve().parents[1] / "README.md"
SETTING = re.compile(r"([A-Za-z]+)=(.*)")


def _unit() -> list[str]:
    section = README.read_text(encoding="utf-8").split("### Running as a service", 1)[1]
    fenced = re.search(r"```ini\n(.*?)```", section, re.S)
    assert fenced, "no ```ini unit in 'Running as a service'"
    return fenced.group(1).splitlines()


def _settings() -> dict[str, str]:
    """Each setting as systemd reads it: the whole rest of the line is the value."""
    out: dict[str, str] = {}
    for line in _unit():
        if not line.strip() or line.lstrip().startswith(("#", ";")) or \
                re.fullmatch(r"\[[A-Za-z]+\]", line):
            continue
        match = SETTING.fullmatch(line)
        assert match, f"not a systemd setting line: {line!r}"
        out[match.group(1)] = match.group(2)
    return out


def test_no_setting_carries_a_comment_after_its_value() -> None:
    for key, value in _settings().items():
        assert "#" not in value and not re.search(r"\s;", value), \
            f"{key}={value!r}: systemd would read the comment as part of the value"
        assert value == value.strip(), f"{key}: trailing blanks become part of the value"


def test_the_units_values_are_what_systemd_accepts() -> None:
    unit = _settings()
    assert unit["RestartPreventExitStatus"].split() == [str(cli.EXIT_CARRIER),
                                                        str(cli.EXIT_LEFT_OPEN)]
    assert unit["TimeoutStopSec"].isdigit() and int(unit["TimeoutStopSec"]) >= 300
    assert unit["PrivateTmp"] in ("yes", "true", "1")
    assert re.fullmatch(r"/[\w./-]+", unit["EnvironmentFile"]), unit["EnvironmentFile"]
    assert unit["ExecStart"].split()[-2:] == ["run", "--wait"]
    assert unit["Restart"] == "on-failure"
