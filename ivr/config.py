"""Typed configuration loaded from config.yaml; every key has a compliant default."""
from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ivr.errors import ConfigError
from ivr.numbers import e164, is_known_region


@dataclass
class Campaign:
    name: str = "campaign"
    caller_id: str = ""
    caller_name: str = ""


@dataclass
class Legal:
    sender: str = ""
    postal_address: str = ""
    email: str = ""


@dataclass
class PromptSource:
    text: str | None = None
    text_file: str | None = None  # a text under prompts.sources_dir, read as `text`
    file: str | None = None
    transcript: str | None = None  # for a recorded file: what it says (legal checks need it)
    engine: str | None = None  # overrides prompts.engine for this prompt


@dataclass
class Prompts:
    sources_dir: str = "prompts"
    build_dir: str = "prompts/build"
    engine: str = "auto"
    language: str = "fr"
    gtts_tld: str = "fr"
    espeak_voice: str = "fr"
    max_duration_s: float = 120.0
    # Consent first: the intro is short (built duration, else estimated from its words).
    intro_max_s: float = 20.0
    # Every prompt ever built, by sha256 (proof of what a person heard); default
    # <build_dir's parent>/archive.
    archive_dir: str = ""
    items: dict[str, PromptSource] = field(default_factory=dict)


@dataclass
class Flow:
    yes_key: str = "1"
    no_key: str = "2"
    optout_key: str = "9"
    input_timeout_s: float = 5.0
    max_repeats: int = 2
    ask_slot: bool = True  # CNIL: the consent names a time slot; `ivr check` warns when off
    slots: dict[str, str] = field(
        default_factory=lambda: {"1": "morning", "2": "afternoon", "3": "evening"})


@dataclass
class Store:
    path: str = "ivr.db"
    # PostgreSQL instead of the SQLite file: postgresql://user@host:port/db. The password comes
    # from IVR_STORE_PASSWORD, libpq's environment or ~/.pgpass, never from here.
    url: str = ""
    # HMAC key of the opposition list, outside the store's folder (else IVR_OPTOUT_KEY).
    optout_key_file: str = ""


@dataclass
class NodeConfig:
    """One Asterisk of the pool (pbx.nodes[i]); its AMI secret comes from the environment."""
    name: str = ""
    host: str = "127.0.0.1"
    port: int = 5038
    user: str = "ivr"
    max_channels: int = 0  # 0: no cap of its own (dialer.max_concurrent still holds)


@dataclass
class Pbx:
    mode: str = "sandbox"
    host: str = "127.0.0.1"
    port: int = 5038
    user: str = "ivr"
    sandbox_dir: str = ".sandbox"
    sounds_dir: str = ""
    nodes: list[NodeConfig] = field(default_factory=list)  # empty: the one node above, "pbx"

    def node_list(self) -> list[NodeConfig]:
        """The pool; without pbx.nodes, the single block as one node named "pbx" (the name
        existing stores hold in calls.node)."""
        return self.nodes or [NodeConfig(SINGLE_NODE, self.host, self.port, self.user)]


@dataclass
class Agi:
    host: str = "127.0.0.1"
    port: int = 4573
    allowed_peers: list[str] = field(default_factory=lambda: ["127.0.0.1"])


@dataclass
class Dialer:
    max_concurrent: int = 20
    calls_per_second: float = 5.0
    ring_timeout_s: float = 30.0
    dial_string: str = "Local/{number}@ivr-sim"
    amd: bool = False  # off: ~5 s of dead air for a silent human (README)
    on_machine: str = "hangup"
    # How long a stop (Ctrl-C, SIGTERM) lets calls in flight finish before hanging them up;
    # unset: the longest possible call (ivr/campaign/deadline.py).
    drain_timeout_s: float | None = None


@dataclass
class RetryDelays:
    busy: float = 1800.0
    no_answer: float = 3600.0
    congestion: float = 600.0


