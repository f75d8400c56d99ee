"""`ivr check` asks each PBX node over AMI whether it takes this controller's calls.

Before, it never contacted the PBX: an AMI user without the originate write class, a missing
`#include ivr/ivr-outbound.conf` or a `[globals] IVR_AGI_URL` on another port all gave
"0 error(s)". The judgement of the replies is pure (ivr/telephony/pbx_probe.py `judge`); the
CLI tests run `ivr check` against nothing and against the fake PBX (which knows none of the
probe's actions: "not checked", never an error). The real Asterisk:
tests/integration/test_pbx_probe_sandbox.py.
"""
from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import ports
from ivr import config
from ivr.cli import cli
from ivr.prompts.build import build_prompts
from ivr.telephony.fake_pbx import FakePbx

URL = "agi://127.0.0.1:4573"
SECRET = "probe-test-secret"


@pytest.fixture
def probe() -> ModuleType:
    """Imported here, not at the top: the CLI tests below also run on the code before it."""
    from ivr.telephony import pbx_probe
    return pbx_probe


def commands(*actions: str) -> dict[str, str]:
    """A ListCommands reply: one field per action the user may send."""
    return {"Response": "Success", **{a: f"{a} (Priv: x)" for a in actions}}


OK = {"Response": "Success", "Message": "DialPlan list will follow"}


def replies(probe: ModuleType, **changes: Any) -> Any:
    """A correctly set-up node's replies, with `changes`."""
    fields: dict[str, Any] = {
        "commands": commands("Login", "Originate", "Hangup", "CoreShowChannels", "Getvar",
                             "DBGetTree"),
        "contexts": {c: OK for c in probe.CONTEXTS},
        "agi_url": {"Response": "Success", "Variable": "IVR_AGI_URL", "Value": URL},
        "optout_digit": {"Response": "Success", "Variable": "IVR_OPTOUT_DIGIT", "Value": "9"}}
    return probe.NodeReplies(**(fields | changes))


def judged(probe: ModuleType, sandbox: bool = False, optout_key: str = "9",
           **changes: Any) -> list[Any]:
    return probe.judge(probe.Target("n1", "ivr", URL, sandbox, optout_key),
                       replies(probe, **changes))


def errors(found: list[Any]) -> list[str]:
    return [f.message for f in found if f.severity == "error"]


def test_a_correct_node_says_nothing(probe: ModuleType) -> None:
    assert judged(probe) == []


def test_a_user_without_the_originate_class_is_an_error_naming_the_write_line(
        probe: ModuleType) -> None:
    (line,) = errors(judged(probe, commands=commands("Hangup", "CoreShowChannels")))
    assert line.startswith("node n1: AMI user 'ivr' lacks the originate write class "
                           "(Originate refused: no call can be placed)"), line
    assert "`write = originate,call,reporting` in its [ivr] section of manager.conf" in line
    assert "manager reload" in line and "\n" not in line
    (line,) = errors(judged(probe, commands=commands("Originate")))
    assert "lacks the call,reporting write class (Hangup, CoreShowChannels refused" in line


def test_an_asterisk_without_dbgettree_is_an_error_naming_the_versions(
        probe: ModuleType) -> None:
    """CoreShowChannels allowed: `reporting` is there, so the action is missing from this
    Asterisk, and the failsafes would confirm oppositions no controller can read."""
    found = judged(probe, commands=commands("Originate", "Hangup", "CoreShowChannels"))
    assert [(f.code, f.severity) for f in found] == [("pbx_journal", "error")]
    assert found[0].message.startswith("node n1: this Asterisk has no DBGetTree AMI action: ")
    assert "never reach the opposition list" in found[0].message
    assert "16.28, 18.14, 19.6 or later" in found[0].message and "\n" not in found[0].message


@pytest.mark.parametrize("context, include, harm", [
    ("ivr-outbound", "ivr/ivr-outbound.conf", "no call could be placed into it"),
    ("ivr-callback", "ivr/ivr-callback.conf", "the opposition line would not answer")])
def test_a_missing_context_names_the_include_and_the_reload(
        probe: ModuleType, context: str, include: str, harm: str) -> None:
    missing = {"Response": "Error", "Message": f"Did not find context {context}"}
    contexts = {c: OK for c in probe.CONTEXTS} | {context: missing}
    assert errors(judged(probe, contexts=contexts)) == [
        f"node n1: context {context} not found ({harm}): add `#include {include}` to "
        "extensions.conf, then `dialplan reload`"]


def test_an_agi_url_on_another_port_names_both_values(probe: ModuleType) -> None:
    wrong = {"Response": "Success", "Value": "agi://127.0.0.1:4583"}
    (line,) = errors(judged(probe, agi_url=wrong))
    assert line == ("node n1: [globals] IVR_AGI_URL is agi://127.0.0.1:4583, not this "
                    f"controller's {URL} (agi.host:agi.port): every opposition-line call would "
                    f"fail: set `IVR_AGI_URL = {URL}` in the [globals] of extensions.conf, then "
                    "`dialplan reload`")
    (line,) = errors(judged(probe, agi_url={"Response": "Success", "Value": ""}))
    assert line.startswith("node n1: [globals] IVR_AGI_URL is not set"), line
    (line,) = errors(judged(probe, agi_url={"Response": "Success", "Value": "127.0.0.1:4573"}))
    assert "is 127.0.0.1:4573, not this controller's" in line  # no agi://: not a FastAGI URL


@pytest.mark.parametrize("value", ["agi://localhost:4573", "agi://127.0.0.1", " " + URL])
def test_the_same_address_written_otherwise_is_accepted(probe: ModuleType, value: str) -> None:
    assert judged(probe, agi_url={"Response": "Success", "Value": value}) == []


def test_another_hosts_agi_url_is_a_warning(probe: ModuleType) -> None:
    """Several controllers: the opposition line is served by one of them, named there."""
    found = judged(probe, agi_url={"Response": "Success", "Value": "agi://10.0.0.3:4573"})
    assert errors(found) == [] and len(found) == 1 and found[0].severity == "warning"
    assert "agi://10.0.0.3:4573" in found[0].message and URL in found[0].message


def test_the_sandbox_is_told_to_run_pbx_up(probe: ModuleType) -> None:
    wrong = {"Response": "Success", "Value": "agi://127.0.0.1:4610"}
    (line,) = errors(judged(probe, sandbox=True, agi_url=wrong))
    assert line.endswith("every opposition-line call would fail: run `ivr pbx up` with this "
                         "config"), line


def test_the_opposition_lines_key_is_checked_against_the_campaigns(probe: ModuleType) -> None:
    """The line's failsafe takes 1 or [globals] IVR_OPTOUT_DIGIT (9 unset): a campaign whose
    intro teaches 8 is warned, since its callees' 8 would not be journaled there."""
    unset = {"Response": "Success", "Variable": "IVR_OPTOUT_DIGIT", "Value": ""}
    assert judged(probe, optout_digit=unset) == []  # 9 either way
    eight = {"Response": "Success", "Variable": "IVR_OPTOUT_DIGIT", "Value": "8"}
    assert judged(probe, optout_key="8", optout_digit=eight) == []
    (found,) = judged(probe, optout_key="8", optout_digit=unset)
    assert (found.code, found.severity) == ("pbx_optout_digit", "warning")
    assert found.message == (
        "node n1: [globals] IVR_OPTOUT_DIGIT is not set (9 then), not this campaign's "
        "flow.optout_key '8': a caller who presses 8 on the opposition line while no "
        "controller answers hears the legal mentions and is not put on the opposition list: "
        "set `IVR_OPTOUT_DIGIT = 8` in the [globals] of extensions.conf, then `dialplan reload`")
    (found,) = judged(probe, sandbox=True, optout_key="7", optout_digit=eight)
    assert found.message.startswith("node n1: [globals] IVR_OPTOUT_DIGIT is '8', not this "
                                    "campaign's flow.optout_key '7'"), found.message
    assert found.message.endswith(": run `ivr pbx up` with this config"), found.message


def test_actions_the_pbx_does_not_know_are_not_checked_in_one_warning(
        probe: ModuleType) -> None:
    """The fake PBX answers "Invalid/unknown command" to them: never an error."""
    unknown = {"Response": "Error", "Message": "Invalid/unknown command"}
    found = judged(probe, commands=unknown, contexts={c: unknown for c in probe.CONTEXTS},
                   agi_url=unknown, optout_digit=unknown)
    assert [(f.code, f.severity) for f in found] == [("pbx_not_checked", "warning")]
    assert found[0].message == (
        "node n1: the AMI user's write classes, context ivr-outbound, context ivr-callback, "
        "[globals] IVR_AGI_URL, [globals] IVR_OPTOUT_DIGIT not checked: this PBX does not "
        "know the AMI action")


def test_denied_or_unanswered_actions_are_not_checked(probe: ModuleType) -> None:
    denied = {"Response": "Error", "Message": "Permission denied"}
    found = judged(probe, contexts={c: denied for c in probe.CONTEXTS}, agi_url=None)
    assert errors(found) == [] and len(found) == 2, found
    assert "may not ask (add reporting to its write classes" in found[0].message
    assert found[1].message == "node n1: [globals] IVR_AGI_URL not checked: no reply in time"


def test_an_unreachable_pbx_is_an_error_only_where_the_run_would_refuse(
        probe: ModuleType, tmp_path: Path) -> None:
    single = config.from_dict({"pbx": {"mode": "external", "port": 5999}}, tmp_path)
    node = single.pbx.node_list()[0]
    found = probe.unreachable(single, node, others_up=False)
    assert found.severity == "error" and found.message == (
        "node pbx: AMI unreachable at 127.0.0.1:5999 (connection refused): start its Asterisk "
        "or correct pbx.host/pbx.port")
    assert probe.unreachable(single, node, others_up=True).severity == "warning"  # a pool's
    sandbox = config.from_dict({"pbx": {"port": 5999}}, tmp_path)
    found = probe.unreachable(sandbox, node, others_up=False)
    assert found.severity == "warning" and found.message.startswith(
        "PBX not checked: node pbx: AMI unreachable at 127.0.0.1:5999")


def test_a_sandbox_not_started_for_this_config_is_not_asked(
        probe: ModuleType, tmp_path: Path) -> None:
    cfg = config.from_dict({"pbx": {"sandbox_dir": str(tmp_path / "sb")}}, tmp_path)
    (found,) = probe.probe_pbx(cfg)
    assert found.severity == "warning" and found.message.startswith(
        "PBX not checked: the sandbox is not running"), found
    assert not (tmp_path / "sb").exists()  # no secret made for it


