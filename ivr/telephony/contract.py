"""The dialplan contract: every name the controller and `dialplans/*.conf` share, in one place.

A test (tests/test_dialplan_contract.py) checks that each name the shipped dialplans use is
here, and that each name here is used by a dialplan. Python code never spells these names
itself: it imports them from this module.
"""
from __future__ import annotations

import hashlib
import ipaddress
import re

# -- contexts the controller originates into or documents ------------------------------------
OUTBOUND_CONTEXT = "ivr-outbound"   # each attempt is originated here, exten `s`
OUTBOUND_EXTEN = "s"
CALLBACK_CONTEXT = "ivr-callback"   # the inbound opposition line
CALLBACK_EXTEN = "s"
CARRIER_CONTEXT = "ivr-from-carrier"  # the trunk's inbound context (pjsip-trunk.conf) -> callback

# -- channel variables set on the Originate ---------------------------------------------------
VAR_CALL_ID = "CALL_ID"    # calls.id, handed back to the AGI as its first argument
VAR_AGI_URL = "IVR_AGI"    # FastAGI base URL for this call (agi://host:port)
VAR_AMD = "IVR_AMD"        # "1": run AMD() before the IVR
VAR_TOKEN = "IVR_TOKEN"    # the attempt's single-use secret, handed back as ARG_TOKEN
VAR_LEGAL = "IVR_LEGAL"    # the campaign's legal mentions (its version), played by the failsafe
VAR_OPTOUT_DIGIT = "IVR_OPTOUT_DIGIT"  # flow.optout_key: the failsafe journals a callee who
# presses it (not IVR_OPTOUT_KEY, the environment's HMAC key of the opposition list)
VAR_OPTOUT_CONFIRM = "IVR_OPTOUT_CONFIRM"  # the campaign's optout_confirm, played once journaled

# -- global variable written by `ivr pbx up` (or by the administrator of an external PBX) ------
# The FastAGI base URL for the inbound opposition line, and for outbound calls without IVR_AGI.
GLOBAL_AGI_URL = "IVR_AGI_URL"
# The `callback` route's shared secret (the controller's env IVR_CALLBACK_SECRET), passed as
# ARG_CALLBACK_SECRET: without it the opposition line is refused.
GLOBAL_CALLBACK_SECRET = "IVR_CALLBACK_SECRET"
# flow.optout_key for the opposition line's failsafe, which takes 1 or it (9 when unset). The
# name of the outbound channel variable: a call's own VAR_OPTOUT_DIGIT shadows the global.
GLOBAL_OPTOUT_DIGIT = VAR_OPTOUT_DIGIT

# -- Asterisk's own variables the contract relies on -----------------------------------------
VAR_AMD_STATUS = "AMDSTATUS"      # AMD()'s verdict, passed to the AGI as ARG_AMD_STATUS
VAR_AGI_STATUS = "AGISTATUS"      # AGI()'s result: FAILURE takes the failsafe
VAR_HANGUP_CAUSE = "HANGUPCAUSE"  # the Q.850 cause, read by the controller after a hangup
VAR_AGI_SIGHUP = "AGISIGHUP"      # set to "no": no out-of-band HANGUP line in AGI results

# -- channel variable the controller sets during a FastAGI session ---------------------------
# "1" once the `callback` route has given the caller what the line owes (the notice and its
# answer, or the legal mentions), or the `ivr` route has run the call's flow to its end.
# Without it both [ivr-callback] and [ivr-outbound] take their failsafe: AGISTATUS is SUCCESS
# when FastAGI accepts the connection and closes it unserved (peer not in agi.allowed_peers,
# no route, server full, a crash or a kill mid-session), not only FAILURE.
VAR_DONE = "IVR_DONE"

# -- FastAGI routes and their arguments ------------------------------------------------------
ROUTE_IVR = "ivr"            # agi_arg_1 = CALL_ID, agi_arg_2 = AMDSTATUS, agi_arg_3 = token
ROUTE_CALLBACK = "callback"  # agi_arg_1 = the callback secret; keyed by agi_callerid
ARG_CALL_ID = "agi_arg_1"
ARG_AMD_STATUS = "agi_arg_2"
ARG_TOKEN = "agi_arg_3"
ARG_CALLBACK_SECRET = "agi_arg_1"

