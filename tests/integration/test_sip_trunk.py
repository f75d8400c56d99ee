"""Issue 8: the real SIP path. SIPp plays the carrier on 127.0.0.1:5070 and the controller dials
it through the PJSIP trunk that `ivr pbx up` builds from dialplans/pjsip-trunk.conf.

Each SIPp scenario (tests/integration/sipp/) must end with the same calls row as the simulated
Local-channel callee that behaves the same way, placed in this module through the same flow.
AMD is off here: SIPp's callee sends only the RFC 4733 key, no voice, and AMD would classify that
initial silence as a machine (the Local callees say "allo" for it). The other settings match.
"""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ivr import app
from ivr import config
from ivr.config import Config
from ivr.telephony.sandbox import Sandbox
from ivr.store.sqlite import Store

from .conftest import add_contacts, fiction, itest_config_dict, place_calls
from .sipp_tones import write_tone_pcap

SIPP_DIR = Path(__file__).resolve().parent / "sipp"
SIPP_PORT = 5070          # the carrier contact in the sandbox's pjsip.conf
SIPP_MEDIA_PORT = 6000
ASTERISK_SIP = "127.0.0.1:5060"  # the sandbox's carrier transport, for SIPp as a caller
TONE_PCAP = "tone-1-pcma.pcap"   # the key 1 as A-law tones; the tones scenarios play it
AGI_PORT = 4600           # this module's own FastAGI port: other test files run beside it
DIAL_SIP = "PJSIP/{number}@carrier"
CALLER = "+33199000000"   # the scenarios check this number in From and P-Asserted-Identity


@dataclass(frozen=True)
class Case:
    scenario: str     # tests/integration/sipp/<scenario>.xml
    sim: str          # the ivr-sim callee (last two digits) that behaves the same way
    outcome: str
    keys: str
    cause: str        # calls.hangup_cause: the Q.850 cause chan_pjsip maps the SIP answer to


CASES = [
    Case("uas-press1", "10", "message_played", "1", "16"),
    Case("uas-press2", "20", "declined", "2", "16"),
    Case("uas-press9", "60", "opted_out", "9", "16"),
    Case("uas-silent", "30", "no_input", "", "16"),
    Case("uas-bye-during-message", "51", "message_partial", "1", "16"),
    # A callee's BYE without a Reason header is still the callee, not a PBX fault.
    Case("uas-bye-no-reason", "51", "message_partial", "1", "0"),
    Case("uas-busy-486", "70", "busy", "", "17"),          # 486 -> 17 User busy
    Case("uas-ring-480", "71", "no_answer", "", "19"),     # 180, 480 -> 19 No answer
    Case("uas-ring-timeout", "71", "no_answer", "", "19"),  # 180, our CANCEL after 5 s
    Case("uas-congestion-503", "72", "congestion", "", "34"),  # 503 -> 34 Congestion
]
BY_NAME = {c.scenario: c for c in CASES}
UNANSWERED = ("busy", "no_answer", "congestion")


@dataclass
class SipCall:
    row: dict[str, Any]   # the calls row
    sipp_rc: int          # SIPp's exit code
    sipp_log: str
    store: Store


def sip_number(i: int) -> str:
    return fiction(f"{i:02d}", block="91")


def cfg_for(pbx_cfg: Config, dial_string: str, agi_port: int = AGI_PORT,
            **extra: Any) -> Config:
    data = itest_config_dict(pbx_cfg.base_dir, agi__port=agi_port, dialer__amd=False,
                             dialer__dial_string=dial_string, **extra)
    assert data["campaign"]["caller_id"] == CALLER  # what the scenarios expect to see
    return config.from_dict(data, pbx_cfg.base_dir)


def _udp_bound(port: int) -> bool:
    hexport = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            if line.split()[1].endswith(hexport):
                return True
    return False