def test_the_fake_pbx_is_probed_with_the_runs_secret_and_not_checked(
        probe: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_AMI_SECRET", SECRET)

    async def main() -> list[Any]:
        async with FakePbx(user="ivr", secret=SECRET) as pbx:
            cfg = config.from_dict({"pbx": {"mode": "external", "port": pbx.ami_port}},
                                   tmp_path)
            found = await probe.probe_nodes(cfg)
            assert [a["Action"] for a in pbx.actions][:2] == ["Login", "ListCommands"]
            return found

    found = asyncio.run(main())
    assert [(f.code, f.severity) for f in found] == [("pbx_not_checked", "warning")], found


# -- `ivr check` -----------------------------------------------------------------------------
def free_port() -> int:
    return ports.free_port()  # below the ephemeral range (tests/ports.py)


@contextmanager
def fake_pbx_thread() -> Iterator[FakePbx]:
    """The fake PBX on its own loop in a thread: `ivr check` runs its own loop."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    box: list[FakePbx] = []

    async def serve() -> None:
        async with FakePbx(user="ivr", secret=SECRET) as pbx:
            box.append(pbx)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(10)
        yield box[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def external(cfg_file: Path, port: int) -> Path:
    """The shipped campaign (built) on an external PBX at 127.0.0.1:`port`."""
    data = yaml.safe_load(cfg_file.read_text())
    data["pbx"] |= {"mode": "external", "port": port, "sounds_dir": str(cfg_file.parent)}
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True))
    build_prompts(config.load(cfg_file))
    return cfg_file


def check(cfg_file: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["--config", str(cfg_file), "check"])
    return result.exit_code, result.output.splitlines()


def test_ivr_check_refuses_an_external_pbx_nobody_answers_at(
        cfg_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: "0 error(s)", exit 0, and `ivr run` then failed to connect."""
    monkeypatch.setenv("IVR_AMI_SECRET", SECRET)
    port = free_port()
    code, out = check(external(cfg_file, port))
    assert code == 1 and (
        f"error pbx_unreachable: node pbx: AMI unreachable at 127.0.0.1:{port} (connection "
        "refused): start its Asterisk or correct pbx.host/pbx.port") in out, out


def test_ivr_check_logs_in_with_the_runs_secret(
        cfg_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with fake_pbx_thread() as pbx:
        monkeypatch.setenv("IVR_AMI_SECRET", "not-" + SECRET)
        code, out = check(external(cfg_file, pbx.ami_port))
        assert code == 1 and (f"error pbx_ami_login: node pbx: AMI login refused at "
                              f"127.0.0.1:{pbx.ami_port}: check pbx.user and IVR_AMI_SECRET "
                              "(IVR_AMI_SECRET_PBX is not set)") in out, out
        assert not any(SECRET in line for line in out)  # never a secret printed
        monkeypatch.setenv("IVR_AMI_SECRET", SECRET)
        code, out = check(cfg_file)
        assert code == 0 and not [line for line in out if "pbx_ami" in line], out
        assert any(line.startswith("warning pbx_not_checked: node pbx:") for line in out), out
        assert pbx.logins == 1


def test_ivr_check_names_each_node_of_a_pool_with_its_keys_unmangled(
        cfg_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both down: the run would refuse. The brackets reach the terminal (rich took
    "[globals]" or "[a]" for markup and dropped them)."""
    monkeypatch.setenv("IVR_AMI_SECRET", SECRET)
    ports = [free_port(), free_port()]
    data = yaml.safe_load(external(cfg_file, ports[0]).read_text())
    data["pbx"]["nodes"] = [{"name": n, "host": "127.0.0.1", "port": p}
                            for n, p in zip("ab", ports)]
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True))
    code, out = check(cfg_file)
    assert code == 1 and [line for line in out if "pbx_" in line] == [
        f"error pbx_unreachable: node {n}: AMI unreachable at 127.0.0.1:{p} (connection "
        f"refused): start its Asterisk or correct pbx.nodes[{n}].host/port"
        for n, p in zip("ab", ports)], out


def test_another_port_here_is_a_warning_when_a_fastagi_listens_there(probe: ModuleType) -> None:
    """Two controllers on one machine share a PBX (each its own agi.port), the opposition line
    served by one: the other's check is warned, not failed. Nothing listening there: every
    opposition-line call fails, an error (hunt-admin's case)."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        other = f"agi://127.0.0.1:{srv.getsockname()[1]}"
        replies = probe.NodeReplies(agi_url={"Response": "Success", "Value": other})
        seen = asyncio.run(probe._with_listening(replies, URL)).agi_url
        assert seen["Listening"] is True
        found = judged(probe, agi_url=seen)
        assert errors(found) == [] and len(found) == 1 and found[0].severity == "warning"
        assert "a FastAGI listens there" in found[0].message and other in found[0].message
    seen = asyncio.run(probe._with_listening(replies, URL)).agi_url  # closed now
    assert seen["Listening"] is False
    (line,) = errors(judged(probe, agi_url=seen))
    assert "every opposition-line call would fail" in line
