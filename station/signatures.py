"""The units' public keys the station trusts, and the check of the signature a unit puts on what it sends
(`key`, `sig`: agent/uplink/publisher.py)."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from nacl.signing import VerifyKey

from agent.evidence.audit import canonical
from agent.evidence.keys import key_id, verify_signature
from common.errors import ConfigError

ANY_DEVICE = "*"  # a unit key trusted for whichever device id a message names


def public_key(text: str, where: str) -> str:
    """A unit public key as given (base64 of 32 bytes), checked; ConfigError naming where it came from."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"{where}: {text[:60]!r} is not a unit public key (base64 of 32 bytes)")
    return text.strip()


def load_unit_keys(path: Path) -> dict[str, str]:
    """A keys file: one `<device_id> <public key>` a line (or a key alone: any device); `#` starts a comment."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"unit keys file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    keys = {}
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) > 2:
            raise ConfigError(f"unit keys file {path} line {number}: expected '<device_id> <public key>'")
        device, text = (ANY_DEVICE, words[0]) if len(words) == 1 else words
        keys[device] = public_key(text, f"unit keys file {path} line {number}")
    return keys


def signature_verdict(message: dict, public_b64: str) -> str:
    """'verified', or why not: 'unsigned', 'signed by another key <id>' or 'forged' (the signature fails)."""
    signature, signer = message.get("sig"), message.get("key")
    if not isinstance(signature, str) or not isinstance(signer, str):
        return "unsigned"
    expected = key_id(VerifyKey(base64.b64decode(public_b64)))
    if signer != expected:
        return f"signed by another key {signer[:16]!r}"
    body = {name: value for name, value in message.items() if name != "sig"}
    return "verified" if verify_signature(public_b64, canonical(body), signature) else "forged"
