"""The base of every settings class (agent/, drivers/, models/) and the one formatter of their validation errors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _excerpt(value: object, limit: int = 80) -> str:
    """A bounded repr of a refused value: a 5,000-digit number or a 1 MB string is named, never echoed whole."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    try:
        text = repr(value)
    except ValueError:  # a container holding a number past Python's digit limit
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def shown_key(part: object) -> str:
    """A key as an error line names it: escaped when it holds a newline or other unprintable character, so one
    hostile key can never split a message into lines that look like other errors."""
    text = str(part)
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _describe_error(error: dict) -> str:
    """One pydantic error as a line naming the key: 'camera.fps: Input should be greater than 0 (got -5)'."""
    where = ".".join(shown_key(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    got = error.get("input")
    shown = "" if isinstance(got, dict) else f" (got {_excerpt(got)})"
    return f"{where}: {error['msg']}{shown}"


def describe_errors(exc: ValidationError) -> list[str]:
    """Every error of a failed validation, one line each, in pydantic's order."""
    return [_describe_error(error) for error in exc.errors()]
