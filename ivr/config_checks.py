"""The config's checks: sane bounds and rules each value must meet, every error one line
naming its key. Apart from ivr/config.py (the typed sections and the YAML reading), so that
both stay readable; the bounds are imported from here by the code that enforces them live."""
from __future__ import annotations

import dataclasses
import ipaddress
import logging
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ivr.config_network import (check_agi_reachable, check_ami_user, check_host,
                                 check_pbx_peers, validate_peers)
from ivr.errors import ConfigError
from ivr.numbers import e164, is_known_region
from ivr.telephony.contract import SIM_CONTEXT

if TYPE_CHECKING:  # ivr.config imports this module
    from ivr.config import Config, Dialer, Flow, NodeConfig, Schedule, Store, Webhooks

log = logging.getLogger(__name__)
# Below this, a retry delay is a demo's (config.yaml calls fiction numbers every 2 s): on a real
# list it redials a busy or absent person within minutes, max_attempts times in a row.
MIN_REAL_RETRY_DELAY_S = 600.0


def validate(cfg: Config) -> None:
    if not cfg.campaign.name.strip():  # else lists, prompts and reports bound to campaign ''
        raise ConfigError("campaign.name is empty: name the campaign (e.g. "
                          "municipales-2026-lyon): its lists, prompts and reports are bound to it")
    _validate_flow(cfg.flow)
    if cfg.pbx.mode not in ("sandbox", "external"):
        raise ConfigError(f"pbx.mode: {cfg.pbx.mode!r} is not sandbox or external")
    _validate_dialer(cfg.dialer)
    if cfg.retry.max_attempts < 1:
        raise ConfigError("retry.max_attempts must be at least 1")
    for f in dataclasses.fields(cfg.retry.delay_s):
        _in_range(f"retry.delay_s.{f.name}", getattr(cfg.retry.delay_s, f.name), 0,
                  MAX_RETRY_DELAY_S, "seconds (366 days)")
    for where, port in (("pbx.port", cfg.pbx.port), ("agi.port", cfg.agi.port),
                        ("web.port", cfg.web.port)):
        _in_range(where, port, 1, 65535, "TCP port")
    _validate_nodes(cfg.pbx.nodes)
    for where, host in (("pbx.host", cfg.pbx.host), ("agi.host", cfg.agi.host),
                        ("web.host", cfg.web.host)):
        check_host(where, host)
    check_ami_user("pbx.user", cfg.pbx.user)
    validate_peers(cfg.agi.allowed_peers)
    check_pbx_peers(cfg)
    check_agi_reachable(cfg)
    _in_range("db.port", cfg.db.port, 1, 65535, "TCP port")
    _in_range("retention.days", cfg.retention.days, 1, MAX_RETENTION_DAYS, "days")
    _validate_retention_lookback(cfg)
    if cfg.prompts.engine not in ("gtts", "espeak", "auto"):
        raise ConfigError(f"prompts.engine: {cfg.prompts.engine!r} is not gtts, espeak or auto")
    _in_range("prompts.intro_max_s", cfg.prompts.intro_max_s, 0, MAX_INTRO_S, "seconds",
              low_open=True)
    _in_range("prompts.max_duration_s", cfg.prompts.max_duration_s, 0, MAX_PROMPT_S, "seconds",
              low_open=True)
    _validate_regions(cfg)
    _validate_webhooks(cfg.webhooks)


def demo_retry_delays(cfg: Config) -> list[str]:
    """One line per retry delay left at a demo's value in a real campaign (demo_any_hour not
    set): the shipped config.yaml's 2 s delays carried over redial people within seconds."""
    if cfg.schedule.demo_any_hour:
        return []
    out = []
    for f in dataclasses.fields(cfg.retry.delay_s):
        delay = float(getattr(cfg.retry.delay_s, f.name))
        if delay < MIN_REAL_RETRY_DELAY_S:
            out.append(f"retry.delay_s.{f.name} is {_num(delay)} s, a demo's delay: a real "
                       f"campaign redials that person {_num(delay)} s later; set it to at "
                       f"least {_num(MIN_REAL_RETRY_DELAY_S)} (the defaults: busy 1800, "
                       "no_answer 3600, congestion 600), or delete retry.delay_s to keep them")
    return out


