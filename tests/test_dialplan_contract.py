"""One dialplan contract: every name `dialplans/*.conf` shares with the controller is a constant of
ivr/telephony/contract.py, and every constant there is used by a dialplan.

What counts as a contract name in a dialplan (parsed from the code, comments stripped):
- contexts it defines, and the `context=` of pjsip-trunk.conf;
- channel and global variables it reads (`${NAME}`, `${NAME:...}`) or writes (`Set(NAME=`);
- `AGI(${URL}/route,...)` routes, the URL's variable and the positions of the route's arguments;
- `UserEvent(Name,Key: value)` names, keys and literal values;
- the folder of each sound played (`Playback(folder/name)`, `Read(VAR,folder/name,...)`);
- the AstDB families it writes or reads (`DB(family/key)`, `DB_EXISTS(family/key)`).
Two documented exclusions, each checked so that it cannot hide a contract name:
- INTERNAL_CONTEXTS: contexts only reached by Goto/Gosub from another context of the dialplans;
- dialplan-local variables: written by Set()/Read() and read only in that same context; plus
  ASTERISK_PRIVATE, Asterisk's own variables the dialplans use for themselves (never written).
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ivr import config
from ivr.telephony import contract
from ivr.telephony.sandbox import Sandbox

DIALPLANS = Path(__file__).resolve().parents[1] / "dialplans"
PJSIP = "pjsip-trunk.conf"
INTERNAL_CONTEXTS = frozenset({"ivr-sim-dispatch", "ivr-sim-lib"})
ASTERISK_PRIVATE = frozenset({"EXTEN", "EPOCH", "UNIQUEID"})

COMMENT = re.compile(r"(?<!\\);.*")
CONTEXT = re.compile(r"^\[([^\]]+)\]")
EXTEN = re.compile(r"^exten\s*=>\s*([^,]+),")
READ_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?=[}:])")
WRITE_VAR = re.compile(r"\b(?:Set\(|Read\()([A-Za-z_][A-Za-z0-9_]*)[=,]")
JUMP = re.compile(r"\b(?:Goto|Gosub)\(([^,()]+),[^,()]+,[^()]+\)")
AGI = re.compile(r"\bAGI\(([^)]*)\)")
USER_EVENT = re.compile(r"\bUserEvent\(([^)]*)\)")
SOUND_ARG = {"Playback": 0, "Background": 0, "Read": 1}
SOUND = re.compile(r"\b(Playback|Background|Read)\(([^)]*)\)")
VAR_ONLY = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
DB_FAMILY = re.compile(r"\bDB(?:_EXISTS|_DELETE)?\(([^$()]+)/")  # family[/sub-family]/key


@dataclass
class Dialplan:
    """The contract-relevant names of a set of dialplan files."""
    contexts: dict[str, list[str]] = field(default_factory=dict)   # context -> its extens
    reads: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # var -> ctxs
    writes: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    jumps: set[tuple[str, str]] = field(default_factory=set)      # (from context, to context)
    agi: list[tuple[str, list[str]]] = field(default_factory=list)  # (url argument, args)
    events: list[list[str]] = field(default_factory=list)           # UserEvent arguments
    sounds: set[str] = field(default_factory=set)                   # sound folders
    families: set[str] = field(default_factory=set)                 # AstDB families
    code: list[str] = field(default_factory=list)                   # code lines, no comments


def parse(texts: list[str]) -> Dialplan:
    dp, ctx = Dialplan(), ""
    for text in texts:
        for raw in text.splitlines():
            line = COMMENT.sub("", raw).strip()
            if not line:
                continue
            dp.code.append(line)
            if m := CONTEXT.match(line):
                ctx = m.group(1)
                dp.contexts.setdefault(ctx, [])
                continue
            if m := EXTEN.match(line):
                dp.contexts[ctx].append(m.group(1).strip())
            _parse_code(dp, ctx, line)
    return dp


def _parse_code(dp: Dialplan, ctx: str, line: str) -> None:
    for name in READ_VAR.findall(line):
        dp.reads[name].add(ctx)
    for name in WRITE_VAR.findall(line):
        dp.writes[name].add(ctx)
    dp.jumps |= {(ctx, target.strip()) for target in JUMP.findall(line)}
    for args in AGI.findall(line):
        first, *rest = args.split(",")
        dp.agi.append((first, rest))
    dp.events += [args.split(",") for args in USER_EVENT.findall(line)]
    dp.families |= set(DB_FAMILY.findall(line))
    for app, args in SOUND.findall(line):
        parts = args.split(",")
        index = SOUND_ARG[app]
        for sound in (parts[index] if len(parts) > index else "").split("&"):
            if "/" in sound:
                dp.sounds.add(sound.split("/")[0])


def dialplan_texts() -> list[str]:
    return [p.read_text() for p in sorted(DIALPLANS.glob("*.conf")) if p.name != PJSIP]


def pjsip_contexts(text: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^\s*context\s*=\s*([^\s;]+)", text, re.M)}


def contract_values() -> dict[str, str]:
    return {k: v for k, v in vars(contract).items() if k.isupper() and isinstance(v, str)}


def local_variables(dp: Dialplan) -> set[str]:
    """Written by the dialplan and read in that same single context only."""
    return {name for name, where in dp.writes.items()
            if len(where) == 1 and dp.reads.get(name) and dp.reads[name] <= where}


def agi_routes(dp: Dialplan) -> list[tuple[str | None, str, list[str]]]:
    """(url variable, route, args) of each AGI(): the url must be `${VAR}/route`."""
    out = []
    for first, args in dp.agi:
        base, _, route = first.rpartition("/")
        m = VAR_ONLY.fullmatch(base)
        out.append((m.group(1) if m else None, route, args))
    return out


def shared_names(dp: Dialplan, pjsip: str) -> set[str]:
    """Every contract-relevant name the dialplans use (the forward direction)."""
    names = set(dp.contexts) - INTERNAL_CONTEXTS
    names |= (set(dp.reads) | set(dp.writes)) - local_variables(dp) - ASTERISK_PRIVATE
    names |= {route for _, route, _ in agi_routes(dp) if not route.startswith("${")}
    for name, *fields in dp.events:
        names.add(name)
        for f in fields:
            key, _, value = f.partition(":")
            names.add(key.strip())
            if "${" not in value:
                names.add(value.strip())
    return names | dp.sounds | dp.families | pjsip_contexts(pjsip)


def used_names(dp: Dialplan, pjsip: str) -> set[str]:
    """What a contract constant may name (the reverse direction): the shared names, the
    extens of the contexts the controller uses and the argument positions of each route."""
    used = shared_names(dp, pjsip)
    used |= {e for ctx in (contract.OUTBOUND_CONTEXT, contract.CALLBACK_CONTEXT)
             for e in dp.contexts.get(ctx, [])}
    for _, _, args in agi_routes(dp):
        used |= {f"agi_arg_{i}" for i in range(1, len(args) + 1)}
    return used


def violations(texts: list[str], pjsip: str) -> list[str]:
    dp = parse(texts)
    values = set(contract_values().values())
    out = [f"{n!r} is used by a dialplan but is not in contract.py"
           for n in sorted(shared_names(dp, pjsip) - values)]
    used = used_names(dp, pjsip)
    out += [f"contract.{k} = {v!r} is used by no dialplan"
            for k, v in sorted(contract_values().items()) if v not in used]
    out += [f"AGI({url}/{route}): the URL must be one contract variable, not {url!r}"
            for url, route, _ in agi_routes(dp) if url not in values]
    out += [f"hard-coded FastAGI URL: {line}" for line in dp.code if "agi://" in line]
    out += [f"pjsip context={c} is defined by no dialplan"
            for c in sorted(pjsip_contexts(pjsip) - set(dp.contexts))]
    return out


def shipped() -> tuple[list[str], str]:
    return dialplan_texts(), (DIALPLANS / PJSIP).read_text()


def test_the_shipped_dialplans_follow_the_contract() -> None:
    assert violations(*shipped()) == []


def test_the_exclusions_hide_no_contract_name() -> None:
    dp = parse(dialplan_texts())
    values = set(contract_values().values())
    for ctx in INTERNAL_CONTEXTS:  # defined, reached only from another dialplan context
        assert ctx in dp.contexts and ctx not in values
        assert any(src != ctx and dst == ctx for src, dst in dp.jumps), ctx
    # The benchmark's pure-dialplan IVR; the opposition line's failsafe (its journal).
    assert local_variables(dp) == {"CHOICE", "TRIES", "OPT_CALLER", "OPT_KEY", "OPT_DIGIT",
                                   "CALLEE_KEY", "LEGAL_CUTS"}
    assert not local_variables(dp) & values
    for name in ASTERISK_PRIVATE:
        assert name in dp.reads and name not in dp.writes and name not in values


def test_the_failsafe_and_routes_match_the_controller() -> None:
    dp = parse(dialplan_texts())
    routes = {route: (url, args) for url, route, args in agi_routes(dp)}
    url, args = routes[contract.ROUTE_IVR]
    assert url == contract.VAR_AGI_URL
    by_position = {f"agi_arg_{i}": a for i, a in enumerate(args, 1)}
    assert by_position[contract.ARG_CALL_ID] == f"${{{contract.VAR_CALL_ID}}}"
    assert by_position[contract.ARG_AMD_STATUS] == f"${{{contract.VAR_AMD_STATUS}}}"
    assert by_position[contract.ARG_TOKEN] == f"${{{contract.VAR_TOKEN}}}"
    # The inbound line has no channel variable from the controller: globals only, the URL and
    # the callback secret in the argument the `callback` route reads.
    url, args = routes[contract.ROUTE_CALLBACK]
    assert url == contract.GLOBAL_AGI_URL
    assert {f"agi_arg_{i}": a for i, a in enumerate(args, 1)} == \
        {contract.ARG_CALLBACK_SECRET: f"${{{contract.GLOBAL_CALLBACK_SECRET}}}"}
    assert contract.OUTBOUND_EXTEN in dp.contexts[contract.OUTBOUND_CONTEXT]
    assert contract.CALLBACK_EXTEN in dp.contexts[contract.CALLBACK_CONTEXT]
    assert contract.CARRIER_CONTEXT in pjsip_contexts((DIALPLANS / PJSIP).read_text())
    keys = {f.partition(":")[0].strip() for name, *fields in dp.events for f in fields
            if name == contract.EVENT_FAILSAFE}
    assert keys == {contract.FAILSAFE_CALL_ID, contract.FAILSAFE_STATUS}



def _context_code(name: str) -> list[str]:
    """The code lines of one context of the shipped dialplans, comments stripped."""
    dp, inside, out = parse(dialplan_texts()), False, []
    for line in dp.code:
        if m := CONTEXT.match(line):
            inside = m.group(1) == name
        elif inside:
            out.append(line)
    return out


def _failsafe_unless_done(context: str, route: str, call_id: str) -> list[str]:
    """The context's code from its failsafe label on, after checking that the line after the
    AGI of `route` takes it unless VAR_DONE is 1, and that its first step is the UserEvent."""
    code = _context_code(context)
    (agi,) = [i for i, line in enumerate(code) if f"/{route}," in line]
    check = f'GotoIf($["${{{contract.VAR_DONE}}}" != "1"]?failsafe)'
    assert code[agi + 1].endswith(f"n,{check}"), code[agi + 1]
    assert code[agi + 2].endswith("n,Hangup()")  # done: the only way out without the failsafe
    (start,) = [i for i, line in enumerate(code) if "(failsafe)," in line]
    event = f"UserEvent({contract.EVENT_FAILSAFE},{contract.FAILSAFE_CALL_ID}: " \
        f"{call_id},{contract.FAILSAFE_STATUS}: ${{{contract.VAR_AGI_STATUS}}})"
    assert code[start].endswith(event)
    return code[start:]


def test_the_opposition_line_takes_its_failsafe_unless_the_controller_says_done() -> None:
    """AGISTATUS is SUCCESS when FastAGI accepts the connection and closes it unserved (a peer
    not in agi.allowed_peers, no route, a crash): only VAR_DONE, set by the `callback` route,
    lets the line hang up without the legal mentions."""
    failsafe = _failsafe_unless_done(contract.CALLBACK_CONTEXT, contract.ROUTE_CALLBACK,
                                     contract.FAILSAFE_CALLBACK)
    steps = [line.removeprefix("same => ").removeprefix("n,") for line in failsafe]
    family, sounds = contract.JOURNAL_FAMILY, contract.SOUNDS_DIR
    digit = contract.GLOBAL_OPTOUT_DIGIT
    # No controller took the call: the line asks for the key itself (the notice, once) and
    # journals the caller's number in AstDB, where every controller reads it; the caller hears
    # the confirmation only once the entry is there, the legal mentions on every other way out.
    assert steps[1:] == [
        "Set(OPT_CALLER=${CALLERID(num)})",
        "Set(OPT_CALLER=${FILTER(0-9+,${SHIFT(OPT_CALLER,\\;)})})",
        'GotoIf($["${OPT_CALLER}" = ""]?legal)',
        # 1, or the opposition key the outbound intro teaches ([globals], 9 when unset)
        f'Set(OPT_DIGIT=${{IF($["${{{digit}}}" = ""]?9:${{{digit}}})}})',
        f"Read(OPT_KEY,{sounds}/callback_notice,1,t(),1,5)",  # no terminator: # may be the key
        'GotoIf($["${OPT_KEY}" != "1" & "${OPT_KEY}" != "${OPT_DIGIT}"]?legal)',
        f"Set(DB({family}/${{OPT_CALLER}})=${{EPOCH}})",
        f'GotoIf($["${{DB_EXISTS({family}/${{OPT_CALLER}})}}" != "1"]?legal)',
        f"UserEvent({contract.EVENT_JOURNALED})",
        f"Playback({sounds}/optout_confirm)",
        "Hangup()",
        f"n(legal),Playback({sounds}/legal)",
        "Hangup()"]


def test_the_outbound_line_takes_its_failsafe_unless_the_controller_says_done() -> None:
    """As the opposition line: a session accepted then closed unserved (the PBX's address not
    in agi.allowed_peers, a controller killed mid-call) gives AGISTATUS=SUCCESS; only VAR_DONE,
    set by the `ivr` route at the end of the flow, lets the call end without the failsafe."""
    failsafe = _failsafe_unless_done(contract.OUTBOUND_CONTEXT, contract.ROUTE_IVR,
                                     f"${{{contract.VAR_CALL_ID}}}")
    # The campaign's legal mentions, as the controller named them on the Originate (owed in
    # every message), then a clean temporary failure, retried. The opposition key the intro
    # taught still works during them: the call's channel is journaled, its controller opposes
    # the number (an Originate without the key plays them plainly).
    legal, key = f"${{{contract.VAR_LEGAL}}}", f"${{{contract.VAR_OPTOUT_DIGIT}}}"
    confirm = f"${{{contract.VAR_OPTOUT_CONFIRM}}}"
    entry = f"{contract.JOURNAL_CALLS}/${{UNIQUEID}}"
    steps = [line.removeprefix("same => ").removeprefix("n,") for line in failsafe]
    assert steps[1:17] == [
        f'GotoIf($["{legal}" = ""]?end)',
        f'GotoIf($["{key}" = ""]?plain)',
        "Set(LEGAL_CUTS=0)",
        f"n(legal),Read(CALLEE_KEY,{legal},1,t(),1,2)",  # no terminator: # cuts them too
        'GotoIf($["${CALLEE_KEY}" = ""]?end)',
        "Set(LEGAL_CUTS=$[${LEGAL_CUTS} + 1])",
        # another key cut them: again, still listening for the opposition key, three times
        f'GotoIf($["${{CALLEE_KEY}}" != "{key}" & ${{LEGAL_CUTS}} < 3]?legal)',
        f'GotoIf($["${{CALLEE_KEY}}" != "{key}"]?plain)',  # then once more, whole
        f"Set(DB({entry})=${{EPOCH}})",
        f'GotoIf($["${{DB_EXISTS({entry})}}" != "1"]?plain)',  # not kept: no func_db
        f"UserEvent({contract.EVENT_JOURNALED})",
        f'GotoIf($["{confirm}" = ""]?end)',
        f"Playback({confirm})",  # told that it is taken, only once it is
        "Goto(end)",
        f"n(plain),Playback({legal})",
        "n(end),Hangup(41)"]
    assert steps[17].startswith("exten => h,")

TAMPERED = [
    ("exten => s,1,NoOp(${IVR_NEW_THING})", "'IVR_NEW_THING' is used by a dialplan"),
    ("[ivr-elsewhere]\nexten => s,1,Hangup()", "'ivr-elsewhere' is used by a dialplan"),
    ("exten => s,1,AGI(agi://127.0.0.1:4573/ivr)", "hard-coded FastAGI URL"),
    ("exten => s,1,AGI(${IVR_AGI}/other)", "'other' is used by a dialplan"),
    ("exten => s,1,AGI(${SOMEURL}/ivr)", "the URL must be one contract variable"),
    ("exten => s,1,UserEvent(IvrOther,CallId: x)", "'IvrOther' is used by a dialplan"),
    ("exten => s,1,Playback(sounds2/x)", "'sounds2' is used by a dialplan"),
    ("exten => s,1,Set(DB(ivr_other/${EXTEN})=1)", "'ivr_other' is used by a dialplan"),
    ("exten => s,1,NoOp(${DB_EXISTS(ivr_spare/x)})", "'ivr_spare' is used by a dialplan"),
    ("exten => s,1,Set(TMP=1)\n[other]\nexten => s,1,NoOp(${TMP})", "'TMP' is used by"),
]


@pytest.mark.parametrize("extra,expected", TAMPERED)
def test_a_name_outside_the_contract_is_reported(extra: str, expected: str) -> None:
    texts, pjsip = shipped()
    found = violations(texts + [f"[ivr-outbound]\n{extra}\n"], pjsip)
    assert any(expected in v for v in found), found


def test_a_constant_no_dialplan_uses_is_reported() -> None:
    texts, pjsip = shipped()
    texts = [t.replace("${IVR_AGI_URL}", "${IVR_AGI}") for t in texts]
    assert any("contract.GLOBAL_AGI_URL" in v for v in violations(texts, pjsip))
    found = violations(texts, pjsip.replace("context=ivr-from-carrier", "context=elsewhere"))
    assert "'elsewhere' is used by a dialplan but is not in contract.py" in found
    assert "pjsip context=elsewhere is defined by no dialplan" in found
    texts = [t.replace("[ivr-from-carrier]", "[ivr-from-trunk]") for t in shipped()[0]]
    found = violations(texts, pjsip.replace("context=ivr-from-carrier", "context=ivr-from-trunk"))
    assert any("contract.CARRIER_CONTEXT" in v for v in found), found


def test_every_shipped_context_is_in_the_ivr_namespace() -> None:
    """The admin #includes these files into an extensions.conf of their own: a context of a
    name it already has (a [from-carrier] of theirs) is merged with it, Asterisk only warning
    "already in use" per extension both define. The admin's inbound calls then reached the
    opposition line, and the carrier's their desk. Every context defined or named is ivr-*."""
    texts, pjsip = shipped()
    named = set(parse(texts).contexts) | pjsip_contexts(pjsip)
    assert {c for c in named if not c.startswith("ivr-")} == set()
    assert contract.CARRIER_CONTEXT == "ivr-from-carrier"


