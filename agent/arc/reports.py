"""What the ARC link's thread tells the rest of the agent: a path failed or came back, or a signal was refused.

Typed so the reactions that turn them into MQTT events match on the kind of report, not on dict keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class PathFailed:
    path: str        # "host:port" of the receiver path
    reason: str      # "no valid answer" or "answer NAK"


@dataclass(frozen=True)
class PathRestored:
    path: str


@dataclass(frozen=True)
class SignalRefused:
    """The receiver answered DUH: it cannot process this signal, so resending cannot help."""

    signal: str
    code: str
    event_id: str | None


ArcReport = Union[PathFailed, PathRestored, SignalRefused]
