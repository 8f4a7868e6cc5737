"""Which DC-09 signal an outbox event is: SIA code and Contact ID event per signal name, zone numbers from config.

Signal names (keys of [arc.dc09] codes overrides) are the unit's own vocabulary; the codes are the SIA DC-03
event codes and Contact ID (DC-05) event/qualifier pairs an ARC expects for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.arc.settings import SIGNAL_NAMES, Dc09Settings

# name -> (SIA code, Contact ID qualifier, Contact ID event)
SIGNALS: dict[str, tuple[str, int, int]] = {
    "intrusion_start": ("BA", 1, 130), "intrusion_end": ("BR", 3, 130),
    "tamper_start": ("TA", 1, 137), "tamper_end": ("TR", 3, 137),
    "mains_fail": ("AT", 1, 301), "mains_restore": ("AR", 3, 301),
    "battery_low": ("YT", 1, 302), "battery_restore": ("YR", 3, 302),
    "detector_fault": ("BT", 1, 380), "detector_restore": ("BJ", 3, 380),
    "camera_fault": ("BT", 1, 380), "camera_restore": ("BJ", 3, 380),
    "unit_fault": ("YX", 1, 300), "unit_restore": ("YZ", 3, 300),
    "path_fail": ("YC", 1, 350), "path_restore": ("YK", 3, 350),
    "armed": ("CL", 3, 401), "disarmed": ("OP", 1, 401),
    "periodic_test": ("RP", 1, 602), "manual_test": ("RX", 1, 601),
}
assert tuple(SIGNALS) == SIGNAL_NAMES, "settings.SIGNAL_NAMES and SIGNALS must list the same signals"

# outbox event kinds the DC-09 link takes from the outbox (everything else is MQTT-only)
EVENT_KINDS = ("intrusion", "tamper", "restore", "fault", "detector_fault", "power", "armed", "path", "test")


@dataclass(frozen=True)
class Signal:
    name: str
    code: str          # SIA code, e.g. BA
    qualifier: int     # Contact ID 1 new event / 3 restore
    cid_event: int     # Contact ID event, e.g. 130
    zone: int
    extended: tuple[str, ...] = ()

    def data(self, protocol: str, area: int) -> str:
        """The message data of a SIA-DCS or ADM-CID frame."""
        if protocol == "ADM-CID":
            return f"{self.qualifier}{self.cid_event:03d} {area:02d} {self.zone:03d}"
        return f"Nri{area}/{self.code}{self.zone:03d}"


def signal_name(payload: dict) -> str | None:
    """The signal an outbox event payload is, or None when the ARC is not told about it."""
    kind = payload.get("kind")
    if payload.get("source") == "arc":
        return None  # the ARC link's own faults go over MQTT; sending them to the ARC could loop on a DUH
    if kind == "intrusion":
        if payload.get("walk_test"):
            return None  # a walk test goes to the engineer, not to the ARC
        return "intrusion_start" if payload.get("phase") == "start" else "intrusion_end"
    if kind == "tamper":
        return "tamper_end" if payload.get("open") is False else "tamper_start"
    if kind == "restore":
        return {"video": "tamper_end", "camera": "camera_restore"}.get(payload.get("source"), "unit_restore")
    if kind == "fault":
        return "camera_fault" if payload.get("source") == "camera" else "unit_fault"
    if kind == "detector_fault":
        return "detector_fault" if payload.get("active", True) else "detector_restore"
    if kind == "power":
        if "battery_ok" in payload:
            return "battery_restore" if payload["battery_ok"] else "battery_low"
        return "mains_restore" if payload.get("mains_ok") else "mains_fail"
    if kind == "armed":
        return "armed" if payload.get("armed") else "disarmed"
    if kind == "path":
        return "path_restore" if payload.get("ok") else "path_fail"
    if kind == "test":
        return "periodic_test"
    return None


def zone_number(payload: dict, name: str, settings: Dc09Settings) -> int:
    """Alarm-point zones map by name; the unit's own conditions (camera, mains, video tamper) use unit_zone."""
    zone = payload.get("zone")
    if name.startswith(("intrusion", "detector")) or (name.startswith("tamper") and zone):
        return settings.zones.get(zone, settings.default_zone) if zone else settings.default_zone
    if name in ("armed", "disarmed"):
        return 0  # the "user" field of an arming change; the unit arms itself
    return settings.unit_zone


def media_reference(payload: dict, settings: Dc09Settings) -> str:
    fields = {"site_ref": payload.get("site_ref", ""), "device_id": payload.get("device_id", ""),
              "event_id": payload.get("event_id", ""), "zone": payload.get("zone") or ""}
    return settings.media_url.format_map(BlankFields(fields))


def signal_for(payload: dict, settings: Dc09Settings) -> Signal | None:
    name = signal_name(payload)
    if name is None:
        return None
    code, qualifier, cid_event = SIGNALS[name]
    code = settings.codes.get(name, code)
    extended = (f"V{media_reference(payload, settings)}",) if name == "intrusion_start" else ()
    return Signal(name, code, qualifier, cid_event, zone_number(payload, name, settings), extended)


class BlankFields(dict):
    """format_map fields that an event does not carry read as empty."""

    def __missing__(self, key: str) -> str:
        return ""