# -- events the dialplan raises --------------------------------------------------------------
# UserEvent: the AGI could not run; CallId, Status. Matched on the Uniqueid Asterisk stamps on
# it (the Originate's ChannelId), not on CallId: every campaign's store numbers calls from 1.
EVENT_FAILSAFE = "IvrFailsafe"
FAILSAFE_CALL_ID = "CallId"
# AGISTATUS; empty when IVR_AGI_URL is not set; SUCCESS on the opposition line when the session
# ended without VAR_DONE (refused or cut by the controller)
FAILSAFE_STATUS = "Status"
FAILSAFE_CALLBACK = "callback"  # CallId of the inbound line's failsafe

# -- the failsafes' journal of oppositions (AstDB), for when no controller serves the call -----
# [ivr-callback]'s failsafe asks for the key itself and, on 1 or 9, writes the caller's number
# as a key of this AstDB family (value: the epoch), then raises EVENT_JOURNALED. Every
# controller reads the family (AMI DBGetTree, `reporting` write class) when it reconciles a
# node and on that event, and puts each number on the opposition list: a caller who objects
# while FastAGI is down is not lost (campaign/optout_journal.py).
JOURNAL_FAMILY = "ivr_optout"
EVENT_JOURNALED = "IvrOptoutJournal"
# [ivr-outbound]'s failsafe: a callee who presses the call's opposition key (VAR_OPTOUT_DIGIT)
# during the legal mentions is kept under this sub-family, keyed by the channel's Uniqueid (the
# Originate's ChannelId); the controller whose store placed that call opposes its number.
JOURNAL_CALLS = JOURNAL_FAMILY + "/call"

# -- sounds ------------------------------------------------------------------------------------
SOUNDS_DIR = "ivr"  # prompts are installed as sounds/ivr/<key>.wav, played as ivr/<key>


def campaign_sound_dir(campaign: str) -> str:
    """The campaign's folder under SOUNDS_DIR: a readable part of its name and a hash of all
    of it (safe in a path whatever the name; two names that read alike never share it)."""
    readable = re.sub(r"[^A-Za-z0-9_-]+", "-", campaign)[:40].strip("-") or "campaign"
    return f"{readable}-{hashlib.sha256(campaign.encode()).hexdigest()[:8]}"


def prompt_sound(campaign: str, key: str, sha256: str) -> str:
    """What the IVR plays for a prompt: its exact version, content-addressed
    (sounds/ivr/<campaign dir>/<key>-<sha12>.wav). A rebuild adds files, never replaces one,
    so a call in flight keeps the version its attempt records."""
    return f"{SOUNDS_DIR}/{campaign_sound_dir(campaign)}/{key}-{sha256[:12]}"

# -- sandbox only (dialplans/ivr-sim.conf): simulated callees and the benchmark ----------------
SIM_CONTEXT = "ivr-sim"                  # Local/<E.164>@ivr-sim: a simulated callee
SIM_CALLER_CONTEXT = "ivr-sim-caller"    # a person calling the opposition line back
SIM_AGI_RAW_CONTEXT = "ivr-sim-agi-raw"  # AGI without AGISIGHUP=no (tests of fastagi.py)
SIM_SPEAKER_CONTEXT = "ivr-sim-speaker"  # speaks, then waits: a callee watched with no IVR
BENCH_CONTEXT = "ivr-bench-dialplan"     # the IVR in pure dialplan (bench/bench_ivr.py)
SIM_SOUNDS_DIR = "ivr-sim"               # the callees' "allo", silence, machine greeting
SIM_EARLY_S = "IVR_SIM_EARLY_S"          # globals written by `ivr pbx up` from prompt timings
SIM_AFTER_INTRO_S = "IVR_SIM_AFTER_INTRO_S"
SIM_REASK_S = "IVR_SIM_REASK_S"
SIM_HEARD_MS = "IVR_SIM_HEARD_MS"
SIM_VAR_ROUTE = "IVR_ROUTE"              # the route [ivr-sim-agi-raw] calls
SIM_VAR_SPEAKER_WAIT = "IVR_SPEAKER_WAIT_S"  # [ivr-sim-speaker]: the wait after it speaks
BENCH_VAR_TIMEOUT = "IVR_TIMEOUT"        # [ivr-bench-dialplan]: flow.input_timeout_s
BENCH_VAR_REPEATS = "IVR_REPEATS"        # [ivr-bench-dialplan]: flow.max_repeats


def agi_url(host: str, port: int) -> str:
    """The FastAGI base URL Asterisk dials (IPv6 literals in brackets)."""
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a host name
    return f"agi://{host}:{port}"
