"""A webhooks.url with credentials is refused without printing them: the port, scheme and parse
errors quoted the URL, password included, before the credentials check ran."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import ivr
from ivr import config
from ivr.errors import ConfigError

REPO = Path(ivr.__file__).resolve().parents[1]  # the ivr under test (a worktree's too)
PW = "S3cretPW"


@pytest.mark.parametrize("url", [
    f"https://hook:{PW}@receiver.example.org:0/x",      # the hunt's w1.yaml: port 0
    f"https://hook:{PW}@receiver.example.org:99999/x",  # w2.yaml: port out of range
    f"ftp://hook:{PW}@receiver.example.org/x",          # w3.yaml: not http(s)
    f"https://hook:{PW}@receiver.example.org/x",        # w4.yaml: credentials alone
    f"https://hook:{PW}@[::1/x",                        # urlsplit cannot read it
    f"https:/hook:{PW}@receiver.example.org/x",         # one slash: no netloc for urlsplit
    f"hook:{PW}@receiver.example.org/x",                # no scheme at all
    f"http://{PW}@example.org/x"])                      # a token as the user name
def test_credentials_are_refused_first_and_never_printed(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.from_dict({"webhooks": {"url": url}})
    text = str(info.value)
    assert text.startswith("webhooks.url holds credentials") and "\n" not in text, text
    assert PW not in text


def test_an_at_sign_in_the_path_is_not_taken_for_credentials() -> None:
    url = "https://hooks.example.org/team@ivr?to=a@b#c@d"
    assert config.from_dict({"webhooks": {"url": url}}).webhooks.url == url


def test_ivr_check_prints_one_line_without_the_password(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(
        {"webhooks": {"url": f"https://hook:{PW}@receiver.example.org:0/x"}}), encoding="utf-8")
    out = subprocess.run([sys.executable, "-c", "from ivr.cli import main; main()", "--config",
                          str(path), "check"], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert out.returncode == 1 and PW not in out.stdout + out.stderr, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: webhooks.url holds credentials"), line