@dataclass
class Retry:
    max_attempts: int = 3
    delay_s: RetryDelays = field(default_factory=RetryDelays)


@dataclass
class Window:
    days: str = "mon-fri"
    hours: list[str] = field(default_factory=lambda: ["10:00-13:00", "14:00-20:00"])


@dataclass
class Schedule:
    """Décret 2022-1313 defaults, adopted for political calls."""
    timezone: str = "Europe/Paris"
    windows: list[Window] = field(default_factory=lambda: [Window()])
    skip_holidays: bool = True
    holidays_country: str = "FR"
    max_attempts_per_30_days: int = 4
    refusal_cooldown_days: int = 60
    blackout_dates: list[str] = field(default_factory=list)
    demo_any_hour: bool = False  # only honoured for fiction numbers
    # The one way to run outside the décret limits: why, in words; printed by every check and run.
    override_reason: str = ""


@dataclass
class Retention:
    days: int = 730


@dataclass
class Contacts:
    # ISO region codes (e.g. GB, BE) whose numbers may be imported besides the French plan.
    allow_countries: list[str] = field(default_factory=list)


@dataclass
class Web:
    """`ivr web`: the console binds to loopback; put a TLS reverse proxy in front (README)."""
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass
class Webhooks:
    """Each outcome POSTed as JSON to `url`, signed with IVR_WEBHOOK_SECRET (records/)."""
    url: str = ""  # https (outcomes carry phone numbers); plain http only to this machine
    timeout_s: float = 5.0


@dataclass
class Db:
    """`ivr db up`: the sandbox's private PostgreSQL (ivr/store/pg_cluster.py), loopback only."""
    port: int = 55432
    dir: str = ""  # its data, socket and password; empty: <pbx.sandbox_dir>/pg


@dataclass
class Config:
    campaign: Campaign = field(default_factory=Campaign)
    legal: Legal = field(default_factory=Legal)
    prompts: Prompts = field(default_factory=Prompts)
    flow: Flow = field(default_factory=Flow)
    store: Store = field(default_factory=Store)
    pbx: Pbx = field(default_factory=Pbx)
    agi: Agi = field(default_factory=Agi)
    dialer: Dialer = field(default_factory=Dialer)
    retry: Retry = field(default_factory=Retry)
    schedule: Schedule = field(default_factory=Schedule)
    retention: Retention = field(default_factory=Retention)
    contacts: Contacts = field(default_factory=Contacts)
    db: Db = field(default_factory=Db)
    web: Web = field(default_factory=Web)
    webhooks: Webhooks = field(default_factory=Webhooks)
    default_region: str = "FR"
    base_dir: Path = field(default=Path("."), metadata={"internal": True})
    # the file and the bytes it was loaded from: a long-running process (the console) can tell
    # when the file changed under it
    source: tuple[Path, bytes] | None = field(default=None, metadata={"internal": True})

    def path(self, relative: str) -> Path:
        """Resolve a path from the config relative to the config file's folder."""
        p = Path(relative)
        return p if p.is_absolute() else self.base_dir / p


