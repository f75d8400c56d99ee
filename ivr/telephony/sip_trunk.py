"""The PJSIP trunk: the sandbox's pjsip.conf and the carrier auth section written from the
environment.

dialplans/pjsip-trunk.conf holds templates (what the IVR needs from any trunk) and an operator
block (the carrier's host, the presented number). The sandbox keeps the templates verbatim and
replaces the operator block with loopback objects, so the integration tests exercise the same
settings an operator deploys. Asterisk's config files cannot read the environment (no ${ENV()};
#exec needs execincludes=yes for every file), so the password is written into a separate,
mode 0600 file by `python -m ivr.telephony.sip_trunk auth --out FILE`, never into the repository.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import pwd
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ivr.errors import ConfigError
from ivr.secret_files import write_secret
from ivr.telephony.contract import CARRIER_CONTEXT

TRUNK_CONF = Path(__file__).resolve().parents[2] / "dialplans" / "pjsip-trunk.conf"
SECTION = re.compile(r"^\[([^\]]+)\](\([^)]*\))?\s*(;.*)?$")
ENV_USER = "IVR_SIP_USER"
ENV_SECRET = "IVR_SIP_SECRET"
ENV_REALM = "IVR_SIP_REALM"


def template_sections(text: str) -> str:
    """Only the template sections `[name](!)` of a pjsip config, in order, with their comments.

    Comment lines right above a header (no blank line between) belong to that header's section;
    comments after a section's last option belong to nothing and are dropped.
    """
    blocks: list[tuple[bool, list[str]]] = [(False, [])]  # (is a template, lines)
    for line in text.splitlines():
        m = SECTION.match(line.strip()) if line.startswith("[") else None
        if m or line.startswith("#"):  # an include belongs to the operator's setup
            lines = blocks[-1][1]
            cut = len(lines)
            while cut and lines[cut - 1].startswith(";"):
                cut -= 1
            lead = lines[cut:]
            del lines[cut:]
            blocks.append((bool(m) and m.group(2) == "(!)", lead + [line]))
        else:
            blocks[-1][1].append(line)
    kept = ["\n".join(_trim(lines)) for keep, lines in blocks if keep]
    return "\n\n".join(kept) + "\n"


def _trim(lines: list[str]) -> list[str]:
    """Drop the comments after a section's last option: they introduce what follows (an
    indented comment continues the option above it and stays)."""
    end = len(lines)
    while end and (not lines[end - 1].strip() or lines[end - 1].startswith(";")):
        end -= 1
    return lines[:end]


def sandbox_pjsip_conf(host: str = "127.0.0.1", sip_port: int = 5060,
                       carrier_port: int = 5070, trunk_conf: Path = TRUNK_CONF) -> str:
    """The sandbox's pjsip.conf: the shipped templates, bound to loopback, the carrier being
    SIPp on `carrier_port`. No registration, no auth: SIPp plays a carrier that trusts by IP."""
    if not _is_loopback(host):
        raise ConfigError(f"the sandbox SIP trunk must stay on loopback, not {host!r}")
    for port in (sip_port, carrier_port):
        if not 1 <= port <= 65535:
            raise ConfigError(f"SIP port {port} is out of range")
    templates = template_sections(trunk_conf.read_text())
    for name in ("ivr-carrier-transport", "ivr-carrier-endpoint", "ivr-carrier-aor",
                 "ivr-carrier-identify"):
        if f"[{name}](!)" not in templates:
            raise ConfigError(f"{trunk_conf}: template [{name}](!) is missing")
    # Inbound calls must reach the opposition line: the dialplan's [ivr-from-carrier].
    if not re.search(rf"^context\s*=\s*{re.escape(CARRIER_CONTEXT)}\s*(;|$)", templates, re.M):
        raise ConfigError(f"{trunk_conf}: [ivr-carrier-endpoint](!) must keep "
                          f"context={CARRIER_CONTEXT} (inbound calls: the opposition line)")
    site = f"""
; --- sandbox: the operator block, on loopback (ivr/telephony/sip_trunk.py) ----------------------
[carrier-transport](ivr-carrier-transport)
bind={host}:{sip_port}

[carrier](ivr-carrier-endpoint)
; no from_user: From carries the Originate caller ID, the same number as P-Asserted-Identity

