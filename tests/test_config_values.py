"""Config values the campaign cannot use are refused, each with its key named."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from ivr import config, config_checks
from ivr.compliance.calling_rules import DEFAULT_SLOT_HOURS
from ivr.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def refused(data: dict[str, Any], key: str) -> str:
    with pytest.raises(ConfigError) as info:
        config.from_dict(data)
    text = str(info.value)
    assert key in text and "\n" not in text, text
    return text


@pytest.mark.parametrize("name", ["", "   "])
def test_an_empty_campaign_name_is_refused(name: str) -> None:
    # found in review: lists, prompts and reports were bound to campaign '' and `ivr check`
    # said 0 error(s)
    assert "name the campaign" in refused({"campaign": {"name": name}}, "campaign.name")


@pytest.mark.parametrize("value", [-10, 0, 301, 1e9])
def test_ring_timeout_out_of_bounds(value: float) -> None:
    refused({"dialer": {"ring_timeout_s": value}}, "dialer.ring_timeout_s")


@pytest.mark.parametrize("value", [-1, 0, "soon"])
def test_drain_timeout_must_be_positive(value: Any) -> None:
    refused({"dialer": {"drain_timeout_s": value}}, "dialer.drain_timeout_s")


def test_drain_timeout_defaults_to_the_longest_call() -> None:
    assert config.from_dict({}).dialer.drain_timeout_s is None  # deadline.longest_call_s
    assert config.from_dict({"dialer": {"drain_timeout_s": 0.5}}).dialer.drain_timeout_s == 0.5


@pytest.mark.parametrize("value", [-3, 0, 61])
def test_input_timeout_out_of_bounds(value: float) -> None:
    refused({"flow": {"input_timeout_s": value}}, "flow.input_timeout_s")


@pytest.mark.parametrize("value", [-2, -1, 6])
def test_max_repeats_out_of_bounds(value: int) -> None:
    refused({"flow": {"max_repeats": value}}, "flow.max_repeats")


def test_max_repeats_must_be_whole() -> None:
    refused({"flow": {"max_repeats": 2.5}}, "flow.max_repeats")


@pytest.mark.parametrize("key", ["busy", "no_answer", "congestion"])
def test_negative_retry_delay(key: str) -> None:
    refused({"retry": {"delay_s": {key: -60}}}, f"retry.delay_s.{key}")


@pytest.mark.parametrize("value", [-1, 0, 1096, 3650])
def test_retention_outside_one_day_to_three_years(value: int) -> None:
    text = refused({"retention": {"days": value}}, "retention.days")
    assert "1095" in text


@pytest.mark.parametrize(("section", "value"), [
    ("pbx", 999999), ("pbx", 0), ("pbx", -1), ("agi", 65536), ("agi", 0)])
def test_port_outside_1_to_65535(section: str, value: int) -> None:
    refused({section: {"port": value}}, f"{section}.port")


@pytest.mark.parametrize("value", [0, -5, 201, 1e9, 1e-300, 5e-324, 0.01])
def test_calls_per_second_out_of_bounds(value: float) -> None:
    text = refused({"dialer": {"calls_per_second": value}}, "dialer.calls_per_second")
    assert "at least 1/60 (one call a minute) and at most 200 calls per second" in text


def test_calls_per_second_down_to_one_call_a_minute() -> None:
    assert config.from_dict({"dialer": {"calls_per_second": 1 / 60}}).dialer.calls_per_second \
        == 1 / 60


@pytest.mark.parametrize("value", [0, -1])
def test_max_concurrent_below_one(value: int) -> None:
    refused({"dialer": {"max_concurrent": value}}, "dialer.max_concurrent")


@pytest.mark.parametrize("value", ["ZZ", "XX", "France", "001"])
def test_default_region_phonenumbers_does_not_know(value: str) -> None:
    refused({"default_region": value}, "default_region")


def test_default_region_is_upper_cased() -> None:
    assert config.from_dict({"default_region": "be"}).default_region == "BE"


@pytest.mark.parametrize("value", [["ZZ"], ["GB", "UK"], ["GBR"], ["fr-FR"]])
def test_allow_countries_must_be_known_iso_codes(value: list[str]) -> None:
    refused({"contacts": {"allow_countries": value}}, "contacts.allow_countries")


def test_allow_countries_defaults_empty_and_accepts_known_codes() -> None:
    assert config.from_dict({}).contacts.allow_countries == []
    cfg = config.from_dict({"contacts": {"allow_countries": ["gb", "BE"]}})
    assert cfg.contacts.allow_countries == ["GB", "BE"]


@pytest.mark.parametrize("name", ["night", "Morning", "lunch", ""])
def test_slot_name_outside_the_known_set(name: str) -> None:
    text = refused({"flow": {"slots": {"1": "morning", "2": name}}}, "flow.slots")
    assert "morning" in text


@pytest.mark.parametrize("key", ["12", "a", "*", "", " "])
def test_slot_key_that_is_not_one_digit(key: str) -> None:
    refused({"flow": {"slots": {key: "morning"}}}, "flow.slots")


def test_slot_key_equal_to_the_opt_out_key() -> None:
    text = refused({"flow": {"slots": {"9": "evening"}}}, "flow.slots")
    assert "optout_key" in text
    refused({"flow": {"optout_key": "3"}}, "flow.slots")  # default slot 3 = evening


def test_known_slot_names_are_the_calling_rules_ones() -> None:
    cfg = config.from_dict({"flow": {"slots": {str(i + 3): n for i, n in enumerate(DEFAULT_SLOT_HOURS)}}})
    assert sorted(cfg.flow.slots.values()) == sorted(DEFAULT_SLOT_HOURS)


@pytest.mark.parametrize("value", [".inf", ".nan"])
def test_non_finite_numbers_are_refused(value: str, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"dialer:\n  ring_timeout_s: {value}\n")
    with pytest.raises(ConfigError, match="dialer.ring_timeout_s"):
        config.load(path)


def test_shipped_and_test_configs_stay_valid() -> None:
    assert config.load(REPO / "config.yaml").campaign.name
    assert config.from_dict({}).pbx.mode in ("sandbox", "external")
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from integration.conftest import itest_config_dict
    finally:
        sys.path.remove(str(REPO / "tests"))
    assert config.from_dict(itest_config_dict(REPO)).campaign.name
    big = config.from_dict(itest_config_dict(REPO, dialer__max_concurrent=60,
                                             dialer__calls_per_second=60))
    assert (big.dialer.max_concurrent, big.dialer.calls_per_second) == (60, 60)


def test_bounds_themselves_are_accepted() -> None:
    top = config.from_dict({
        "dialer": {"ring_timeout_s": 300, "calls_per_second": 200, "max_concurrent": 1},
        "flow": {"input_timeout_s": 60, "max_repeats": 0},
        "retry": {"delay_s": {"busy": 0}}, "retention": {"days": 1095},
        "pbx": {"port": 65535}, "agi": {"port": 1}})
    assert (top.dialer.ring_timeout_s, top.dialer.calls_per_second, top.retention.days,
            top.pbx.port, top.agi.port, top.retry.delay_s.busy) == (300, 200, 1095, 65535, 1, 0)
    low = config.from_dict({"retention": {"days": 60}, "flow": {"max_repeats": 5}})
    assert (low.retention.days, low.flow.max_repeats) == (60, 5)


@pytest.mark.parametrize(("text", "key"), [
    ("campaign: {caller_id: +33162000000}", "campaign.caller_id"),   # an integer, '+' lost
    ("campaign: {caller_id: 0162000000}", "campaign.caller_id"),     # an octal integer
    ("contacts: {allow_countries: [BE, NO]}", "contacts.allow_countries[1]")])  # Norway: false
def test_yaml_scalars_that_are_not_the_text_written_are_refused(text: str, key: str) -> None:
    import yaml
    assert "quotes" in refused(yaml.safe_load(text), key)


def test_a_quoted_caller_id_and_a_numeric_name_are_kept() -> None:
    import yaml
    cfg = config.from_dict(yaml.safe_load('campaign: {caller_id: "+33162000000", name: 2026}'))
    assert (cfg.campaign.caller_id, cfg.campaign.name) == ("+33162000000", "2026")


@pytest.mark.parametrize("caller_id", ["+33 1 62 OO OO OO", "01 62 OO OO 00",
                                       "+33 1 63 1O 2O 3O"])
def test_a_caller_id_with_letters_among_its_digits_is_refused(caller_id: str) -> None:
    """Found by a probe: phonenumbers reads a letter as its keypad digit, so a letter O typed
    for a zero became +33162666666, in ARCEP's ranges and nobody's, and passed every check.
    Letters that make no number ("anonymous") are the preflight's: masked or invalid."""
    text = refused({"campaign": {"caller_id": caller_id}}, "campaign.caller_id")
    assert "keypad" in text and "digits only" in text