class Carrier:
    """SIPp running one scenario on 127.0.0.1:5070 for `calls` calls, killed on exit: a UAS
    that Asterisk dials, or with `remote` a UAC that calls Asterisk there."""

    def __init__(self, scenario: str, calls: int, workdir: Path, timeout_s: float,
                 remote: str | None = None, sipp_dir: Path = SIPP_DIR) -> None:
        self.scenario = sipp_dir / f"{scenario}.xml"
        self.remote = [remote] if remote else []
        self.calls = calls
        self.workdir = workdir
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.errors = workdir / f"{scenario}.errors.log"
        self.screen = workdir / f"{scenario}.screen.log"

    def __enter__(self) -> "Carrier":
        assert not _udp_bound(SIPP_PORT), f"UDP {SIPP_PORT} is taken: another SIPp is running"
        self.proc = subprocess.Popen(
            ["sipp", *self.remote, "-sf", str(self.scenario), "-i", "127.0.0.1",
             "-p", str(SIPP_PORT), "-mi", "127.0.0.1", "-mp", str(SIPP_MEDIA_PORT),
             "-m", str(self.calls),
             "-nostdin", "-timeout", f"{int(self.timeout_s)}s", "-timeout_error",
             "-trace_err", "-error_file", str(self.errors),
             "-trace_screen", "-screen_file", str(self.screen)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd=self.workdir)
        deadline = time.monotonic() + 10
        while not _udp_bound(SIPP_PORT):
            assert self.proc.poll() is None, \
                f"sipp exited at start ({self.proc.returncode}): {self.report()}"
            assert time.monotonic() < deadline, "sipp did not bind UDP 5070 within 10 s"
            time.sleep(0.05)
        return self

    def wait(self) -> int:
        """SIPp's exit code once its calls are done: 0 only if every call followed the
        scenario (including its checks on the INVITE)."""
        assert self.proc is not None
        return self.proc.wait(timeout=self.timeout_s + 10)

    def report(self) -> str:
        parts = [p.read_text(errors="replace")[-3000:] for p in (self.errors, self.screen)
                 if p.exists()]
        return "\n".join(parts) or "no SIPp log"

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def trunk_up(pbx_cfg: Config) -> Config:
    """`ivr pbx up` (the session fixture) installed the trunk: endpoint `carrier`, A-law,
    its contact SIPp on 127.0.0.1:5070."""
    endpoint = Sandbox(pbx_cfg).cli("pjsip show endpoint carrier")
    assert "sip:127.0.0.1:5070" in endpoint and "(alaw|ulaw)" in endpoint, endpoint
    return pbx_cfg


LOCAL_AGI_PORT = AGI_PORT + 1  # the Local callees' controller, beside the trunk's


@pytest.fixture(scope="module")
def local_calls(trunk_up: Config) -> Iterator[Future[list[dict[str, Any]]]]:
    """The Local-channel callees with the same behaviours, same config but the dial string
    (and its own FastAGI port): placed in a thread while sip_rows places the SIPp calls one
    at a time, instead of after them (their outcomes are read only once both are done)."""
    cfg = cfg_for(trunk_up, "Local/{number}@ivr-sim", agi_port=LOCAL_AGI_PORT)
    sims = sorted({c.sim for c in CASES})
    numbers = [fiction(s, block="90") for s in sims]
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(lambda: asyncio.run(place_calls(cfg, Store.memory(), numbers)))
        yield future


@pytest.fixture(scope="module")
def local_rows(local_calls: Future[list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {r["number"][-2:]: r for r in local_calls.result(timeout=300)}


@pytest.fixture(scope="module")
def sip_rows(trunk_up: Config, tmp_path_factory: pytest.TempPathFactory,
             local_calls: Future[list[dict[str, Any]]]) -> dict[str, SipCall]:
    """One call per scenario over the trunk, SIPp answering as the carrier (one at a time:
    one SIPp owns port 5070); the Local callees' calls (local_calls) run meanwhile."""
    cfg = cfg_for(trunk_up, DIAL_SIP)
    workdir = tmp_path_factory.mktemp("sipp")
    out: dict[str, SipCall] = {}
    for i, case in enumerate(CASES):
        store = Store.memory()
        with Carrier(case.scenario, 1, workdir, timeout_s=90) as carrier:
            rows = asyncio.run(place_calls(cfg, store, [sip_number(i)], timeout=90))
            rc = carrier.wait()
        assert len(rows) == 1, rows
        out[case.scenario] = SipCall(rows[0], rc, carrier.report(), store)
    return out


@pytest.mark.parametrize("scenario", [c.scenario for c in CASES])
def test_carrier_followed_the_scenario(sip_rows: dict, scenario: str) -> None:
    """SIPp's checks passed: E.164 request URI, the presented number in From and
    P-Asserted-Identity, A-law and telephone-event offered, the call ended as scripted."""
    call = sip_rows[scenario]
    assert call.sipp_rc == 0, call.sipp_log


@pytest.mark.parametrize("scenario", [c.scenario for c in CASES])
def test_sip_call_ends_like_the_simulated_callee(sip_rows: dict, local_rows: dict,
                                                 scenario: str) -> None:
    case = BY_NAME[scenario]
    sip = sip_rows[scenario].row
    local = local_rows[case.sim]
    fields = ("outcome", "keys")
    assert {f: sip[f] for f in fields} == {"outcome": case.outcome, "keys": case.keys}, \
        sip_rows[scenario].sipp_log
    assert {f: sip[f] for f in fields} == {f: local[f] for f in fields}
    assert (sip["answered_at"] is not None) == (case.outcome not in UNANSWERED)
    assert sip["ended_at"] and sip["attempt"] == 1


@pytest.mark.parametrize("scenario", [c.scenario for c in CASES])
def test_hangup_cause_is_the_q850_cause(sip_rows: dict, local_rows: dict, scenario: str) -> None:
    case = BY_NAME[scenario]
    sip = sip_rows[scenario].row
    assert sip["hangup_cause"] == case.cause
    if case.outcome in UNANSWERED:
        assert sip["hangup_cause"] == local_rows[case.sim]["hangup_cause"]


# Other final responses (no simulated callee has them): chan_pjsip's SIP -> Q.850 map, then ours.
REJECTS = {"uas-notfound-404": ("failed", "1"), "uas-busy-600": ("busy", "17"),
           "uas-timeout-408": ("no_answer", "18")}


@pytest.fixture(scope="module")
def reject_rows(trunk_up: Config, tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, SipCall]:
    cfg = cfg_for(trunk_up, DIAL_SIP)
    workdir = tmp_path_factory.mktemp("sipp-reject")
    out: dict[str, SipCall] = {}
    for i, scenario in enumerate(REJECTS):
        store = Store.memory()
        with Carrier(scenario, 1, workdir, timeout_s=30) as carrier:
            rows = asyncio.run(place_calls(cfg, store, [fiction(f"{i:02d}", block="92")],
                                           timeout=30))
            rc = carrier.wait()
        assert len(rows) == 1, rows
        out[scenario] = SipCall(rows[0], rc, carrier.report(), store)
    return out


@pytest.mark.parametrize("scenario", sorted(REJECTS))
def test_other_sip_rejections_map_to_outcomes(reject_rows: dict[str, SipCall],
                                              scenario: str) -> None:
    outcome, cause = REJECTS[scenario]
    call = reject_rows[scenario]
    assert call.sipp_rc == 0, call.sipp_log
    assert (call.row["outcome"], call.row["hangup_cause"], call.row["answered_at"]) == \
        (outcome, cause, None)


def test_optout_over_the_trunk_reaches_the_opposition_list(sip_rows: dict) -> None:
    optout, declined = sip_rows["uas-press9"], sip_rows["uas-press2"]
    assert optout.store.is_opted_out(optout.row["number"])
    assert optout.store.one("SELECT via FROM optouts")["via"] == "phone-key"
    assert not declined.store.is_opted_out(declined.row["number"])


# A carrier that cannot send RFC 4733 answers A-law without telephone-event: the keys then come
# as audio tones, which the trunk's dtmf_mode=auto detects (rfc4733 alone would lose every key).

def with_tones(scenario: str, workdir: Path) -> Path:
    """A copy of the scenario beside the tone pcap it plays: SIPp looks for pcaps there."""
    sipp_dir = workdir / "sipp"
    sipp_dir.mkdir()
    shutil.copy(SIPP_DIR / f"{scenario}.xml", sipp_dir)
    write_tone_pcap(sipp_dir / TONE_PCAP, "1")
    return sipp_dir


def test_a_key_sent_as_tones_by_a_carrier_without_telephone_event_is_heard(
        trunk_up: Config, tmp_path: Path) -> None:
    scenario = "uas-tones-press1"
    store = Store.memory()
    with Carrier(scenario, 1, tmp_path, timeout_s=60,
                 sipp_dir=with_tones(scenario, tmp_path)) as carrier:
        rows = asyncio.run(place_calls(cfg_for(trunk_up, DIAL_SIP), store,
                                       [fiction("00", block="94")], timeout=60))
        rc = carrier.wait()
    assert (rows[0]["outcome"], rows[0]["keys"]) == ("message_played", "1"), carrier.report()
    assert rc == 0, carrier.report()


def test_the_opposition_line_hears_a_key_sent_as_tones(trunk_up: Config, tmp_path: Path) -> None:
    """An inbound call on the trunk (context ivr-from-carrier), no telephone-event, 1 as tones:
    the caller's number is opposed, as with an RFC 4733 key."""
    scenario = "uac-callback-tones-press1"
    sipp_dir = with_tones(scenario, tmp_path)
    store = Store.memory()

    async def call_in() -> tuple[int, str]:
        ctl = await app.start(trunk_up, store)  # the AGI port IVR_AGI_URL points at
        try:
            with Carrier(scenario, 1, tmp_path, timeout_s=40, remote=ASTERISK_SIP,
                         sipp_dir=sipp_dir) as carrier:
                rc = await asyncio.to_thread(carrier.wait)
            await asyncio.sleep(0.5)  # let the AGI side finish its last write
            return rc, carrier.report()
        finally:
            await ctl.close()

    rc, log = asyncio.run(call_in())
    assert store.is_opted_out(fiction("79", block="93")), log
    assert store.one("SELECT via FROM optouts")["via"] == "phone-callback"
    assert rc == 0, log


def test_campaign_of_50_calls_over_the_trunk(trunk_up: Config,
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    """50 contacts, SIPp answering all of them at once and pressing 1: every attempt is
    stored with its outcome, and nothing is left open."""
    n = 50
    cfg = cfg_for(trunk_up, DIAL_SIP)
    store = Store.memory()
    numbers = [fiction(f"{i:02d}", block="95") for i in range(n)]
    add_contacts(store, numbers)
    workdir = tmp_path_factory.mktemp("sipp50")
    peak: list[int] = []
    with Carrier("uas-press1", n, workdir, timeout_s=240) as carrier:
        start = time.monotonic()
        report, _ = asyncio.run(app.run_campaign(
            cfg, store, on_tick=lambda ctl: peak.append(len(ctl.dialer.inflight))))
        took = time.monotonic() - start
        rc = carrier.wait()
    calls = store.q("SELECT number, outcome, keys, hangup_cause FROM calls")
    print(f"\n{n} calls over the SIPp trunk: {took:.1f} s, peak {max(peak)} in flight")
    assert report.originated == n
    assert max(peak) >= n // 2  # SIPp carried them at once, not one after the other
    assert sorted(c["number"] for c in calls) == sorted(numbers)
    assert Counter((c["outcome"], c["keys"], c["hangup_cause"]) for c in calls) == \
        {("message_played", "1", "16"): n}
    assert store.open_calls() == []
    assert rc == 0, carrier.report()