def _build(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        known = {f.name for f in dataclasses.fields(tp) if not f.metadata.get("internal")}
        kwargs = {}
        for key, sub in value.items():
            if key not in known:
                raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(sorted(known))})")
            kwargs[key] = _build(hints[key], sub, f"{where}.{key}")
        return tp(**kwargs)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _build(args[0], value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list")
        (item,) = typing.get_args(tp)
        return [_build(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping")
        _, vt = typing.get_args(tp)
        return {str(k): _build(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if tp is int and value != int(value):  # 2.5 repeats would be silently truncated
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return tp(value)
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{where}: expected text, got {value!r}")
        # YAML reads NO, yes, on, off as booleans (Norway's code became 'False'), +33162000000
        # as an integer without its '+', and 0162000000 as an octal integer
        if isinstance(value, bool):
            raise ConfigError(f"{where}: YAML read this as {str(value).lower()}: put the text "
                              "in quotes")
        if where.endswith(".caller_id") and isinstance(value, (int, float)):
            raise ConfigError(f"{where}: YAML read the number as {value!r}: put it in quotes, "
                              'e.g. "+33162000000"')
        return str(value)
    return value


def from_dict(data: dict[str, Any], base_dir: Path = Path(".")) -> Config:
    cfg = _build(Config, data or {}, "config")
    cfg.base_dir = base_dir
    _validate(cfg)
    _validate_store(cfg.store, (data or {}).get("store") or {})
    _read_text_files(cfg)
    return cfg


def _read_text_files(cfg: Config) -> None:
    """`text_file:` becomes the prompt's `text` (the texts live in prompts/, committed)."""
    for key, item in cfg.prompts.items.items():
        if item.text_file is None:
            continue
        where = f"prompts.items.{key}.text_file"
        if item.text is not None or item.file is not None:
            raise ConfigError(f"{where}: keep only one of text:, text_file: and file:")
        path = cfg.path(cfg.prompts.sources_dir) / item.text_file
        try:
            item.text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}: cannot read {path} ({exc.__class__.__name__}): give "
                              "a UTF-8 text file under prompts.sources_dir") from None


class _UniqueKeys(yaml.SafeLoader):
    """safe_load that refuses a key written twice in one mapping: YAML keeps the last, so a
    second `dialer:` block silently replaced the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be
                continue                                   # overridden, as YAML means them to
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: {key!r} is written "
                                  "twice in the same section: keep one")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load(path: str | Path) -> Config:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} not found: pass --config FILE or create ./config.yaml")
    if not p.is_file():
        raise ConfigError(f"config {p} is not a file: pass --config FILE (a YAML file)")
    raw = p.read_bytes()  # once: the bytes parsed are the bytes kept in `source`
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=_UniqueKeys) or {}
    except ConfigError as exc:  # a key written twice
        raise ConfigError(f"{p}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 (byte {exc.start}): save the file as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{at}: fix the syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections")
    cfg = from_dict(data, p.resolve().parent)
    cfg.source = (p.resolve(), raw)
    return cfg


def _validate(cfg: Config) -> None:
    _validate_flow(cfg.flow)
    if cfg.pbx.mode not in ("sandbox", "external"):
        raise ConfigError(f"pbx.mode: {cfg.pbx.mode!r} is not sandbox or external")
    _validate_dialer(cfg.dialer)
    if cfg.retry.max_attempts < 1:
        raise ConfigError("retry.max_attempts must be at least 1")
    for name in RetryDelays.__dataclass_fields__:
        _in_range(f"retry.delay_s.{name}", getattr(cfg.retry.delay_s, name), 0, None, "seconds")
    for where, port in (("pbx.port", cfg.pbx.port), ("agi.port", cfg.agi.port),
                        ("web.port", cfg.web.port)):
        _in_range(where, port, 1, 65535, "TCP port")
    _validate_nodes(cfg.pbx.nodes)
    _validate_peers(cfg.agi.allowed_peers)
    _in_range("db.port", cfg.db.port, 1, 65535, "TCP port")
    _in_range("retention.days", cfg.retention.days, 1, MAX_RETENTION_DAYS, "days")
    _validate_retention_lookback(cfg)
    if cfg.prompts.engine not in ("gtts", "espeak", "auto"):
        raise ConfigError(f"prompts.engine: {cfg.prompts.engine!r} is not gtts, espeak or auto")
    _in_range("prompts.intro_max_s", cfg.prompts.intro_max_s, 0, MAX_INTRO_S, "seconds",
              low_open=True)
    _validate_regions(cfg)
    _validate_webhooks(cfg.webhooks)


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


def _validate_store(store: Store, raw: dict[str, Any]) -> None:
    """store.url selects PostgreSQL, store.path (the default) SQLite: not both; no password."""
    if not store.url:
        return
    if "path" in raw:
        raise ConfigError("store: keep only one of path: (SQLite) and url: (PostgreSQL)")
    if not STORE_URL.fullmatch(store.url):
        raise ConfigError("store.url: not a PostgreSQL URL: use postgresql://user@host:port/db")
    if re.search(r"://[^/@]*:[^/@]*@", store.url) or "password=" in store.url:
        raise ConfigError("store.url holds a password: remove it and set IVR_STORE_PASSWORD "
                          "(or libpq's PGPASSWORD / ~/.pgpass)")


# Sane bounds: beyond them a value is a typo (or an attack on the callees), never a choice.
MAX_RING_TIMEOUT_S = 300.0  # 5 minutes of ringing; carriers give up well before
MAX_INPUT_TIMEOUT_S = 60.0  # a person who has not pressed a key in a minute will not
MAX_REPEATS = 5
MAX_INTRO_S = 30.0  # consent first: a longer intro is a message before the consent
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
        lower = f"more than {low:g}" if low_open else f"at least {low:g}"
        upper = f" and at most {high:g}" if high is not None else ""
        raise ConfigError(f"{where} is {value!r}: use {lower}{upper} {unit}")


def check_calls_per_second(where: str, value: float, top: float, source: str = "") -> None:
    """ConfigError naming `where` unless MIN_CALLS_PER_SECOND <= value <= top (NaN too);
    `source`: where `top` comes from, said after the range."""
    if not MIN_CALLS_PER_SECOND <= value <= top:
        raise ConfigError(f"{where} is {value!r}: use at least 1/60 (one call a minute) and at "
                          f"most {top:g} calls per second{source}")


SINGLE_NODE = "pbx"
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
        if not node.host or any(c.isspace() for c in node.host):
            raise ConfigError(f"{where}.host: {node.host!r} is not a host: give its address")
        _in_range(f"{where}.port", node.port, 1, 65535, "TCP port")
        _in_range(f"{where}.max_channels", node.max_channels, 0, None, "channels (0: no cap)")
        if not node.user:
            raise ConfigError(f"{where}.user: empty: give the node's AMI user")


def _validate_peers(peers: list[str]) -> None:
    """FastAGI admits these addresses or networks only: a host name cannot be matched (the
    server would refuse to start with a traceback)."""
    for i, peer in enumerate(peers):
        try:
            ipaddress.ip_network(peer, strict=False)
        except ValueError:
            raise ConfigError(f"agi.allowed_peers[{i}]: {peer!r} is not an IP address or "
                              "network: give the PBX's address, e.g. 10.0.0.5 or 10.0.0.0/24"
                              ) from None


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


def _validate_webhooks(hooks: Webhooks) -> None:
    _in_range("webhooks.timeout_s", hooks.timeout_s, 0, MAX_WEBHOOK_TIMEOUT_S, "seconds",
              low_open=True)
    if not hooks.url:
        return
    from urllib.parse import urlsplit
    parts = urlsplit(hooks.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"webhooks.url: {hooks.url!r} is not an http(s) URL: use "
                          "https://host/path")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        raise ConfigError("webhooks.url: use https:// (outcomes carry phone numbers); plain "
                          "http only to this machine (127.0.0.1, localhost)")
    if parts.username or parts.password:
        raise ConfigError("webhooks.url holds credentials: remove them; the receiver checks "
                          "X-IVR-Signature (IVR_WEBHOOK_SECRET) instead")


def check_dial_template(template: str) -> None:
    """The one dial-string template check: at load, and again by each dial (a config built
    in code skips the load)."""
    if "{number}" not in template:
        raise ConfigError("dialer.dial_string must contain {number}, e.g. PJSIP/{number}@carrier")
    if any(c in template for c in "&|,\r\n"):
        raise ConfigError("dialer.dial_string must be a single channel: no &, |, comma or "
                          "newline (they would dial extra destinations)")


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
    if caller is not None:
        cfg.campaign.caller_id = caller
