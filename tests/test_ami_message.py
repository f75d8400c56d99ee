"""ami._message builds the same Message as panoramisk's Message.from_line; _Protocol frames a
stream of AMI bytes into the same messages as panoramisk's AMIProtocol, split anywhere."""
from __future__ import annotations

from typing import Any

import pytest
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from ivr.telephony.ami import _message, _Protocol

LINES = [
    "Event: Hangup\r\nPrivilege: call,all\r\nChannel: Local/+33199000012@ivr-sim-0001;2\r\n"
    "Uniqueid: ivr-abcdef12-123-0a0b0c0d\r\nCause: 16\r\nCause-txt: Normal Clearing",
    "Event: OriginateResponse\r\nActionID: host-1-2\r\nResponse: Success\r\nReason: 4\r\n"
    "Uniqueid: ivr-x-1-ab\r\nAccountCode: \r\nCallerIDNum: <unknown>",
    "Response: Success\r\nActionID: host-1-3\r\nMessage: Originate successfully queued",
    "Response: Error\r\nActionID: host-1-4\r\nMessage: Originate failed: a: b",
    "Response: Follows\r\nActionID: a1\r\nPrivilege: Command\r\nline one\nline two\r\n--END--",
    "Response: Fail\r\nActionID: a2\r\nsome body",
    "Event: UserEvent\r\nChanVariable: A=1\r\nChanVariable: B=2\r\nUserEvent: IvrFailsafe",
    "Event: AGIExec\r\nResult: 200%20result%3D1%20\r\nCommandId: 7",
    "Event: X\r\nCAUSE: 1\r\ncause: 2",
    "event: lowercase\r\nFoo: bar",
    "Foo: bar\r\nBaz: qux",
    "Event: Content\r\nContent: kept or not",
    "Event: NoValue\r\nEmpty: \r\nbroken line\r\n: odd",
    "",
]


def same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return (type(a), a._store, a.content, a.manager, a.id, a.action_id, a.success) == \
        (type(b), b._store, b.content, b.manager, b.id, b.action_id, b.success)


@pytest.mark.parametrize("line", LINES)
def test_the_direct_build_equals_panoramisks(line: str) -> None:
    assert same(_message(line), Message.from_line(line))


class Sink:
    def __init__(self) -> None:
        self.got: list[Message] = []

    def dispatch(self, message: Message) -> None:
        self.got.append(message)


def frame(protocol: type[AMIProtocol], chunks: list[bytes]) -> tuple[list[Message], Any]:
    p = protocol()
    p.connection_made(None)
    p.factory = Sink()
    for chunk in chunks:
        p.data_received(chunk)
    return p.factory.got, p.version


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
def test_a_stream_split_anywhere_gives_the_same_messages(size: int) -> None:
    stream = ("Asterisk Call Manager/9.0.0\r\n" + "\r\n\r\n".join(
        line for line in LINES if line) + "\r\n\r\nEvent: Half").encode()
    chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
    ours, version = frame(_Protocol, chunks)
    theirs, their_version = frame(AMIProtocol, chunks)
    assert version == their_version  # read from the first chunk, as panoramisk does
    assert version == ("9.0.0" if size > 30 else None)
    assert len(ours) == len(theirs) == 7  # the events; responses nobody awaits are dropped
    assert all(same(a, b) for a, b in zip(ours, theirs))
