"""Typed configuration loaded from config.yaml; every key has a compliant default."""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ivr import config_yaml
from ivr.config_checks import validate, validate_store
from ivr.errors import ConfigError


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


SINGLE_NODE = "pbx"  # the name of the one node of a `pbx:` block without nodes


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
        if value is None:  # `schedule:` left with only comments: the section's defaults
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping (its keys on the lines under it), "
                              f"got {_shown(value)}")
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
            raise ConfigError(f"{where}: expected a list, got {_shown(value)}")
        (item,) = typing.get_args(tp)
        return [_build(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_shown(value)}")
        _, vt = typing.get_args(tp)
        return {str(k): _build(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value):
            raise ConfigError(f"{where}: expected a number, got {_shown(value)}"
                              f"{_as_number_hint(value)}")
        if tp is int and value != int(value):  # 2.5 repeats would be silently truncated
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return tp(value)
    if tp is str:
        if value is None:
            raise ConfigError(f"{where} is empty: give it a value")
        if isinstance(value, list):
            raise ConfigError(f"{where}: expected text, got a list: write it as one text, e.g. "
                              f'"{",".join(map(str, value))}"')
        if isinstance(value, dict):
            raise ConfigError(f"{where}: expected text, got a mapping")
        # YAML reads NO, yes, on, off as booleans (Norway's code became 'False'), +33162000000
        # as an integer without its '+', and 0162000000 as an octal integer
        if isinstance(value, bool):
            raise ConfigError(f"{where}: YAML read this as {str(value).lower()}: put the text "
                              "in quotes")
        if where.endswith(".caller_id") and isinstance(value, (int, float)):
            raise ConfigError(f"{where}: YAML read the number as {value!r}: put it in quotes, "
                              'e.g. "+33162000000"')
        text = getattr(value, "text", "")
        if text and text != str(value):  # 0755 read as 493, 0x1F as 31, 1_000 as 1000
            raise ConfigError(f"{where}: YAML read {text} as the number {value!r}: put it in "
                              f'quotes, e.g. "{text}"')
        return str(value)
    return value


def from_dict(data: dict[str, Any], base_dir: Path = Path(".")) -> Config:
    cfg = _build(Config, data or {}, "config")
    cfg.base_dir = base_dir
    validate(cfg)
    validate_store(cfg.store, (data or {}).get("store") or {})
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


def load(path: str | Path) -> Config:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} not found: pass --config FILE or create ./config.yaml")
    if not p.is_file():
        raise ConfigError(f"config {p} is not a file: pass --config FILE (a YAML file)")
    raw = p.read_bytes()  # once: the bytes parsed are the bytes kept in `source`
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=config_yaml.UniqueKeys) or {}
    except ConfigError as exc:  # a key written twice, or not a word
        raise ConfigError(f"{p}: {exc}") from None
    except RecursionError:  # thousands of nested brackets
        raise ConfigError(f"{p}: nested too deeply to be a config: fix the brackets") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 (byte {exc.start}): save the file as UTF-8") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML{_yaml_where(exc)}: fix the syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections")
    config_yaml.printable(data, "")
    cfg = from_dict(data, p.resolve().parent)
    cfg.source = (p.resolve(), raw)
    return cfg


def _shown(value: Any) -> str:
    """A config value as an operator wrote it, in words (never the YAML loader's classes)."""
    if value is None:
        return "nothing (empty)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"the text {str(value)!r}"


def _as_number_hint(value: Any) -> str:
    """YAML 1.1 reads 1e3 and 1.0e3 as text (its floats need a dot and a signed exponent)."""
    if not isinstance(value, str):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    return f": write it as {number:g}" if math.isfinite(number) else ""


def _yaml_where(exc: yaml.YAMLError) -> str:
    """Where PyYAML saw the mistake and what it was: the line it noticed it on is often the
    one after it (an unclosed bracket, a missing colon), so the line its context began on too."""
    marks = [getattr(exc, m, None) for m in ("context_mark", "problem_mark")]
    lines = sorted({m.line + 1 for m in marks if m is not None})
    at = "" if not lines else f" at line {lines[0]}" if len(lines) == 1 else \
        f" at lines {lines[0]}-{lines[-1]}"
    problem = str(getattr(exc, "problem", None) or "")
    why = "a tab: indent with spaces" if "'\\t'" in problem else problem.replace("\n", " ")
    return f"{at} ({why})" if why else at