@pytest.mark.parametrize("caller_id", ["tel:+33162000000", "+33 (0)1 62 00 00 00",
                                       "+33162000000;ext=12", "01 62 00 00 00 x12"])
def test_a_caller_id_s_own_words_are_no_letters(caller_id: str) -> None:
    assert config.from_dict({"campaign": {"caller_id": caller_id}}).campaign.caller_id == \
        "+33162000000"


def test_two_node_names_that_read_one_secret_variable_are_refused() -> None:
    """pbx-2 and pbx_2 both read IVR_AMI_SECRET_PBX_2: one host would be sent the other's."""
    text = refused({"pbx": {"nodes": [{"name": "pbx-2"}, {"name": "pbx_2"}]}},
                   "pbx.nodes[1].name")
    assert "IVR_AMI_SECRET_PBX_2" in text and "'pbx-2'" in text


def test_an_allowed_peer_must_be_an_address_or_a_network() -> None:
    text = refused({"agi": {"allowed_peers": ["127.0.0.1", "asterisk.local"]}},
                   "agi.allowed_peers[1]")
    assert "'asterisk.local'" in text
    config.from_dict({"agi": {"host": "::1", "allowed_peers": ["10.0.0.0/24", "::1"]}})


def test_a_config_that_is_a_folder_or_not_utf8_is_one_line(tmp_path: Path) -> None:
    for path, key in ((tmp_path, "not a file"), (tmp_path / "latin1.yaml", "not UTF-8")):
        if path.suffix:
            path.write_bytes("campaign: {name: \"été\"}\n".encode("latin-1"))
        with pytest.raises(ConfigError) as err:
            config.load(path)
        assert key in str(err.value) and "\n" not in str(err.value)