SHORT_RING_S = 20.0  # under this, a real phone is given up before most people reach it


def external_pbx_settings(cfg: Config) -> list[tuple[str, str]]:
    """The sandbox's settings carried to one's own Asterisk (pbx.mode external), as (code,
    message), said on every check and run: every call would fail, ring too briefly, or play a
    prompt nobody installed (an answered callee then hears silence, legal mentions included)."""
    if cfg.pbx.mode != "external":
        return []
    out: list[tuple[str, str]] = []
    if f"@{SIM_CONTEXT}" in cfg.dialer.dial_string:
        out.append(("dial_string_sandbox", f"dialer.dial_string is {cfg.dialer.dial_string!r}: "
                    "the sandbox's simulated callees, a context your Asterisk does not have, so "
                    "every call fails; set it to your trunk, e.g. PJSIP/{number}@carrier "
                    "(README, the carrier trunk)"))
    if cfg.dialer.ring_timeout_s < SHORT_RING_S:
        out.append(("ring_timeout_short", f"dialer.ring_timeout_s is "
                    f"{cfg.dialer.ring_timeout_s:g} s, a demo's value: a real callee's phone is "
                    f"given up before most people reach it; use at least {SHORT_RING_S:g} (the "
                    "default is 30)"))
    if not cfg.pbx.sounds_dir:
        out.append(("sounds_dir_unset", "pbx.sounds_dir is not set: `ivr prompts build` cannot "
                    "install the prompts, nor the run see that they are installed, and an "
                    "answered callee hears silence without them; set it to Asterisk's sounds "
                    "folder (Debian: /usr/share/asterisk/sounds), or copy the build into its "
                    "ivr/ folder yourself before every run"))
    return out


def rules_lookback_days(schedule: Schedule) -> int:
    """How far back the calling rules read a number's past: the attempt cap's 30 days and the
    refusal cooldown. Deleting less recent data would let a refuser be called again."""
    return max(CAP_PERIOD_DAYS, schedule.refusal_cooldown_days)


def _validate_retention_lookback(cfg: Config) -> None:
    if cfg.schedule.refusal_cooldown_days > MAX_RETENTION_DAYS:
        raise ConfigError(f"schedule.refusal_cooldown_days is {cfg.schedule.refusal_cooldown_days}"
                          f": use at most {MAX_RETENTION_DAYS} days (the longest retention: an "
                          "older refusal is deleted, and its number would be callable again)")
    lookback = rules_lookback_days(cfg.schedule)
    if cfg.retention.days < lookback:
        raise ConfigError(f"retention.days is {cfg.retention.days}: the calling rules read "
                          f"{lookback} days back (schedule.refusal_cooldown_days, the 30-day "
                          f"attempt cap); keep at least {lookback} days")


STORE_URL = re.compile(r"postgres(ql)?://[^/?#]+(/[^/?#]*)?(\?[^#]*)?")


def validate_store(store: Store, raw: dict[str, Any]) -> None:
    """store.url selects PostgreSQL, store.path (the default) SQLite: not both; no password."""
    if not store.url:
        if not str(store.path).strip():  # "" named the config's folder: "unable to open"
            raise ConfigError("store.path is empty: give the SQLite file's path (e.g. ivr.db), "
                              "or store.url for PostgreSQL")
        return
    if "path" in raw:
        raise ConfigError("store: keep only one of path: (SQLite) and url: (PostgreSQL)")
    if not STORE_URL.fullmatch(store.url):
        raise ConfigError("store.url: not a PostgreSQL URL: use postgresql://user@host:port/db")
    plain = unquote(store.url)  # as libpq reads it: `?pass%77ord=…` is a password too
    if re.search(r"://[^/@]*:[^/@]*@", plain) or re.search(r"password\s*=", plain):
        raise ConfigError("store.url holds a password: remove it and set IVR_STORE_PASSWORD "
                          "(or libpq's PGPASSWORD / ~/.pgpass)")