[carrier](ivr-carrier-aor)
contact=sip:{host}:{carrier_port}
; SIPp answers only the calls its scenario expects: an OPTIONS would count as a failed call,
; and a carrier marked unreachable between two tests would refuse every dial.
qualify_frequency=0

[carrier](ivr-carrier-identify)
match={host}
"""
    header = ("; Written by `ivr pbx up` from dialplans/pjsip-trunk.conf: edits here are lost.\n"
              "; The templates below are that file's, verbatim.\n\n")
    return header + templates + site


def _is_loopback(host: str) -> bool:
    """An IPv4 loopback address (the sandbox writes it into bind= and a sip: URI as is)."""
    try:
        return ipaddress.IPv4Address(host).is_loopback
    except ValueError:
        return False


def _conf_value(name: str, value: str) -> str:
    """A value safe on one pjsip.conf line. `;` starts a comment unless written `\\;`, and that
    is the only escape Asterisk's parser knows: a backslash elsewhere is kept as it is."""
    if any(c in value for c in "\r\n\x00"):
        raise ConfigError(f"{name} must be one line")
    if value != value.strip():
        raise ConfigError(f"{name} must not start or end with spaces (Asterisk trims them)")
    return value.replace(";", "\\;")


def auth_conf(username: str, secret: str, realm: str | None = None) -> str:
    """The [carrier-auth] section that the trunk's outbound_auth and registration use."""
    if not username or not secret:
        raise ConfigError(f"the carrier credentials are empty: set {ENV_USER} and {ENV_SECRET}")
    lines = ["; Written from the environment by `python -m ivr.telephony.sip_trunk auth`: keep mode 0600,",
             "; never commit it.", "[carrier-auth]", "type=auth", "auth_type=userpass",
             f"username={_conf_value(ENV_USER, username)}",
             f"password={_conf_value(ENV_SECRET, secret)}"]
    if realm:
        lines.append(f"realm={_conf_value(ENV_REALM, realm)}")
    return "\n".join(lines) + "\n"


def auth_conf_from_env(environ: Mapping[str, str] = os.environ) -> str:
    secret = environ.get(ENV_SECRET, "")
    if not secret:
        raise ConfigError(f"{ENV_SECRET} is not set: export the carrier's SIP password first")
    user = environ.get(ENV_USER, "")
    if not user:
        raise ConfigError(f"{ENV_USER} is not set: export the carrier's SIP username first")
    return auth_conf(user, secret, environ.get(ENV_REALM) or None)


def write_auth_conf(path: Path, environ: Mapping[str, str] = os.environ,
                    owner: str | None = None) -> Path:
    """Write the auth section atomically, readable by `owner` only (the user Asterisk runs as:
    a root-only file would be skipped by #tryinclude without a word)."""
    text = auth_conf_from_env(environ)
    ids = None
    if owner is not None:
        try:
            pw = pwd.getpwnam(owner)
        except KeyError:
            raise ConfigError(f"user {owner!r} not found: pass --owner USER, the user Asterisk "
                              "runs as") from None
        ids = (pw.pw_uid, pw.pw_gid)
    write_secret(path, text, owner=ids)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ivr.telephony.sip_trunk",
                                     description="PJSIP trunk helpers for the IVR")
    sub = parser.add_subparsers(dest="command", required=True)
    auth = sub.add_parser("auth", help=f"write [carrier-auth] from {ENV_USER}/{ENV_SECRET}")
    auth.add_argument("--out", type=Path, required=True,
                      help="e.g. /etc/asterisk/ivr/pjsip-trunk-auth.conf")
    auth.add_argument("--owner", default="asterisk",
                      help="the user Asterisk runs as (default: asterisk)")
    sandbox = sub.add_parser("sandbox", help="print the sandbox's pjsip.conf")
    sandbox.add_argument("--carrier-port", type=int, default=5070)
    args = parser.parse_args(argv)
    try:
        if args.command == "auth":
            print(f"wrote {write_auth_conf(args.out, owner=args.owner)} (mode 0600, owner "
                  f"{args.owner}); then: "
                  "asterisk -rx 'module reload res_pjsip.so'")
        else:
            sys.stdout.write(sandbox_pjsip_conf(carrier_port=args.carrier_port))
    except (ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