def test_no_dialplan_hard_codes_the_fastagi_port() -> None:
    for text in dialplan_texts():
        code = "\n".join(COMMENT.sub("", line) for line in text.splitlines())
        assert "agi://" not in code and "4573" not in code


def test_the_sandbox_writes_the_agi_url_global_from_the_config(tmp_path: Path) -> None:
    cfg = config.from_dict({"agi": {"host": "127.0.0.1", "port": 4590},
                            "flow": {"optout_key": "8"}}, tmp_path)
    sandbox = Sandbox(cfg)
    glob = sandbox.globals({})
    assert glob[contract.GLOBAL_AGI_URL] == "agi://127.0.0.1:4590"
    assert "IVR_AGI_URL = agi://127.0.0.1:4590" in sandbox._extensions({}).splitlines()
    # The opposition line's failsafe takes the intro's opposition key, not a literal 9.
    assert "IVR_OPTOUT_DIGIT = 8" in sandbox._extensions({}).splitlines()
    dp = parse(dialplan_texts())
    values = set(contract_values().values())
    for name in glob:  # every global it writes is a contract name some dialplan reads
        assert name in values and name in dp.reads, name


def test_agi_url_brackets_ipv6() -> None:
    assert contract.agi_url("::1", 4590) == "agi://[::1]:4590"
    assert contract.agi_url("pbx.example", 4573) == "agi://pbx.example:4573"
