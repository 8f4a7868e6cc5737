"""Contract-complete payloads for tests that play the unit's side by hand (built with agent/uplink/messages.py)."""

from __future__ import annotations

from agent.uplink import messages

SHA = "ab" * 32


def envelope(event_id: str, seq: int = 1, device_id: str = "unit-9") -> dict:
    return {"device_id": device_id, "site_ref": "S", "event_id": event_id, "seq": seq,
            "ts": "2026-11-25T08:46:12.400Z", "frame": 10}


def alarm_start(event_id: str, seq: int = 1, **fields) -> dict:
    body = dict(score=0.4, boxes=[[1, 2, 3, 4]], image_size=[1280, 720], zone=None, confirmed_by=["video"])
    return messages.AlarmStart(**envelope(event_id, seq), **{**body, **fields}).wire()


def alarm_end(event_id: str, seq: int = 2, **fields) -> dict:
    body = dict(started_frame=10, score=0.4, reason="motion stopped", duration_s=3.0, clip=None, snapshot=None,
                confirmed_by=["video"])
    return messages.AlarmEnd(**envelope(event_id, seq), **{**body, **fields}).wire()


def status(state: str, device_id: str = "unit-9") -> dict:
    return messages.Status(state=state, device_id=device_id, ts="2026-11-25T08:45:00.123Z", version="0.1.0").wire()


def heartbeat(uptime_s: float = 5.0) -> dict:
    return messages.Heartbeat(
        device_id="unit-9", site_ref="S", ts="2026-11-25T08:46:00.000Z", uptime_s=uptime_s, frames=50, fps=10.0,
        armed=True, outbox_depth=0, outbox_bytes=0, disk_free_bytes=None, cpu_temp_c=None, version="0.1.0",
        last_event_id=None, camera={"state": "ok", "fps": 10.0, "frames": 50, "faults": 0, "last_error": None,
                                    "last_frame_age_s": 0.1},
        tamper=None, inputs={"pir_active": [], "triggers_active": [], "tamper_open": [], "mains_ok": None},
        signalling={"mode": "covert", "active": False}, detector_faults=[]).wire()
