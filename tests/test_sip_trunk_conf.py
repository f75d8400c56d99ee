"""ivr/telephony/sip_trunk.py: the sandbox's pjsip.conf comes from the shipped trunk templates, and the
carrier password only ever comes from the environment."""
from __future__ import annotations

import os
import pwd
import re
import stat
from pathlib import Path

import pytest

from ivr import config
from ivr.campaign.deadline import longest_call_s
from ivr.telephony import sip_trunk
from ivr.errors import ConfigError
from ivr.telephony.contract import CARRIER_CONTEXT
from ivr.telephony.sip_trunk import (TRUNK_CONF, auth_conf, auth_conf_from_env, sandbox_pjsip_conf,
                                     template_sections, write_auth_conf)


def sections(text: str) -> list[tuple[str, str, dict[str, str]]]:
    """(name, parent, options) for each section, as Asterisk would see them (no comments)."""
    out: list[tuple[str, str, dict[str, str]]] = []
    for raw in text.splitlines():
        line = re.sub(r"(?<!\\);.*", "", raw).strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"\[([^\]]+)\](?:\(([^)]*)\))?", line)
        if m:
            out.append((m.group(1), m.group(2) or "", {}))
        else:
            key, _, value = line.partition("=")
            out[-1][2][key.strip()] = value.strip()
    return out


def resolved(text: str) -> dict[tuple[str, str], dict[str, str]]:
    """Concrete objects with their templates applied, keyed by (name, type)."""
    templates = {n: opts for n, parent, opts in sections(text) if parent == "!"}
    objects: dict[tuple[str, str], dict[str, str]] = {}
    for name, parent, opts in sections(text):
        if parent == "!":
            continue
        merged = {**templates.get(parent, {}), **opts}
        objects[(name, merged["type"])] = merged
    return objects


SHIPPED = TRUNK_CONF.read_text()


def test_the_shipped_trunk_has_what_a_french_carrier_and_the_ivr_need() -> None:
    ep = resolved(SHIPPED)[("carrier", "endpoint")]
    assert ep["allow"] == "alaw,ulaw" and ep["disallow"] == "all"  # A-law first
    assert ep["dtmf_mode"] == "auto"  # RFC 4733 when offered, else tones: no key is lost
    assert ep["direct_media"] == "no" and ep["rtp_symmetric"] == "yes"
    assert ep["send_pai"] == "yes" and ep["trust_id_outbound"] == "yes"
    assert ep["context"] == CARRIER_CONTEXT and ep["aors"] == "carrier"
    assert ep["transport"] == "carrier-transport"
    # From carries campaign.caller_id, which ivr check verifies: a from_user would replace it
    # with a number nothing checks (found with SIPp: the shipped +33162000000 whatever the
    # campaign's number)
    assert "from_user" not in ep
    assert "auto_info" not in SHIPPED  # SIP INFO needs no mode: auto_info adds nothing


def test_the_operator_edits_only_host_and_number_in_one_block() -> None:
    operator = SHIPPED.split("; === OPERATOR BLOCK", 1)[1].split("\n", 1)[1]
    assert "(!)" not in operator  # every template is above the block
    assert [n for n, parent, _ in sections(operator)] == [
        "carrier-transport", "carrier", "carrier", "carrier"]
    assert "sip.carrier.example" in operator
    assert "#tryinclude ivr/pjsip-trunk-auth.conf" in operator


def test_no_secret_in_the_repository() -> None:
    for _, _, opts in sections(SHIPPED):
        assert "password" not in opts and "md5_cred" not in opts
    assert "IVR_SIP_SECRET" in SHIPPED  # says where the password comes from


def test_template_sections_keep_templates_and_their_comments_only() -> None:
    text = ("; header\n\n[a](!)\ntype=aor\n; about b\n[b](a)\ncontact=x\n"
            "#include other.conf\n; about c\n[c](!)\ntype=auth\n")
    assert template_sections(text) == "[a](!)\ntype=aor\n\n; about c\n[c](!)\ntype=auth\n"


def test_sandbox_conf_uses_the_shipped_templates_verbatim() -> None:
    conf = sandbox_pjsip_conf()
    assert template_sections(SHIPPED).strip() in conf
    assert "sip.carrier.example" not in conf and "#tryinclude" not in conf


def test_sandbox_conf_binds_loopback_and_points_at_sipp_without_registration() -> None:
    objs = resolved(sandbox_pjsip_conf(sip_port=5061, carrier_port=5071))
    assert objs[("carrier-transport", "transport")]["bind"] == "127.0.0.1:5061"
    assert objs[("carrier", "aor")]["contact"] == "sip:127.0.0.1:5071"
    assert objs[("carrier", "aor")]["qualify_frequency"] == "0"
    assert objs[("carrier", "identify")]["match"] == "127.0.0.1"
    ep = objs[("carrier", "endpoint")]
    assert ep["dtmf_mode"] == "auto" and ep["allow"] == "alaw,ulaw"
    assert "outbound_auth" not in ep and "from_user" not in ep
    assert not [k for k in objs if k[1] in ("registration", "auth")]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "sip.carrier.example", "::1", ""])
