"""The sandbox PBX: a private Debian root holding Asterisk, run under chroot on loopback.

The root is built once with mmdebstrap and cached outside the repository; each `up` rewrites
its /etc/asterisk from the project's dialplans and a generated, loopback-only manager.conf.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from ivr.telephony.ami import WANTED_EVENTS
from ivr.config import Config
from ivr.telephony.agi_auth import callback_secret_from_env
from ivr.telephony.contract import (GLOBAL_AGI_URL, GLOBAL_CALLBACK_SECRET, GLOBAL_OPTOUT_DIGIT,
                                    SIM_AFTER_INTRO_S, SIM_EARLY_S, SIM_HEARD_MS, SIM_REASK_S,
                                    SIM_SOUNDS_DIR, agi_url)
from ivr.errors import SandboxError
from ivr.secret_files import read_or_create, write_secret
from ivr.telephony.ami_node import checked_secret
from ivr.telephony.sim_sounds import write_sim_sounds
from ivr.telephony.sandbox_root import (CHROOT_DIRS, build, check_dialplan_dir, harden, in_root,
                                        runs_sandbox_asterisk, write_file)
from ivr.telephony.sip_trunk import sandbox_pjsip_conf

# An empty IVR_SANDBOX_CACHE is unset (not a root relative to the current folder).
CACHE_DIR = Path(os.environ.get("IVR_SANDBOX_CACHE") or "/var/cache/ivr-sandbox")
DIALPLANS_DIR = Path(__file__).resolve().parents[2] / "dialplans"
INCLUDE_DIR = "ivr"  # /etc/asterisk/ivr/: the dialplans, #included by extensions.conf
ASTERISK = "/usr/sbin/asterisk"
# Modules the product and its tests use; everything else stays unloaded (smaller attack surface,
# no "declined to load" noise).
MODULES = """
res_speech res_agi app_amd app_playback app_read app_senddtmf app_userevent app_stack app_verbose app_echo
app_waitforsilence pbx_config func_logic func_strings func_callerid func_channel func_global
func_dialplan func_hangupcause func_uuid func_db format_wav format_gsm format_pcm format_sln
codec_ulaw codec_alaw codec_gsm codec_resample codec_a_mu res_timing_timerfd bridge_simple
res_pjproject res_sorcery_config res_sorcery_memory res_sorcery_astdb res_pjsip res_pjsip_session
chan_pjsip res_pjsip_sdp_rtp res_rtp_asterisk res_pjsip_endpoint_identifier_ip
res_pjsip_endpoint_identifier_user res_pjsip_outbound_registration res_pjsip_authenticator_digest
res_pjsip_outbound_authenticator_digest res_pjsip_caller_id res_pjsip_dtmf_info res_pjsip_rfc3326
res_pjsip_logger res_pjsip_nat res_pjsip_pubsub res_pjsip_registrar res_pjsip_acl
""".split()
AMI_READ = "call,user,originate,system"   # system: FullyBooted/Shutdown, to notice restarts
# AGIExecStart: bench/bench_first_audio.py times the first STREAM FILE after the answer.
MONITOR_EVENTS = ("DTMFEnd", "Hangup", "OriginateResponse", "AGIExecStart",
                  "Newchannel")  # Newchannel: when an attempt began, from Asterisk
AMI_WRITE = "originate,call,reporting"          # Originate, Hangup, CoreShowChannels
SECRET_CONFS = ("manager.conf", "extensions.conf")  # AMI secret, callback secret: mode 0600


@dataclass
class Status:
    running: bool
    pid: int | None
    ami_port_open: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"running": self.running, "pid": self.pid, "ami": self.ami_port_open,
                "detail": self.detail}


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Sandbox:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.root = CACHE_DIR / "root"
        self.state = cfg.path(cfg.pbx.sandbox_dir)
        self.pidfile = self.state / "asterisk.pid"
        self.logfile = self.state / "asterisk.log"
        self.secret_file = self.state / "ami_secret"
        self.ami_port = cfg.pbx.port  # other instances: sandbox_nodes.py
        self.label = ""  # "node <i>: " on an error of instance i > 1
        self.sip_port = 5060
        self.dirs = ("var/run/asterisk", "var/log/asterisk", "var/spool/asterisk")
        self.datadir = "/usr/share/asterisk"  # astdatadir: Asterisk plays from <it>/sounds

    def asterisk(self, *args: str) -> list[str]:
        """The command line of this instance's asterisk inside the root."""
        return ["chroot", str(self.root), ASTERISK, *args]

    # -- root -----------------------------------------------------------------------------
    def build_root(self, log=print) -> Path:
        if (self.root / ASTERISK.lstrip("/")).exists():
            return self.root
        build(self.root, CACHE_DIR, log)
        return self.root

    # -- configuration ----------------------------------------------------------------------
    @property
    def monitor_user(self) -> str:
        return f"{self.cfg.pbx.user}-monitor"

    def ami_secret(self) -> str:
        env = os.environ.get("IVR_AMI_SECRET")
        if env and env != env.strip():  # manager.conf strips them: every login refused
            raise SandboxError("IVR_AMI_SECRET begins or ends with a space: remove it")
        return self._secret(checked_secret(env, "IVR_AMI_SECRET") if env else None,
                            self.secret_file)

    def callback_secret(self) -> str:
        """The `callback` route's secret: IVR_CALLBACK_SECRET, else one generated once per
        sandbox (the controller reads the same file: app.callback_secret)."""
        return self._secret(callback_secret_from_env(), self.state / "callback_secret")

    def _secret(self, env: str | None, path: Path) -> str:
        """From the environment, else a 0600 file of the sandbox dir, made on first use."""
        if env:
            return env
        self.state.mkdir(parents=True, exist_ok=True)
        return read_or_create(path, lambda: secrets.token_urlsafe(24))

    @property
    def etc(self) -> Path:
        return self.root / "etc/asterisk"

    @property
    def sounds(self) -> Path:
        """This instance's own sounds: astdatadir/sounds (Asterisk 22 has no astsoundsdir)."""
        return self.root / self.datadir.lstrip("/") / "sounds"

    def install(self, sim_timing: dict[str, float] | None = None) -> None:
        """Write /etc/asterisk inside the root from the project's files."""
        etc = self.etc
        include = etc / INCLUDE_DIR
        check_dialplan_dir(include)
        for old in etc.glob("*.conf"):
            old.unlink()
        include.mkdir(parents=True, exist_ok=True)
        for conf in DIALPLANS_DIR.glob("*.conf"):  # renamed in: never through a symlink
            write_file(include / conf.name, conf.read_bytes())
        for name, text in self._conf_files(sim_timing or {}).items():
            path = etc / name
            if name in SECRET_CONFS:  # manager.conf, extensions.conf: 0600, never readable
                write_secret(path, text)
            else:
                write_file(path, text.encode())
        self._sim_sounds()

    def secure(self) -> None:
        """Only root may change what this Asterisk (root) reads: sandbox_root.py. A dialplan
        folder someone else made is refused before its ownership would be fixed."""
        check_dialplan_dir(self.etc / INCLUDE_DIR)
        etc = str(self.etc.relative_to(self.root))
        harden(self.root, dict.fromkeys((*CHROOT_DIRS, etc, *self.dirs)))

    def _conf_files(self, sim_timing: dict[str, float]) -> dict[str, str]:
        """Every generated file of /etc/asterisk, by name."""
        return {
            "asterisk.conf": self.asterisk_conf(data=self.datadir),
            "modules.conf": "[modules]\nautoload = no\n"
                            + "".join(f"load = {m}.so\n" for m in MODULES),
            "manager.conf": self._manager_conf(),
            "logger.conf": "[general]\n[logfiles]\nmessages.log => notice,warning,error\n",
            "extensions.conf": self._extensions(sim_timing),
            # the shipped trunk templates, on loopback
            "pjsip.conf": sandbox_pjsip_conf(sip_port=self.sip_port),
            "indications.conf": "[general]\ncountry = fr\n[fr]\ndescription = France\n"
                                "ringcadence = 1500,3500\ndial = 440\nbusy = 440/500,0/500\n"
                                "ring = 440/1500,0/3500\ncongestion = 440/250,0/250\n",
            "rtp.conf": "[general]\nrtpstart = 16000\nrtpend = 20000\n",
            "cdr.conf": "[general]\nenable = no\n",
            # AMD defaults spelled out: they decide what counts as a machine.
            "amd.conf": "[general]\ninitial_silence = 2500\ngreeting = 1500\n"
                        "after_greeting_silence = 800\ntotal_analysis_time = 5000\n"
                        "min_word_length = 100\nbetween_words_silence = 50\n"
                        "maximum_number_of_words = 3\nsilence_threshold = 256\n"
                        "maximum_word_length = 5000\n",
            **{name: "" for name in ("cel.conf", "features.conf", "acl.conf", "udptl.conf",
                                     "ccss.conf", "pjproject.conf")},
        }

    def asterisk_conf(self, etc: str = "/etc/asterisk", db: str = "/var/lib/asterisk",
                      spool: str = "/var/spool/asterisk", run: str = "/var/run/asterisk",
                      log: str = "/var/log/asterisk", data: str = "/usr/share/asterisk") -> str:
        """Modules and var/lib are shared by every instance; astdatadir (its sounds) is not
        (sandbox_nodes.py)."""
        return ("[directories]\n"
                f"astetcdir => {etc}\nastmoddir => /usr/lib/x86_64-linux-gnu/asterisk/modules\n"
                f"astvarlibdir => /var/lib/asterisk\nastdbdir => {db}\n"
                f"astdatadir => {data}\nastspooldir => {spool}\n"
                f"astrundir => {run}\nastlogdir => {log}\n"
                "[options]\nmaxcalls = 4000\nmaxfiles = 65536\n"
                "transmit_silence = no\nhideconnect = yes\n")

    def _manager_conf(self) -> str:
        pbx = self.cfg.pbx
        return ("[general]\nenabled = yes\n"
                f"port = {self.ami_port}\nbindaddr = 127.0.0.1\ndisplayconnects = no\n"
                # Only the events the controller reads: parsing the others is its main cost.
                + self._ami_user(pbx.user, AMI_READ, AMI_WRITE, sorted(WANTED_EVENTS))
                # Sandbox only: tests watch the simulated callees' DTMF, which the controller
                # never reads, with their own user and filters.
                + self._ami_user(self.monitor_user, "call,dtmf,originate,agi", "originate",
                                 MONITOR_EVENTS))

    def _ami_user(self, name: str, read: str, write: str, events: Iterable[str]) -> str:
        """A loopback-only AMI user. Its event filters are regexes on the event text:
        [[:space:]] stops Hangup matching HangupRequest."""
        # `;` starts a comment in manager.conf: written \; it stays part of the secret
        return (f"[{name}]\nsecret = {self.ami_secret().replace(';', chr(92) + ';')}\n"
                "deny = 0.0.0.0/0.0.0.0\npermit = 127.0.0.1/255.255.255.255\n"
                f"read = {read}\nwrite = {write}\n"
                + "".join(f"eventfilter = Event: {e}[[:space:]]\n" for e in events))

    def globals(self, timing: dict[str, float]) -> dict[str, object]:
        """The [globals] of extensions.conf: the FastAGI URL and the simulated callees' timing."""
        intro = timing.get("intro", 8.0)
        invalid = timing.get("invalid", 2.0)
        return {
            # The inbound opposition line (and an outbound call without IVR_AGI) reaches the
            # controller here: from the config, so any agi.port works.
            GLOBAL_AGI_URL: agi_url(self.cfg.agi.host, self.cfg.agi.port),
            # The secret the opposition line passes to the `callback` route.
            GLOBAL_CALLBACK_SECRET: self.callback_secret(),
            # The key the opposition line's failsafe takes besides 1: the intro's own.
            GLOBAL_OPTOUT_DIGIT: self.cfg.flow.optout_key,
            # Delays counted from when the callee hears the intro (HEARD_MS of sound, so
            # about that long after it starts): "during the introduction" lands ~2.2 s into
            # it, "after" ~1 s after it ended.
            SIM_HEARD_MS: 200,
            SIM_EARLY_S: 2,
            SIM_AFTER_INTRO_S: round(intro + 0.8, 1),
            SIM_REASK_S: round(invalid + 2.0, 1),
        }

    def _extensions(self, timing: dict[str, float]) -> str:
        lines = ["[general]", "static = yes", "writeprotect = yes", "[globals]"]
        lines += [f"{k} = {v}" for k, v in self.globals(timing).items()]
        lines += [f"#include {INCLUDE_DIR}/{p.name}"
                  for p in sorted(DIALPLANS_DIR.glob("ivr-*.conf"))]
        return "\n".join(lines) + "\n"

    def _sim_sounds(self) -> None:
        write_sim_sounds(self.sounds / SIM_SOUNDS_DIR)

    # -- process ------------------------------------------------------------------------------
    def _pid(self) -> int | None:
        found = self._pid_root()
        # only our Asterisk: the process must run inside our root
        if found is None or found[1].resolve() != self.root.resolve():
            return None
        return found[0]

    def _pid_root(self) -> tuple[int, Path] | None:
        """The pid file's process when it is an Asterisk, and the root it runs in."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            if "asterisk" not in Path(f"/proc/{pid}/cmdline").read_text():
                return None
            return pid, Path(os.readlink(f"/proc/{pid}/root"))
        except OSError:
            return None

    def _elsewhere(self) -> str | None:
        """Why the pid file's Asterisk is not ours, when it is another sandbox root's (another
        IVR_SANDBOX_CACHE, e.g. one sudo dropped); None otherwise, e.g. for `tail -f
        asterisk.log` or a host Asterisk after pid reuse: a stale pid file, which down clears."""
        found = self._pid_root()
        if found is None or found[1].resolve() == self.root.resolve() \
                or not runs_sandbox_asterisk(*found):
            return None
        pid, other = found
        return (f"Asterisk pid {pid} ({self.pidfile}) runs from the root {other}, not "
                f"{self.root}: run again with IVR_SANDBOX_CACHE={other.parent} "
                "(sudo drops it: sudo env IVR_SANDBOX_CACHE=... ivr pbx ...)")

    def cli(self, command: str, timeout: float = 15) -> str:
        if self._pid() is None:
            raise SandboxError("the sandbox PBX is not running: run `ivr pbx up`")
        proc = subprocess.run(self.asterisk("-rx", command), capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise SandboxError(f"asterisk -rx {command!r} failed: {proc.stderr.strip()}")
        return proc.stdout

    def up(self, timeout: float = 60, sim_timing: dict[str, float] | None = None,
           log=print) -> Status:
        self.prepare(log)
        self.secure()
        self.install(sim_timing)
        for d in (*self.dirs, "var/lib/asterisk"):  # as the chroot sees them (var/run: /run)
            path = in_root(self.root, d)
            path.mkdir(parents=True, exist_ok=True)
            # Asterisk (root) writes its logs and AstDB 0644: callees' numbers, and the
            # failsafes' journal of people who objected, were readable by every local user
            path.chmod(0o700)
        if self._pid() is not None:  # idempotent: refresh dialplan and config
            self.cli("core reload")
            return self.status()
        if port_open("127.0.0.1", self.ami_port):
            self.port_taken()
        self.state.mkdir(parents=True, exist_ok=True)
        logf = os.fdopen(os.open(self.logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
                         "ab")
        os.fchmod(logf.fileno(), 0o600)  # one an earlier release made 0644
        proc = subprocess.Popen(self.asterisk("-f", "-n", "-q"),
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                start_new_session=True)
        logf.close()
        self.pidfile.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pidfile.unlink(missing_ok=True)
                raise SandboxError(f"Asterisk exited at start (code {proc.returncode}): "
                                   f"see {self.logfile}")
            try:
                out = subprocess.run(self.asterisk("-rx", "core waitfullybooted"),
                                     capture_output=True, text=True,
                                     timeout=max(1.0, deadline - time.monotonic()))
                if "fully booted" in out.stdout.lower() and port_open("127.0.0.1",
                                                                      self.ami_port):
                    return self.status()
            except subprocess.TimeoutExpired:
                break
            time.sleep(0.2)
        self.down()
        raise SandboxError(f"Asterisk did not finish booting within {timeout:.0f} s: "
                           f"see {self.logfile}")

    def port_taken(self) -> NoReturn:
        raise SandboxError(f"{self.label}port {self.ami_port} is already in use: stop the other "
                           "Asterisk/AMI service or set pbx.port in config.yaml")

    def prepare(self, log=print) -> None:
        """What every start needs first: root, and the root built."""
        if os.geteuid() != 0:
            raise SandboxError("the sandbox PBX needs root (chroot): run as root")
        self.build_root(log)

    def down(self, timeout: float = 15) -> bool:
        pid = self._pid()
        if pid is None:
            elsewhere = self._elsewhere()
            if elsewhere:  # keep its pid file: the one way an ivr command can stop it
                raise SandboxError(elsewhere)
            self.pidfile.unlink(missing_ok=True)
            return False
        try:
            subprocess.run(self.asterisk("-rx", "core stop now"), capture_output=True, timeout=5)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + timeout
        sent_term = False
        while Path(f"/proc/{pid}").exists() and _alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            if not sent_term and time.monotonic() > deadline - timeout / 2:
                os.kill(pid, signal.SIGTERM)
                sent_term = True
            time.sleep(0.1)
        _reap(pid)
        self.pidfile.unlink(missing_ok=True)
        return True

    def status(self) -> Status:
        pid = self._pid()
        ami = port_open("127.0.0.1", self.ami_port)
        if pid is None:
            elsewhere = self._elsewhere()
            return Status(False, None, ami, "not running" + (
                f" ({elsewhere})" if elsewhere else
                f" (but something else listens on {self.ami_port})" if ami else ""))
        try:
            channels = self.cli("core show channels count").strip().splitlines()
            detail = "; ".join(channels)
        except (SandboxError, subprocess.TimeoutExpired) as exc:
            detail = f"running, CLI not answering ({exc})"
        return Status(True, pid, ami, detail)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass

