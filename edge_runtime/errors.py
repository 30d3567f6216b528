"""Why the edge runtime refuses a packet or a rollback: one exception per reason, each with its gRPC status.

`reason` travels to the client as the trailing metadata value of REFUSAL_KEY, so callers can branch on it
without parsing messages; the message says what was expected and what arrived.
"""

from __future__ import annotations

from plasma import packet
from plasma.server.errors import FailedPrecondition, InvalidArgument, PermissionDenied, PlasmaError

REFUSAL_KEY = "plasma-refusal"


class Refused(PlasmaError):
    """Base of the runtime's own refusals (packet-level ones are mapped by `refusal`)."""

    reason = "refused"


class NotNewer(Refused, FailedPrecondition):
    reason = "not-newer"


class BaseMissing(Refused, FailedPrecondition):
    reason = "base-missing"


class BaseMismatch(Refused, FailedPrecondition):
    reason = "base-mismatch"


class SelfTestFailed(Refused, FailedPrecondition):
    reason = "self-test-failed"


class NothingToRollBack(Refused, FailedPrecondition):
    reason = "nothing-to-roll-back"


class NotPrevious(Refused, FailedPrecondition):
    reason = "not-previous"


class Malformed(Refused, InvalidArgument):
    reason = "malformed"


class Untrusted(Refused, PermissionDenied):
    """Unsigned, signed by an untrusted key, or tampered: `reason` says which."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def refusal(exc: packet.PacketError) -> Refused:
    """The runtime error for a packet that failed verification."""
    if isinstance(exc, (packet.PacketUnsigned, packet.PacketUntrusted, packet.PacketTampered)):
        return Untrusted(str(exc), exc.reason)
    return Malformed(str(exc))
