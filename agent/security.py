"""Signed command envelopes (Ed25519, PyNaCl): the station signs, the unit verifies; station key files.

An envelope is one JSON object: `v`, `device_id` (the target unit), `cmd` (the command object), `issued_at` and
`expires_at` (Unix seconds, integers), `nonce` (32 hex digits, random), `key_id` (which station key) and `sig`
(base64 Ed25519 signature). The signature covers DOMAIN + the canonical encoding of every field but `sig`
(sorted keys, no spaces, ASCII), so the unit re-encodes what it parsed and checks exactly that.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.security_parse import Refused, load_json
from common.errors import ConfigError
from common.settings import Section

DOMAIN = b"pid-agent command v1\n"
KEY_ID = r"^[A-Za-z0-9_.:-]{1,64}$"
KEY_FILE_MAX_BYTES = 4096


def _public_key(text: str) -> str:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("public_key must be base64") from None
    if len(raw) != 32:
        raise ValueError(f"public_key must be 32 bytes of Ed25519 key, got {len(raw)}")
    return text


class StationKey(Section):
    id: str = Field(pattern=KEY_ID, description="The key id a station puts in its envelopes.")
    public_key: str = Field(description="Base64 Ed25519 public key (`pid-station keys export`).")

    @field_validator("public_key")
    @classmethod
    def _key_is_ed25519(cls, text: str) -> str:
        return _public_key(text)


class CommandSettings(Section):
    station_keys: tuple[StationKey, ...] = Field((), description="Station keys trusted to command this unit; "
                                                                 "none: the unit accepts no command at all.")
    max_bytes: int = Field(16384, ge=256, le=1024 * 1024, description="Largest command payload read at all.")
    clock_past_s: int = Field(40, ge=1, le=86400, description="Clock margin past a command's expiry for which its "
                                                              "nonce is still remembered (DC-09 window: -40 s); the "
                                                              "signed expiry, not the issue time, ends a command, so "
                                                              "one queued for an offline unit still applies.")
    clock_future_s: int = Field(20, ge=0, le=3600, description="A command issued further ahead of the unit's "
                                                               "clock than this is refused (+20 s).")
    max_ttl_s: int = Field(3600, ge=1, le=7 * 86400, description="Longest expiry a command may carry.")
    refusals_per_min: int = Field(10, ge=1, le=1000, description="Refusals answered and logged per minute; "
                                                                 "beyond, they are only counted.")

    @field_validator("station_keys")
    @classmethod
    def _unique_ids(cls, keys: tuple[StationKey, ...]) -> tuple[StationKey, ...]:
        ids = [key.id for key in keys]
        if len(set(ids)) != len(ids):
            raise ValueError(f"station key ids must be unique, got {ids}")
        return keys


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    v: int = Field(ge=1, le=1)
    device_id: str = Field(max_length=64)
    cmd: dict
    issued_at: int = Field(ge=0, le=2**40)
    expires_at: int = Field(ge=0, le=2**40)
    nonce: str = Field(pattern=r"^[0-9a-f]{32}$")
    key_id: str = Field(pattern=KEY_ID)
    sig: str = Field(max_length=100)


def canonical(fields: dict) -> bytes:
    """The bytes that are signed: every field but the signature, sorted, compact, ASCII."""
    body = {key: value for key, value in fields.items() if key != "sig"}
    return DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sign(command: dict, device_id: str, key: SigningKey, key_id: str, now: float, ttl_s: int = 30) -> dict:
    """The envelope a station sends (station side)."""
    fields = {"v": 1, "device_id": device_id, "cmd": command, "issued_at": int(now), "expires_at": int(now) + ttl_s,
              "nonce": secrets.token_hex(16), "key_id": key_id}
    signature = key.sign(canonical(fields)).signature
    return {**fields, "sig": base64.b64encode(signature).decode("ascii")}


class Verifier:
    """Checks an envelope against the trusted station keys, the unit's id and its clock; returns the command."""

    def __init__(self, settings: CommandSettings, device_id: str) -> None:
        self.settings = settings
        self.device_id = device_id
        self._keys = {key.id: VerifyKey(base64.b64decode(key.public_key)) for key in settings.station_keys}

    def open(self, data: object, now: float) -> Envelope:
        if not isinstance(data, dict):
            raise Refused("a command must be a signed envelope (a JSON object)")
        if "sig" not in data:
            raise Refused("unsigned command")
        try:
            envelope = Envelope.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise Refused(f"malformed envelope: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        key = self._keys.get(envelope.key_id)
        if key is None:
            raise Refused(f"unknown key id {envelope.key_id!r}")
        try:
            key.verify(canonical(data), base64.b64decode(envelope.sig, validate=True))
        except (BadSignatureError, binascii.Error, ValueError):
            raise Refused("bad signature") from None
        self._check_target_and_time(envelope, now)
        return envelope

    def _check_target_and_time(self, envelope: Envelope, now: float) -> None:
        settings = self.settings
        if envelope.device_id != self.device_id:
            raise Refused(f"command is for another device ({envelope.device_id!r})")
        if envelope.expires_at < envelope.issued_at or envelope.expires_at - envelope.issued_at > settings.max_ttl_s:
            raise Refused(f"expiry outside 0..{settings.max_ttl_s} s after issue")
        if now > envelope.expires_at:
            raise Refused(f"expired {now - envelope.expires_at:.0f} s ago")
        if envelope.issued_at > now + settings.clock_future_s:
            raise Refused(f"issued {envelope.issued_at - now:.0f} s in the future "
                          f"(window +{settings.clock_future_s} s)")
        # no "issued too long ago" check: a command queued by the broker while the unit was offline is good until
        # its signed expiry (at most max_ttl_s after issue), and its nonce is kept past that, so it applies once


# ---- station key files ------------------------------------------------------------------------------------

def new_key_file(path: Path, key_id: str) -> SigningKey:
    """Write a new station key file, readable by its owner only (0600); refuses to overwrite."""
    if not _valid_id(key_id):
        raise ConfigError(f"key id {key_id!r} must match {KEY_ID}")
    key = SigningKey.generate()
    body = {"id": key_id, "private_key": base64.b64encode(bytes(key)).decode("ascii"),
            "public_key": public_key_text(key)}
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists; not overwriting a key") from None
    except OSError as exc:
        raise ConfigError(f"cannot create key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="ascii") as out:
        json.dump(body, out, indent=1)
    return key


def _valid_id(key_id: str) -> bool:
    return re.fullmatch(KEY_ID, key_id) is not None


def public_key_text(key: SigningKey) -> str:
    return base64.b64encode(bytes(key.verify_key)).decode("ascii")


def load_key_file(path: Path) -> tuple[str, SigningKey]:
    """(key id, signing key) from a station key file; a file others can read is refused."""
    try:
        mode = path.stat().st_mode
        payload = path.read_bytes()[:KEY_FILE_MAX_BYTES + 1]
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise ConfigError(f"key file {path} is readable by others (mode {mode & 0o777:o}); chmod 600 it")
    try:
        data = load_json(payload, KEY_FILE_MAX_BYTES, "key file")
        if not isinstance(data, dict) or not _valid_id(str(data.get("id", ""))):
            raise Refused("no valid 'id'")
        seed = base64.b64decode(str(data.get("private_key", "")), validate=True)
        if len(seed) != 32:
            raise Refused("'private_key' is not a 32-byte Ed25519 seed")
    except (Refused, binascii.Error, ValueError) as exc:
        raise ConfigError(f"key file {path} is not a station key: {exc}") from None
    return str(data["id"]), SigningKey(seed)
