"""Remote commands from the monitoring station (`<root>/cmd`), checked before anything acts on them.

What arrives is a signed envelope (agent/security.py); `Gate.admit` takes it from raw bytes to a typed command
along one bounded path: retained? any station key? size, JSON limits, signature, target, clock window, nonce,
then the command's own schema. Anything else is refused with a short reason on `<root>/cmd/result`; the agent
keeps running whatever the payload.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from agent.security import CommandSettings, Verifier
from agent.security_parse import Refused, excerpt, load_json
from agent.storage.nonces import CommandStore
from common.errors import AgentError

SAFE_ID = r"^[A-Za-z0-9_.:-]{0,64}$"
MAX_RECEIVED = 1024 * 1024 + 1  # the uplink keeps at most this much of a payload (the config cap's ceiling + 1)


class CommandError(AgentError):
    """A command that cannot be accepted; the message is the reason sent back."""


@dataclass(frozen=True)
class Received:
    """One message from `<root>/cmd` as the uplink got it: the payload's head, its real size, the retain flag."""

    payload: bytes
    retained: bool = False
    size: int | None = None  # None: len(payload)


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: str = Field("", pattern=SAFE_ID, description="Caller's request id, echoed in the result.")


class Arm(_Command):
    cmd: Literal["arm"]


class Disarm(_Command):
    cmd: Literal["disarm"]


class SetMode(_Command):
    cmd: Literal["set_mode"]
    mode: Literal["overt", "covert"] = Field(description="overt: strobe/siren on alarms; covert: silent.")


class Silence(_Command):
    cmd: Literal["silence"]


class StartLoan(_Command):
    """The unit is installed and armed on site: its loan begins now (once; a second start is refused)."""

    cmd: Literal["start_loan"]
    reference: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_./:-]+$")


class ExtendLoan(_Command):
    """Extend the loan (the client paid): by days, and/or up to a paid-until date; reference = invoice/order."""

    cmd: Literal["extend_loan"]
    days: int = Field(0, ge=0, le=3650)
    paid_until: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD, UTC.")
    reference: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_./:-]+$")


class Verdict(_Command):
    """The operator's verdict on an alarm (for the deployment report): recorded in the unit's signed audit log."""

    cmd: Literal["verdict"]
    event_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    verdict: Literal["genuine", "false", "unknown"]
    police_dispatched: bool
    note: str = Field("", max_length=200, description="The operator's note.")


class Hold(_Command):
    """Keep an event's media past the retention period (evidence a case needs); recorded in the audit log."""

    cmd: Literal["hold"]
    event_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    reference: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_./:-]+$",
                           description="The case or request the hold is for.")


class Release(_Command):
    """End a hold: the event's media are deleted at the next retention pass if they are past the period."""

    cmd: Literal["release"]
    event_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")


Command = Annotated[Union[Arm, Disarm, SetMode, Silence, StartLoan, ExtendLoan, Verdict, Hold, Release],
                    Field(discriminator="cmd")]
_ADAPTER = TypeAdapter(Command)


def command_from(data: object) -> Command:
    """The typed command in an (already bounded) JSON value."""
    if not isinstance(data, dict):
        raise CommandError("a command must be a JSON object with a 'cmd' field")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'][1:] or err['loc']) or 'cmd'}: {err['msg']}"
                             for err in exc.errors()[:3])
        raise CommandError(excerpt(problems, 200)) from None


def parse_command(payload: bytes, max_bytes: int = 16384) -> Command:
    """A bare command object from bytes (no envelope): CommandError for anything else, never another exception."""
    try:
        return command_from(load_json(payload, max_bytes, "command"))
    except Refused as exc:
        raise CommandError(str(exc)) from None


class Gate:
    """Raw message -> accepted command, or CommandError with a short reason; `last_id` is the caller's id."""

    def __init__(self, settings: CommandSettings, device_id: str, store: CommandStore) -> None:
        self.settings = settings
        self.verifier = Verifier(settings, device_id)
        self.store = store
        self.last_id = ""

    @property
    def open(self) -> bool:
        return bool(self.settings.station_keys)

    def admit(self, received: Received, now: float) -> Command:
        self.last_id = ""
        try:
            return self._admit(received, now)
        except Refused as exc:
            raise CommandError(str(exc)) from None

    def _admit(self, received: Received, now: float) -> Command:
        if received.retained:
            raise Refused("retained message: commands are never taken from retained messages")
        if not self.open:
            raise Refused("this unit accepts no commands: no station key configured")
        size = len(received.payload) if received.size is None else received.size
        if size > self.settings.max_bytes:
            raise Refused(f"command too large ({size} bytes, at most {self.settings.max_bytes})")
        data = load_json(received.payload, self.settings.max_bytes, "command")
        self.last_id = _safe_id(data)
        envelope = self.verifier.open(data, now)
        command = command_from(envelope.cmd)
        forget_after = envelope.expires_at + self.settings.clock_past_s + self.settings.clock_future_s
        if not self.store.use_nonce(envelope.nonce, forget_after, now):
            raise Refused("replayed command (nonce already used)")
        return command


def _safe_id(data: object) -> str:
    """The caller's id in a refused command, if it is a safe one, so the station can match the refusal."""
    command = data.get("cmd") if isinstance(data, dict) else None
    found = command.get("id", "") if isinstance(command, dict) else ""
    return found if isinstance(found, str) and re.fullmatch(SAFE_ID, found) else ""
