"""Remote commands from the monitoring station (`<root>/cmd`), validated before anything acts on them.

A malformed or unknown command is refused with a reason on `<root>/cmd/result`; the agent keeps running.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from common.errors import AgentError


class CommandError(AgentError):
    """A command that cannot be accepted; the message is the reason sent back."""


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field("", max_length=128, description="Caller's request id, echoed in the result.")


class Arm(_Command):
    cmd: Literal["arm"]


class Disarm(_Command):
    cmd: Literal["disarm"]


class SetMode(_Command):
    cmd: Literal["set_mode"]
    mode: Literal["overt", "covert"] = Field(description="overt: strobe/siren on alarms; covert: silent.")


class Silence(_Command):
    cmd: Literal["silence"]


Command = Annotated[Union[Arm, Disarm, SetMode, Silence], Field(discriminator="cmd")]
_ADAPTER = TypeAdapter(Command)


def parse_command(payload: bytes) -> Command:
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError("a command must be a JSON object with a 'cmd' field")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'][1:] or err['loc']) or 'cmd'}: {err['msg']}"
                             for err in exc.errors())
        raise CommandError(problems) from None


def request_id(payload: bytes) -> str:
    """Best-effort id of a command that failed validation, so the caller can match the refusal."""
    try:
        data = json.loads(payload)
        return str(data.get("id", ""))[:128] if isinstance(data, dict) else ""
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ""