def test_ivr_web_refuses_a_port_outside_1_to_65535(cfg_file: Path) -> None:
    """uvicorn took 99999 modulo 65536 and listened on 34463 while printing :99999."""
    from click.testing import CliRunner

    from ivr.cli import cli
    result = CliRunner().invoke(cli, ["--config", str(cfg_file), "web", "--port", "99999"])
    assert result.exit_code == 2 and "99999 is not in the range 1<=x<=65535" in result.output


def test_a_section_written_twice_is_refused_not_merged_silently(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("dialer:\n  max_concurrent: 5\ncampaign:\n  name: x\n"
                    "dialer:\n  max_concurrent: 20\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert str(err.value) == (f"{path}: line 5: 'dialer' is written twice in the same section: "
                              "keep one")


@pytest.mark.parametrize(("text", "said"), [
    ("? [1, 2]\n: x\n", "line 1: a key must be a word, not a list: write `name: value`"),
    ("campaign:\n  ? {a: 1}\n  : x\n", "line 2: a key must be a word, not a dict"),
    ("a: " + "[" * 5000 + "\n", "nested too deeply to be a config: fix the brackets"),
    ('store:\n  path: "a\\0b"\n', "store.path: holds a NUL or an invalid character"),
    ('campaign:\n  name: "\\ud800"\n', "campaign.name: holds a NUL or an invalid character"),
    ('pbx:\n  nodes:\n    - name: "n\\0"\n', "pbx.nodes[0].name: holds a NUL"),
    ('store:\n  path: ""\n', "store.path is empty: give the SQLite file's path"),
])
def test_yaml_the_loader_takes_but_no_config_can_hold_is_one_line(
        tmp_path: Path, text: str, said: str) -> None:
    """Each gave a traceback (unhashable key, RecursionError, embedded null byte, a surrogate
    that cannot be encoded) or, for the empty path, an error naming no key."""
    path = tmp_path / "odd.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert said in str(err.value) and "\n" not in str(err.value)


def test_yaml_merge_keys_still_load_and_may_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text("pbx:\n  mode: external\n  nodes:\n    - &n1\n      name: n1\n"
                    "      host: 127.0.0.1\n      port: 5038\n      user: ivr\n"
                    "    - <<: *n1\n      name: n2\n      port: 5039\n", encoding="utf-8")
    cfg = config.load(path)
    assert [(n.name, n.port, n.host) for n in cfg.pbx.nodes] == [
        ("n1", 5038, "127.0.0.1"), ("n2", 5039, "127.0.0.1")]


def test_a_refusal_cooldown_longer_than_any_retention_is_refused_by_name() -> None:
    """A 10-year cooldown cannot hold: purge deletes refusals after 3 years at most."""
    text = refused({"schedule": {"refusal_cooldown_days": 3650}, "retention": {"days": 1095}},
                   "schedule.refusal_cooldown_days")
    assert "at most 1095" in text
    cfg = config.from_dict({"schedule": {"refusal_cooldown_days": 1095},
                            "retention": {"days": 1095}})
    assert config_checks.rules_lookback_days(cfg.schedule) == 1095


@pytest.mark.parametrize(("data", "key"), [
    ({"pbx": {"user": "ivr\n[admin]\nsecret = x\nread = all"}}, "pbx.user"),
    ({"pbx": {"user": "ivr]"}}, "pbx.user"),
    ({"pbx": {"host": "127.0.0.1\n[x]"}}, "pbx.host"),
    ({"agi": {"host": "127.0.0.1\n[ivr-outbound]"}}, "agi.host"),
    ({"agi": {"host": "pbx;1"}}, "agi.host"),
    ({"web": {"host": ""}}, "web.host"),
    ({"pbx": {"nodes": [{"name": "a", "host": "h", "user": "u=x"}]}}, "pbx.nodes[0].user"),
    ({"pbx": {"nodes": [{"name": "a", "host": "h..example"}]}}, "pbx.nodes[0].host"),
    # ipaddress takes any IPv6 zone id: the text after % must stay plain
    ({"agi": {"host": "::1%x\n[ivr-outbound]\nexten => _X.,1,Hangup()\n;"}}, "agi.host"),
    ({"pbx": {"user": "ivr;x"}}, "pbx.user"),
])
def test_hosts_and_ami_users_cannot_write_into_the_pbx_config(data: dict[str, Any],
                                                                key: str) -> None:
    """They land in the sandbox's manager.conf and extensions.conf: a newline or a bracket
    would add an AMI user or a dialplan section."""
    refused(data, key)


def test_ordinary_hosts_and_users_are_accepted() -> None:
    cfg = config.from_dict({"pbx": {"host": "pbx1.example.org", "user": "ivr_ctl-2.a"},
                            "agi": {"host": "::1"}, "web": {"host": "0.0.0.0"}})
    assert (cfg.pbx.host, cfg.pbx.user, cfg.agi.host) == ("pbx1.example.org", "ivr_ctl-2.a",
                                                          "::1")
    # compose container names, an AMI user with @, a zone id
    cfg = config.from_dict({"pbx": {"host": "ivr_asterisk_1", "user": "ivr@campaign",
                                    "nodes": [{"name": "a", "host": "pbx_1.lan"}]},
                            "agi": {"host": "fe80::1%eth0"}})
    assert (cfg.pbx.nodes[0].host, cfg.pbx.user, cfg.agi.host) == (
        "pbx_1.lan", "ivr@campaign", "fe80::1%eth0")


def test_deleting_the_demo_any_hour_line_keeps_the_schedule_defaults(tmp_path: Path) -> None:
    # the README's step for a real campaign: `schedule:` is left with only its comments (None)
    shipped = (REPO / "config.yaml").read_text(encoding="utf-8")
    assert "  demo_any_hour: true\n" in shipped
    edited = tmp_path / "config.yaml"
    edited.write_text(shipped.replace("  demo_any_hour: true\n", ""), encoding="utf-8")
    for name in ("prompts", "contacts"):  # relative folders the config may read from
        if (REPO / name).exists():
            (tmp_path / name).symlink_to(REPO / name)
    cfg = config.load(edited)
    assert cfg.schedule == config.Schedule() and not cfg.schedule.demo_any_hour
    assert config.from_dict({"web": None, "retry": None}).web == config.Web()


@pytest.mark.parametrize("data, key", [({"default_region": None}, "config.default_region"),
                                       ({"contacts": {"allow_countries": None}},
                                        "config.contacts.allow_countries")])
def test_an_empty_scalar_or_list_is_still_refused(data: dict[str, Any], key: str) -> None:
    refused(data, key)


@pytest.mark.parametrize(("text", "said"), [
    ("dialer:\n\tmax_concurrent: 20\n", "at line 2 (a tab: indent with spaces)"),
    ("dialer:\n  slots: [20\n", "at lines 2-3 (expected ',' or ']', but got '<stream end>')"),
])
def test_a_yaml_mistake_says_where_it_began_and_what_it_is(tmp_path: Path, text: str,
                                                           said: str) -> None:
    """Before: only the line PyYAML noticed it on, often the one after the mistake, and
    "fix the syntax" for a tab as for anything else."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert str(err.value) == f"{path}: not valid YAML {said}: fix the syntax"


@pytest.mark.parametrize(("data", "said"), [
    # before: "got _Int", the YAML loader's own class
    ({"retry": {"delay_s": 600}}, "config.retry.delay_s: expected a mapping (its keys on the "
                                  "lines under it), got the number 600"),
    # YAML 1.1 reads 1.0e3 as text: before, "got '1.0e3'" and no way out
    ({"dialer": {"ring_timeout_s": "1.0e3"}}, "config.dialer.ring_timeout_s: expected a "
                                              "number, got the text '1.0e3': write it as 1000"),
    # `name:` left empty: before, "expected text, got None"
    ({"campaign": {"name": None}}, "config.campaign.name is empty: give it a value"),
    ({"pbx": {"nodes": 3}}, "config.pbx.nodes: expected a list, got the number 3"),
    ({"schedule": {"windows": [{"days": ["mon", "tue"]}]}},
     'config.schedule.windows[0].days: expected text, got a list: write it as one text, e.g. '
     '"mon,tue"'),
])
def test_a_value_of_the_wrong_kind_is_said_in_the_operators_words(data: dict[str, Any],
                                                                  said: str) -> None:
    assert refused(data, said) == said