# Sane bounds: beyond them a value is a typo (or an attack on the callees), never a choice.
MAX_RING_TIMEOUT_S = 300.0  # 5 minutes of ringing; carriers give up well before
MAX_INPUT_TIMEOUT_S = 60.0  # a person who has not pressed a key in a minute will not
MAX_REPEATS = 5
MAX_INTRO_S = 30.0  # consent first: a longer intro is a message before the consent
# The longest prompt (the legal mentions run about a minute; 120 s by default): beyond ten
# minutes it is not a phone prompt, and it lengthens every call's deadline (campaign/deadline).
MAX_PROMPT_S = 600.0
# A retry later than a year is a typo (milliseconds, an extra digit), and no campaign lasts that
# long; far beyond it (1e12 s) the retry's date overflows and the dialer never writes the outcome.
MAX_RETRY_DELAY_S = 366 * 86400
MAX_CALLS_PER_SECOND = 200.0  # far above any carrier's trunk limit
# The slowest pace an operator could want: one call a minute (a trickle while a new message is
# checked). Slower is a pause; a typo such as 1e-6 would otherwise hold the next call for days.
MIN_CALLS_PER_SECOND = 1 / 60
# CNIL: data of people contacted for political communication is kept no longer than needed,
# at most 3 years after the last contact (as for prospects, CNIL référentiel "prospection");
# the default (730) is 2 years. Above 3 years the campaign must justify it: not configurable.
MAX_RETENTION_DAYS = 1095
DTMF_DIGITS = "0123456789"
CAP_PERIOD_DAYS = 30  # schedule.max_attempts_per_30_days counts over this rolling period


def _in_range(where: str, value: float, low: float, high: float | None, unit: str,
              *, low_open: bool = False) -> None:
    """ConfigError naming `where` when value is outside [low, high] ((low, high] if low_open)."""
    too_low = value <= low if low_open else value < low
    if too_low or (high is not None and value > high):
        lower = f"more than {_num(low)}" if low_open else f"at least {_num(low)}"
        upper = f" and at most {_num(high)}" if high is not None else ""
        raise ConfigError(f"{where} is {value!r}: use {lower}{upper} {unit}")


def _num(x: float) -> str:
    """A bound as the user writes it: 31622400, not 3.16224e+07."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def check_calls_per_second(where: str, value: float, top: float, source: str = "") -> None:
    """ConfigError naming `where` unless MIN_CALLS_PER_SECOND <= value <= top (NaN too);
    `source`: where `top` comes from, said after the range."""
    if not MIN_CALLS_PER_SECOND <= value <= top:
        raise ConfigError(f"{where} is {value!r}: use at least 1/60 (one call a minute) and at "
                          f"most {top:g} calls per second{source}")


NODE_NAME = re.compile(r"[a-z0-9_-]+")


def _validate_nodes(nodes: list[NodeConfig]) -> None:
    """Names key the stored attempts (calls.node) and the secret's variable: unique, plain."""
    seen: dict[str, str] = {}  # the secret's variable part (IVR_AMI_SECRET_<NAME>) -> name
    for i, node in enumerate(nodes):
        where = f"pbx.nodes[{i}]"
        if not NODE_NAME.fullmatch(node.name):
            raise ConfigError(f"{where}.name: {node.name!r} is not a node name: use lowercase "
                              "letters, digits, - and _ (e.g. pbx2)")
        # pbx-2 and pbx_2 both read IVR_AMI_SECRET_PBX_2: one host would get the other's secret
        var = node.name.upper().replace("-", "_")
        if var in seen:
            raise ConfigError(f"{where}.name: {node.name!r} is already the name of another "
                              f"node, or reads the same IVR_AMI_SECRET_{var} as "
                              f"{seen[var]!r}: give each node its own name")
        seen[var] = node.name
        check_host(f"{where}.host", node.host)
        _in_range(f"{where}.port", node.port, 1, 65535, "TCP port")
        _in_range(f"{where}.max_channels", node.max_channels, 0, None, "channels (0: no cap)")
        check_ami_user(f"{where}.user", node.user)
    _refuse_shared_address(nodes)


def _node_address(node: NodeConfig) -> tuple[str, int]:
    """Where a node's AMI is, spelt one way (localhost is 127.0.0.1, IPs in canonical form)."""
    host = node.host.lower().rstrip(".")
    host = "127.0.0.1" if host == "localhost" else host
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        pass  # a host name
    return host, node.port