def test_sandbox_conf_refuses_anything_but_loopback(host: str) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        sandbox_pjsip_conf(host=host)


def test_sandbox_conf_refuses_a_trunk_file_without_the_templates(tmp_path: Path) -> None:
    broken = tmp_path / "pjsip-trunk.conf"
    broken.write_text("[carrier]\ntype=endpoint\n")
    with pytest.raises(ConfigError, match="ivr-carrier-transport"):
        sandbox_pjsip_conf(trunk_conf=broken)


def test_sandbox_conf_refuses_a_trunk_whose_inbound_misses_the_opposition_line(
        tmp_path: Path) -> None:
    moved = tmp_path / "pjsip-trunk.conf"
    text = TRUNK_CONF.read_text()
    assert f"context={CARRIER_CONTEXT}" in text
    moved.write_text(text.replace(f"context={CARRIER_CONTEXT}", "context=default"))
    with pytest.raises(ConfigError, match=f"context={CARRIER_CONTEXT}"):
        sandbox_pjsip_conf(trunk_conf=moved)


def test_auth_comes_from_the_environment_and_escapes_semicolons() -> None:
    text = auth_conf_from_env({"IVR_SIP_USER": "0162000000", "IVR_SIP_SECRET": "s3;cr\\et"})
    opts = resolved(text)[("carrier-auth", "auth")]
    assert opts["username"] == "0162000000"
    # Checked on Asterisk 22 (`pjsip show auth`): s3\;cr\et is read back as s3;cr\et.
    assert opts["password"] == "s3\\;cr\\et"
    assert "realm" not in opts


@pytest.mark.parametrize(("env", "missing"), [
    ({"IVR_SIP_USER": "u"}, "IVR_SIP_SECRET"),
    ({"IVR_SIP_SECRET": "s"}, "IVR_SIP_USER"),
    ({}, "IVR_SIP_SECRET"),
])
def test_missing_credentials_say_which_variable(env: dict[str, str], missing: str) -> None:
    with pytest.raises(ConfigError, match=missing):
        auth_conf_from_env(env)


@pytest.mark.parametrize("secret", ["a\nb", " lead", "trail "])
def test_a_secret_that_would_break_the_config_is_refused(secret: str) -> None:
    with pytest.raises(ConfigError):
        auth_conf("user", secret)


def test_write_auth_conf_is_private_and_replaces_the_old_file(tmp_path: Path) -> None:
    out = tmp_path / "pjsip-trunk-auth.conf"
    out.write_text("old")
    out.chmod(0o644)
    write_auth_conf(out, {"IVR_SIP_USER": "u", "IVR_SIP_SECRET": "p", "IVR_SIP_REALM": "r"})
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "password=p\n" in out.read_text() and "realm=r\n" in out.read_text()
    assert list(tmp_path.iterdir()) == [out]


def test_write_auth_conf_gives_the_file_to_the_asterisk_user(tmp_path: Path) -> None:
    me = pwd.getpwuid(os.getuid()).pw_name
    out = write_auth_conf(tmp_path / "a.conf", {"IVR_SIP_USER": "u", "IVR_SIP_SECRET": "p"},
                          owner=me)
    assert out.stat().st_uid == os.getuid()
    with pytest.raises(ConfigError, match="--owner"):
        write_auth_conf(tmp_path / "b.conf", {"IVR_SIP_USER": "u", "IVR_SIP_SECRET": "p"},
                        owner="no-such-user-ivr")
    assert not (tmp_path / "b.conf").exists()


def test_cli_auth_without_secret_fails_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("IVR_SIP_SECRET", raising=False)
    assert sip_trunk.main(["auth", "--out", str(tmp_path / "a.conf")]) == 1
    assert capsys.readouterr().err.startswith("error: IVR_SIP_SECRET is not set")
    assert not (tmp_path / "a.conf").exists()


def test_the_trunk_never_cuts_a_call_the_controller_still_makes() -> None:
    """rtp_timeout above the longest call of the shipped config with every prompt at its cap
    (found with SIPp: 60 s cut a callee who stayed silent through a 60 s message, as
    message_partial, final, without the legal mentions)."""
    ep = resolved(SHIPPED)[("carrier", "endpoint")]
    cfg = config.load(Path(__file__).resolve().parents[1] / "config.yaml")
    assert float(ep["rtp_timeout"]) > longest_call_s(cfg, {})
