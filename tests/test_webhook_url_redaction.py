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
    f"http://{PW}@example.org/x",                       # a token as the user name
    # A password holding / ? or # ends the authority for any parser (host 'hook', port 'S3cr')
    "https://hook:S3cr/etPW@hooks.example.org/in",
    "https://hook:S3cr?etPW@hooks.example.org/in",
    "https://hook:S3cr#etPW@hooks.example.org/in",
    "https://hook:1234/etPW@hooks.example.org/in",      # read as a port, 1234, and a path
    "hook:S3cr/etPW@hooks.example.org/in"])             # no scheme: 'hook:' is no scheme
def test_credentials_are_refused_first_and_never_printed(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.from_dict({"webhooks": {"url": url}})
    text = str(info.value)
    assert text.startswith("webhooks.url holds credentials") and "\n" not in text, text
    assert PW not in text and "etPW" not in text and "S3cr" not in text


@pytest.mark.parametrize("url", ["https://hooks.example.org/team@ivr?to=a@b#c@d",
                                 "https://h/x@y", "https://[::1]/x@y"])
def test_an_at_sign_in_the_path_is_not_taken_for_credentials(url: str) -> None:
    assert config.from_dict({"webhooks": {"url": url}}).webhooks.url == url


@pytest.mark.parametrize("url, message", [
    ("https://hooks.example.org:99999/hidden", "cannot be read (a bad port)"),
    ("https://hooks.example.org:S3cr/hidden", "cannot be read (a bad port)"),
    ("https://[::1/hidden", "cannot be read (a broken [IPv6] host)"),
    ("https://hooks.example.org:0/hidden", "has port 0"),
    ("ftp://hooks.example.org/hidden", "is not an http(s) URL (scheme 'ftp')"),
    ("https://hooks.example.org:8443/in?to=hidden@b", "holds credentials")])
def test_no_message_quotes_the_url(url: str, message: str) -> None:
    """Whatever the URL holds, a message names at most its scheme: the parser's own text
    quoted the port ('S3cr'), the messages the whole URL."""
    with pytest.raises(ConfigError) as info:
        config.from_dict({"webhooks": {"url": url}})
    text = str(info.value)
    assert text.startswith(f"webhooks.url {message}"), text
    assert "hidden" not in text and "S3cr" not in text and "example.org" not in text, text


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