def _refuse_shared_address(nodes: list[NodeConfig]) -> None:
    """Two nodes at one host:port are one Asterisk given each node's max_channels: it would get
    twice its cap. After the per-node checks, so a bad entry is named for its own fault."""
    seen: dict[tuple[str, int], int] = {}
    for i, node in enumerate(nodes):
        addr = _node_address(node)
        if addr in seen:
            j = seen[addr]
            shown = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
            raise ConfigError(f"pbx.nodes[{i}]: {node.name!r} is at {shown}:{addr[1]}, as "
                              f"pbx.nodes[{j}] {nodes[j].name!r}: one Asterisk would take both "
                              "nodes' max_channels; list it once, or give each node its own "
                              "host:port")
        seen[addr] = i


def _validate_flow(flow: Flow) -> None:
    keys = {flow.yes_key, flow.no_key, flow.optout_key}
    if len(keys) != 3 or not all(len(k) == 1 and k in "0123456789*#" for k in keys):
        raise ConfigError("flow: yes_key, no_key and optout_key must be three different DTMF keys")
    _in_range("flow.input_timeout_s", flow.input_timeout_s, 0, MAX_INPUT_TIMEOUT_S, "seconds",
              low_open=True)
    _in_range("flow.max_repeats", flow.max_repeats, 0, MAX_REPEATS, "repeats")
    from ivr.compliance.calling_rules import DEFAULT_SLOT_HOURS  # here: it imports this module
    for key, name in flow.slots.items():
        if len(key) != 1 or key not in DTMF_DIGITS:
            raise ConfigError(f"flow.slots: key {key!r} is not a single DTMF digit: use 0-9")
        # The slot question is asked after consent, so 1/2 may be reused; opt-out wins anywhere.
        if key == flow.optout_key:
            raise ConfigError(f"flow.slots: key {key!r} is flow.optout_key (opt-out wins at any "
                              "moment): pick another digit for this slot")
        if name not in DEFAULT_SLOT_HOURS:
            raise ConfigError(f"flow.slots.{key}: {name!r} is not a known slot: use one of "
                              f"{', '.join(DEFAULT_SLOT_HOURS)}")


def _validate_dialer(dialer: Dialer) -> None:
    if dialer.on_machine not in ("hangup", "legal"):
        raise ConfigError(f"dialer.on_machine: {dialer.on_machine!r} is not hangup or legal")
    _in_range("dialer.max_concurrent", dialer.max_concurrent, 1, None, "calls")
    check_calls_per_second("dialer.calls_per_second", dialer.calls_per_second,
                           MAX_CALLS_PER_SECOND)
    _in_range("dialer.ring_timeout_s", dialer.ring_timeout_s, 0, MAX_RING_TIMEOUT_S, "seconds",
              low_open=True)
    if dialer.drain_timeout_s is not None:
        _in_range("dialer.drain_timeout_s", dialer.drain_timeout_s, 0, None, "seconds",
                  low_open=True)
    check_dial_template(dialer.dial_string)


MAX_WEBHOOK_TIMEOUT_S = 60.0  # a receiver slower than this is down: retry later


