"""The PBX-node seam: what the dialer needs from one Asterisk, and nothing of how it is spoken.

In the manner of httpx's transports: `PbxNode` is the one I/O interface of the telephony side.
`AmiNode` (ivr/telephony/ami_node.py) implements it over AMI with panoramisk; the fake PBX
(ivr/telephony/fake_pbx.py) serves real AMI and drives real FastAGI over loopback sockets, so
the dialer and the run loop are tested through AmiNode without root and without Asterisk.

Events are typed here: the dialer never reads an AMI field name.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from ivr.errors import PbxError

LOCAL_OTHER = "-2"  # OtherChannelId suffix: the ;2 (callee) half of a Local channel


class NodeDisconnected(PbxError):
    """The link to the node is down, or dropped before the reply: the action may or may not
    have reached the PBX. An Originate in that state is never re-sent; reconciliation decides."""


class NotSent(NodeDisconnected):
    """The link was already down when the action was to leave: nothing was written to the node,
    so an Originate in that state is known not to have dialled (the attempt is withdrawn)."""


class OriginateRefused(PbxError):
    """The node answered and refused the Originate: nothing was dialled."""

    def __init__(self, message: str, *, shutting_down: bool = False) -> None:
        super().__init__(message)
        self.shutting_down = shutting_down  # the node is going away: a fault, retried


class ActionRefused(PbxError):
    """The node answered another action than an Originate with an Error (permission denied,
    an action it does not know)."""


class ActionTimeout(PbxError):
    """The node sent no reply in time. As with NodeDisconnected, an Originate may still have
    reached the PBX: it is never re-sent; reconciliation decides."""


@dataclass(frozen=True)
class OriginateRequest:
    channel: str              # the dial string, already checked
    channel_id: str           # becomes the Uniqueid of the IVR-side channel
    caller_id: str
    timeout_ms: int
    context: str
    exten: str
    # Holds the attempt's AGI token: kept out of repr, so no log line can carry it.
    variables: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def other_channel_id(self) -> str:
        return self.channel_id + LOCAL_OTHER


# -- events ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OriginateResult:
    """The Originate's outcome: answered (success) or not, with Asterisk's reason code."""
    node: str
    channel_id: str
    success: bool
    reason: int | None = None


@dataclass(frozen=True)
class ChannelHangup:
    """A channel ended. `callee_half` marks the ;2 half of a Local channel, whose cause is
    the one that explains a failed call; channel_id is then the IVR-side id."""
    node: str
    channel_id: str
    cause: int | None
    callee_half: bool = False


@dataclass(frozen=True)
class Failsafe:
    """The dialplan could not run the AGI (controller unreachable): the call was hung up.
    channel_id: the Uniqueid of the channel that raised it (Asterisk stamps it on every
    UserEvent), "" if the event had none. Only it says whose call this is: call ids start at
    1 in every store, and every campaign's controller on the PBX sees the event."""
    node: str
    call_id: int | None
    status: str
    channel_id: str = ""


@dataclass(frozen=True)
class Reconnected:
    """The link came back after a drop: events were missed, reconcile."""
    node: str


@dataclass(frozen=True)
class OptoutsJournaled:
    """A failsafe (the opposition line's, or an outbound call's) wrote an opposition into the
    node's journal (contract.JOURNAL_FAMILY): read it now (journaled_optouts)."""
    node: str


@dataclass(frozen=True)
class JournaledOptout:
    """One opposition a failsafe journaled: the opposition line's caller ID as the PBX got it
    (not yet E.164), or ("", at, channel) an outbound call's channel (its Uniqueid) whose
    callee pressed the opposition key; when, from the PBX's clock (None: not an epoch)."""
    number: str
    at: datetime | None
    channel_id: str = ""


@dataclass(frozen=True)
class ChannelHold:
    """The callee put the call on hold (`held`) or took it off. channel_id: the IVR-side id
    the call was originated with (the held channel's Linkedid: the PJSIP channel itself, or
    the one a Local channel dialled)."""
    node: str
    channel_id: str
    held: bool


NodeEvent = (OriginateResult | ChannelHangup | Failsafe | Reconnected | ChannelHold
             | OptoutsJournaled)


@dataclass(frozen=True)
class ChannelListing:
    """One CoreShowChannels: the Uniqueids of the node's live channels, and of those already
    answered (state Up). Not what runs on them: an AGI session's EXEC, or the failsafe's
    Playback once a session closed, shows another application than AGI."""
    live: frozenset[str]
    answered: frozenset[str] = frozenset()


@runtime_checkable
class PbxNode(Protocol):
    name: str
    max_channels: int

    @property
    def up(self) -> bool:
        """Logged in and not shutting down: new calls may be placed."""

    @property
    def link(self) -> int:
        """Which connection to the node is current: one more at each new login. An action
        sent now goes out on it, and its events (a call's answer, its hangup) come back on
        it; a call sent on an earlier one may have lost them in the drop."""

    async def connect(self, timeout: float = 10.0) -> None:
        """Connect and log in; PbxError with a one-line fix when that fails."""

    async def wait_up(self, timeout: float) -> bool:
        """Wait until the node is up again (after a drop); False on timeout."""

    async def originate(self, request: OriginateRequest) -> None:
        """Queue the call. Raises OriginateRefused, NodeDisconnected or ActionTimeout."""

    async def hangup(self, channel_id: str, cause: int = 16) -> None:
        """Hang one channel up."""

    async def channels(self) -> set[str]:
        """The Uniqueids of the node's live channels, for reconciliation."""

    async def listing(self) -> ChannelListing:
        """The live channels, and which of them were answered: an adopted call answered
        before its adoption had its FastAGI session (it opens once) with someone else."""

    async def journaled_optouts(self) -> list[JournaledOptout]:
        """The oppositions the failsafes journaled on this node (every one so far: the PBX
        keeps them). ActionRefused when the node will not say."""

    def events(self) -> AsyncIterator[NodeEvent]:
        """Typed events, in order, for as long as the node lives (the iteration ends after
        close())."""

    def close(self) -> None:
        """Close the link for good; no reconnect."""
