"""The dialplan contract: every name the controller and `dialplans/*.conf` share, in one place.

A test (tests/test_dialplan_contract.py) checks that each name the shipped dialplans use is
here, and that each name here is used by a dialplan.
"""
from __future__ import annotations

# -- contexts the controller originates into or documents ------------------------------------
OUTBOUND_CONTEXT = "ivr-outbound"   # each attempt is originated here, exten `s`
CALLBACK_CONTEXT = "ivr-callback"   # the inbound opposition line
OUTBOUND_EXTEN = "s"

# -- channel variables set on the Originate ---------------------------------------------------
VAR_CALL_ID = "CALL_ID"    # calls.id, handed back to the AGI as its first argument
VAR_AGI_URL = "IVR_AGI"    # FastAGI base URL for this call (agi://host:port)
VAR_AMD = "IVR_AMD"        # "1": run AMD() before the IVR

# -- global variable written by `ivr pbx up` (or by the administrator of an external PBX) ------
GLOBAL_AGI_URL = "IVR_AGI_URL"  # default FastAGI base URL, for inbound calls and fallbacks

# -- FastAGI routes and their arguments ------------------------------------------------------
ROUTE_IVR = "ivr"            # agi_arg_1 = CALL_ID, agi_arg_2 = AMDSTATUS
ROUTE_CALLBACK = "callback"  # no arguments: keyed by agi_callerid
ARG_CALL_ID = "agi_arg_1"
ARG_AMD_STATUS = "agi_arg_2"

# -- events the dialplan raises --------------------------------------------------------------
EVENT_FAILSAFE = "IvrFailsafe"  # UserEvent: the AGI could not run; CallId, Status
FAILSAFE_CALL_ID = "CallId"
FAILSAFE_CALLBACK = "callback"  # CallId of the inbound line's failsafe

# -- sounds ------------------------------------------------------------------------------------
SOUNDS_DIR = "ivr"  # prompts are installed as sounds/ivr/<key>.wav, played as ivr/<key>
