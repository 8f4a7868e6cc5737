"""Payloads of the `event` topic: built in one place so MQTT, the outbox and --events JSONL carry the same thing."""

from __future__ import annotations

from agent.events import AlarmEnded, AlarmStarted
from agent.storage.recorder import MediaFile
from common.clock import iso_utc


def scaled_boxes(boxes, scale: float) -> list[list[int]]:
    """Boxes from detection-image pixels to full-image pixels, as [x, y, w, h]."""
    return [box.scaled(scale) for box in boxes]


def alarm_start(identity: dict, seq: int, event: AlarmStarted, wall_ts: float, scale: float,
                image_size: tuple[int, int]) -> dict:
    return {
        **identity,
        "event_id": event.event_id,
        "seq": seq,
        "kind": "intrusion",
        "phase": "start",
        "ts": iso_utc(wall_ts),
        "frame": event.frame,
        "score": round(float(event.score), 5),
        "boxes": scaled_boxes(event.boxes, scale),
        "image_size": list(image_size),
    }


def alarm_end(identity: dict, seq: int, event: AlarmEnded, wall_ts: float, duration_s: float,
              clip: MediaFile | None, snapshot: MediaFile | None) -> dict:
    return {
        **identity,
        "event_id": event.event_id,
        "seq": seq,
        "kind": "intrusion",
        "phase": "end",
        "ts": iso_utc(wall_ts),
        "frame": event.frame,
        "started_frame": event.started_frame,
        "score": round(float(event.peak_score), 5),
        "boxes": [],
        "reason": event.reason,
        "duration_s": round(duration_s, 3),
        "clip": clip.describe() if clip else None,
        "snapshot": snapshot.describe() if snapshot else None,
    }


def incomplete_end(identity: dict, seq: int, start_payload: dict, wall_ts: float,
                   clip: MediaFile | None = None) -> dict:
    """The honest end of an alarm that was open when the agent stopped abruptly: its clip is lost, unless it had
    been finished (fsynced and renamed) just before the stop, in which case it is sent."""
    reason = ("agent stopped abruptly; the clip was finished and is sent" if clip else
              "agent stopped abruptly; clip incomplete and discarded")
    return {
        **identity,
        "event_id": start_payload["event_id"],
        "seq": seq,
        "kind": start_payload.get("kind", "intrusion"),
        "phase": "end",
        "ts": iso_utc(wall_ts),
        "frame": None,
        "started_frame": start_payload.get("frame"),
        "score": start_payload.get("score", 0.0),
        "boxes": [],
        "reason": reason,
        "incomplete": True,
        "clip": clip.describe() if clip else None,
        "snapshot": None,
    }


def unit_event(identity: dict, seq: int, event_id: str, body: dict, wall_ts: float, frame: int | None) -> dict:
    """Any other event of the unit (sensor input, detector fault, arming change...): `body` carries its kind."""
    return {**identity, "event_id": event_id, "seq": seq, "ts": iso_utc(wall_ts), "frame": frame, **body}
