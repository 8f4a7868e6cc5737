"""The base of every settings class (agent/, drivers/, models/) and the one formatter of their validation errors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _describe_error(error: dict) -> str:
    """One pydantic error as a line naming the key: 'camera.fps: Input should be greater than 0 (got -5)'."""
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    got = error.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{where}: {error['msg']}{shown}"


def describe_errors(exc: ValidationError) -> list[str]:
    """Every error of a failed validation, one line each, in pydantic's order."""
    return [_describe_error(error) for error in exc.errors()]