# The only hosts a webhook may reach in plain http (outcomes carry phone numbers); the
# webhook client never sends to them through an environment proxy (records/webhooks.py).
PLAIN_HTTP_HOSTS = ("127.0.0.1", "::1", "localhost")
# A URL's authority (user-info@host:port) past its scheme (one if a slash follows) and slashes.
_AUTHORITY = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*:(?=/))?/*([^/?#]*)(.*)", re.S)


def _holds_credentials(url: str) -> bool:
    # A password holding / ? or # ends the authority there ('user:pass'), so a colon in it
    # (past an [IPv6]) and an @ anywhere after it count too: an @ after a :port is written %40.
    authority, rest = _AUTHORITY.match(url).groups()  # type: ignore[union-attr]
    colon = ":" in re.sub(r"^\[[^\]]*\]", "", authority)
    return "@" in authority or (colon and "@" in rest)


def _validate_webhooks(hooks: Webhooks) -> None:
    _in_range("webhooks.timeout_s", hooks.timeout_s, 0, MAX_WEBHOOK_TIMEOUT_S, "seconds",
              low_open=True)
    if not hooks.url:
        return
    if _holds_credentials(hooks.url):  # first, and no message quotes the URL
        raise ConfigError("webhooks.url holds credentials: remove them, the receiver checks "
                          "X-IVR-Signature (IVR_WEBHOOK_SECRET); an @ after a :port is written %40")
    from urllib.parse import urlsplit
    try:  # urlsplit refuses a broken [IPv6], .port a port not in 0-65535 or not digits
        parts = urlsplit(hooks.url)
        port = parts.port
    except ValueError as exc:  # its text quotes the port or netloc: not printed
        why = ("a broken [IPv6] host" if "IPv6" in str(exc) else "a bad port" if "Port" in
               str(exc) else "characters that are not allowed")
        raise ConfigError(f"webhooks.url cannot be read ({why}): use https://host/path, with "
                          "a port from 1 to 65535 if any") from None
    if port == 0:
        raise ConfigError("webhooks.url has port 0: use https://host/path, with a port from 1 "
                          "to 65535 if any")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"webhooks.url is not an http(s) URL (scheme {parts.scheme!r}): use "
                          "https://host/path")
    if parts.scheme == "http" and parts.hostname not in PLAIN_HTTP_HOSTS:
        raise ConfigError("webhooks.url: use https:// (outcomes carry phone numbers); plain "
                          "http only to this machine (127.0.0.1, localhost)")


def check_dial_template(template: str) -> None:
    """The one dial-string template check: at load, and again by each dial (a config built
    in code skips the load)."""
    if "{number}" not in template:
        raise ConfigError("dialer.dial_string must contain {number}, e.g. PJSIP/{number}@carrier")
    if any(c in template for c in "&|,\r\n"):
        raise ConfigError("dialer.dial_string must be a single channel: no &, |, comma or "
                          "newline (they would dial extra destinations)")


# A caller ID's own words: a tel: URI's scheme, an extension at its end (";ext=12", "x12")
_CALLER_WORDS = re.compile(r"^\s*tel:|[\s,;]*(?:ext(?:ension)?\s*[=.:]?|poste|x|p)\s*[0-9]{1,6}"
                           r"\s*$", re.IGNORECASE)
_LETTERS_AFTER_DIGIT = re.compile(r"[0-9].*?([^\W\d_]+)")


def _refuse_keypad_letters(caller_id: Any) -> None:
    """phonenumbers reads a letter as its keypad digit: a letter O typed for a zero made a
    number in ARCEP's ranges that is nobody's, or someone else's, and it passed the checks."""
    found = _LETTERS_AFTER_DIGIT.search(_CALLER_WORDS.sub("", caller_id)) \
        if isinstance(caller_id, str) else None
    if found:
        raise ConfigError(f"campaign.caller_id: {caller_id!r} has letters "
                          f"({found.group(1)!r}), which would be read as keypad digits (O as 6, "
                          "not 0): write the number in digits only")


def _validate_regions(cfg: Config) -> None:
    # An unknown region makes every national number unparseable: imports would reject them all.
    if not is_known_region(cfg.default_region):
        raise ConfigError(f"default_region: {cfg.default_region!r} is not a region phonenumbers "
                          "knows: use a two-letter ISO code such as FR")
    cfg.default_region = cfg.default_region.upper()  # phonenumbers wants FR, not fr
    for i, code in enumerate(cfg.contacts.allow_countries):
        if len(code) != 2 or not is_known_region(code):
            raise ConfigError(f"contacts.allow_countries[{i}]: {code!r} is not a two-letter ISO "
                              "region code phonenumbers knows: use e.g. GB or BE")
    cfg.contacts.allow_countries = [c.upper() for c in cfg.contacts.allow_countries]
    # Present the number the preflight checks, in E.164: Asterisk would send "+33 (0)1 62 .."
    # as +330162.., outside ARCEP's ranges. Anything phonenumbers cannot read stays as written,
    # for the preflight to refuse by name (masked, invalid).
    caller = e164(cfg.campaign.caller_id, cfg.default_region) if cfg.campaign.caller_id else None
    if caller is not None:  # read as a number: unreadable ones are the preflight's (masked)
        _refuse_keypad_letters(cfg.campaign.caller_id)
        cfg.campaign.caller_id = caller
