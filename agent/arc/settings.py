"""The [arc] config section: the DC-09 link to the alarm receiving centre and the video-alarm email."""

from __future__ import annotations

import re
import string
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_ADDRESS = re.compile(r"^[^:\s]+:\d{1,5}$")
_TEMPLATE_FIELDS = ("site_ref", "device_id", "zone", "zone_number", "event_id", "time", "kind", "phase",
                    "bearing_deg", "sector", "class", "score", "media")

# names of the signals whose SIA code [arc.dc09] codes may override (agent/arc/codes.py maps them)
SIGNAL_NAMES = ("intrusion_start", "intrusion_end", "tamper_start", "tamper_end", "mains_fail", "mains_restore",
                "battery_low", "battery_restore", "detector_fault", "detector_restore", "camera_fault",
                "camera_restore", "unit_fault", "unit_restore", "path_fail", "path_restore", "armed", "disarmed",
                "periodic_test", "manual_test")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_template(value: str) -> str:
    """A template may name only the fields the sender fills in, so a typo fails at start-up, not at an alarm."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
    except ValueError as exc:
        raise ValueError(f"bad template {value!r}: {exc}") from None
    unknown = [name for name in names if name not in _TEMPLATE_FIELDS]
    if unknown:
        raise ValueError(f"template {value!r} names unknown field(s) {unknown}; known: {list(_TEMPLATE_FIELDS)}")
    return value


def split_address(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


class Dc09Settings(_Section):
    enabled: bool = Field(False, description="Send SIA DC-09 signals to the ARC.")
    primary: str = Field("", description="Primary receiver, host:port (TCP).")
    backup: str = Field("", description="Backup receiver, host:port; empty for none.")
    protocol: str = Field("SIA-DCS", pattern=r"^(SIA-DCS|ADM-CID)$", description="SIA-DCS or ADM-CID (Contact ID).")
    receiver: str = Field("0", pattern=r"^[0-9A-F]{1,6}$", description="Receiver number (Rrcvr), 1-6 hex digits.")
    line: str = Field("0", pattern=r"^[0-9A-F]{1,6}$", description="Line prefix (Lpref), 1-6 hex digits.")
    account: str = Field("", pattern=r"^([0-9A-F]{3,16})?$", description="Account number (#acct), 3-16 hex digits.")
    key_hex: str = Field("", description="AES key in hex (16, 24 or 32 bytes); empty sends unencrypted.")
    area: int = Field(1, ge=0, le=99, description="Area (partition) the unit reports as (SIA 'ri').")
    zones: dict[str, int] = Field(default_factory=dict, description="Zone number (1-999) by detection zone name.")
    default_zone: int = Field(1, ge=0, le=999, description="Zone number of alarms with no or an unmapped zone.")
    unit_zone: int = Field(0, ge=0, le=999, description="Zone number of the unit itself (camera, mains, tamper).")
    codes: dict[str, str] = Field(default_factory=dict, description="Code overrides by signal name, e.g. "
                                                                    "{intrusion_start = 'BV'}.")
    media_url: str = Field("{event_id}", description="Extended data [V...]: where the operator finds the media.")
    timeout_s: float = Field(10.0, gt=0, le=120, description="Wait this long for ACK/NAK/DUH.")
    retries_per_path: int = Field(3, ge=1, le=100, description="Failed attempts on a path before the other path.")
    backoff_min_s: float = Field(1.0, gt=0, le=600, description="First retry delay after a failed attempt.")
    backoff_max_s: float = Field(60.0, gt=0, le=3600, description="Cap of the doubling retry delay.")
    supervision_s: float = Field(90.0, ge=0, le=86400, description="NULL link test interval; 0 turns it off.")

    @field_validator("key_hex")
    @classmethod
    def _key(cls, value: str) -> str:
        if value:
            try:
                key = bytes.fromhex(value)
            except ValueError:
                raise ValueError("key_hex must be hexadecimal") from None
            if len(key) not in (16, 24, 32):
                raise ValueError(f"key_hex must be 16, 24 or 32 bytes (AES-128/192/256), got {len(key)}")
        return value

    @field_validator("primary", "backup")
    @classmethod
    def _address(cls, value: str) -> str:
        if value and not _ADDRESS.match(value):
            raise ValueError(f"receiver address {value!r} must be host:port")
        return value

    @field_validator("zones")
    @classmethod
    def _zones(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {name: number for name, number in value.items() if not 0 <= number <= 999}
        if bad:
            raise ValueError(f"zone numbers must be 0-999: {bad}")
        return value

    @field_validator("codes")
    @classmethod
    def _codes(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(SIGNAL_NAMES))
        if unknown:
            raise ValueError(f"unknown signal name(s) {unknown}; known: {list(SIGNAL_NAMES)}")
        bad = {name: code for name, code in value.items() if not re.fullmatch(r"[A-Z]{2}", code)}
        if bad:
            raise ValueError(f"SIA codes are two capital letters: {bad}")
        return value

    @field_validator("media_url")
    @classmethod
    def _media_url(cls, value: str) -> str:
        if "[" in value or "]" in value:
            raise ValueError("media_url cannot contain [ or ] (they delimit DC-09 extended data)")
        return _check_template(value)

    @model_validator(mode="after")
    def _complete(self) -> "Dc09Settings":
        if self.enabled and (not self.primary or not self.account):
            raise ValueError("dc09.enabled needs primary (host:port) and account")
        if self.backoff_min_s > self.backoff_max_s:
            raise ValueError("backoff_min_s must not exceed backoff_max_s")
        return self

    @property
    def key(self) -> bytes | None:
        return bytes.fromhex(self.key_hex) if self.key_hex else None

    def paths(self) -> list[tuple[str, int]]:
        return [split_address(address) for address in (self.primary, self.backup) if address]


class EmailSettings(_Section):
    enabled: bool = Field(False, description="Email each alarm with its snapshot (and then its clip) to the ARC.")
    host: str = Field("", description="SMTP server.")
    port: int = Field(587, ge=1, le=65535, description="SMTP port (587 submission with STARTTLS).")
    starttls: bool = Field(True, description="Upgrade the connection with STARTTLS before login.")
    ca_file: Path | None = Field(None, description="CA bundle for the server's certificate (default: system).")
    username: str | None = Field(None, description="SMTP login user.")
    password: str | None = Field(None, description="SMTP login password.")
    sender: str = Field("", description="From address.")
    to: tuple[str, ...] = Field((), description="The ARC's video-alarm address(es).")
    subject: str = Field("{site_ref}-{device_id}-{zone}", description="Subject template; by ARC convention the "
                                                                        "alarm point's identity.")
    body: str = Field("Intrusion alarm at {site_ref} (unit {device_id}), zone {zone} ({zone_number}), "
                      "bearing {bearing_deg}, sector {sector}, class {class}, at {time}. Event {event_id}.\n",
                      description="Body template.")
    attach_clip: bool = Field(True, description="Send the finished clip in a follow-up email.")
    max_attachment_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Larger clips are not attached.")
    timeout_s: float = Field(30.0, gt=0, le=600, description="SMTP socket timeout.")
    backoff_min_s: float = Field(5.0, gt=0, le=600, description="First retry delay after a failed send.")
    backoff_max_s: float = Field(300.0, gt=0, le=3600, description="Cap of the doubling retry delay.")

    @field_validator("subject", "body")
    @classmethod
    def _templates(cls, value: str) -> str:
        return _check_template(value)

    @model_validator(mode="after")
    def _complete(self) -> "EmailSettings":
        if self.enabled and (not self.host or not self.sender or not self.to):
            raise ValueError("email.enabled needs host, sender and to")
        if self.backoff_min_s > self.backoff_max_s:
            raise ValueError("backoff_min_s must not exceed backoff_max_s")
        return self


class ArcSettings(_Section):
    dc09: Dc09Settings = Field(default_factory=Dc09Settings, description="SIA DC-09 link.")
    email: EmailSettings = Field(default_factory=EmailSettings, description="Video-alarm email.")
