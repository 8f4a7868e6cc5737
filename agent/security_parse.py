"""The one bounded path from untrusted bytes (the network, key files) to JSON values: it refuses, it never crashes.

Limits are checked before the costly step they protect: the size before decoding, the nesting depth before
json.loads (whose C scanner recurses), number lengths inside the parse (int() of 4,300+ digits raises), and every
string, keys included, for valid Unicode afterwards (JSON escapes can spell lone surrogates, which crash later
when the value is stored or encoded). Duplicate keys are refused, so what was signed is what is read.
"""

from __future__ import annotations

import json
import math
import re

MAX_DEPTH = 16
MAX_NUMBER_CHARS = 32
MAX_EXCERPT = 120

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_UNSAFE = re.compile(r"[^\x20-\x7e]")


class Refused(ValueError):
    """Untrusted input that is not accepted; the message is a short reason, safe to log and to send back."""


def excerpt(text: object, limit: int = MAX_EXCERPT) -> str:
    """A short, printable-ASCII rendering of something untrusted, safe for logs and results."""
    shown = _UNSAFE.sub("?", str(text))
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def _depth(text: str) -> int:
    """Deepest [ / { nesting outside strings (a linear scan, no recursion)."""
    depth = deepest = 0
    for char in _STRINGS.sub('""', text):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _int(digits: str) -> int:
    if len(digits) > MAX_NUMBER_CHARS:
        raise Refused(f"number too long ({len(digits)} characters, at most {MAX_NUMBER_CHARS})")
    return int(digits)


def _float(digits: str) -> float:
    if len(digits) > MAX_NUMBER_CHARS:
        raise Refused(f"number too long ({len(digits)} characters, at most {MAX_NUMBER_CHARS})")
    value = float(digits)
    if not math.isfinite(value):
        raise Refused("number out of range")
    return value


def _constant(name: str) -> None:
    raise Refused(f"{name} is not allowed")


def _object(pairs: list[tuple[str, object]]) -> dict:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise Refused("duplicate key in an object")
    return data


def _check_strings(value: object) -> None:
    """Every string, keys included, must be encodable UTF-8 (no lone surrogates). Depth is already bounded."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Refused("a string holds an invalid code point (lone surrogate)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)


def load_json(payload: bytes, max_bytes: int, what: str = "payload") -> object:
    """Parse untrusted JSON within limits; any problem is a Refused with a short reason."""
    if len(payload) > max_bytes:
        raise Refused(f"{what} too large ({len(payload)} bytes, at most {max_bytes})")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(f"{what} is not valid UTF-8") from None
    if _depth(text) > MAX_DEPTH:
        raise Refused(f"{what} nested too deeply (at most {MAX_DEPTH} levels)")
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant,
                           object_pairs_hook=_object)
    except Refused:
        raise
    except (ValueError, RecursionError, OverflowError) as exc:  # JSONDecodeError is a ValueError
        raise Refused(f"{what} is not JSON: {excerpt(exc)}") from None
    _check_strings(value)
    return value
