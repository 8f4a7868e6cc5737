"""Home Assistant MQTT discovery: the unit appears as a read-only device, and its last alarm picture is retained.

The entities read the unit's own topics (`status`, `heartbeat`, `event`) through value templates, so the contract
gains nothing but one topic: `<root>/snapshot`, a retained single JPEG no larger than `snapshot_max_bytes`.
Nothing here subscribes or accepts commands: the victim's home automation must never disarm a police unit.
Discovery configs and the snapshot are retained messages the uplink (re)publishes on every connect.
"""

from __future__ import annotations

import json
import logging

import numpy as np
from pydantic import Field

from agent import __version__
from agent.uplink.retained_record import load_topics, save_topics, stale_topics
from common.settings import Section

log = logging.getLogger(__name__)

SNAPSHOT_TOPIC = "snapshot"


class HomeAssistantSettings(Section):
    enabled: bool = Field(False, description="Announce the unit to Home Assistant by MQTT discovery (read-only).")
    discovery_prefix: str = Field("homeassistant", pattern=r"^[A-Za-z0-9_-]+$",
                                  description="Home Assistant's discovery prefix.")
    snapshot_max_bytes: int = Field(200_000, ge=10_000, le=2_000_000,
                                    description="Largest retained `<root>/snapshot` JPEG; bigger pictures are "
                                                "scaled down until they fit.")


def _object_id(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text.lower())


def _node_id(device_id: str) -> str:
    """The discovery topic's node: the device id itself, so the broker's ACL can confine each unit to its own
    discovery topics by its certificate's CN (docs/mqtt.md). The config refuses discovery for an id with a '.',
    which Home Assistant's node ids do not allow."""
    if "." in device_id:
        raise ValueError(f"device_id {device_id!r} cannot be a Home Assistant node id")
    return device_id


def _zone_template(zone: str | None) -> str:
    """ON when an alarm starts in this zone, OFF on any alarm's end (the unit runs one alarm at a time);
    other events render empty, which Home Assistant ignores."""
    match = "value_json.zone is none" if zone is None else f"value_json.zone == {json.dumps(zone)}"
    return ("{% if value_json.kind == 'intrusion' %}{% if value_json.phase == 'end' %}OFF"
            f"{{% elif value_json.phase == 'start' and {match} %}}ON{{% endif %}}{{% endif %}}")


def discovery_messages(settings: HomeAssistantSettings, device_id: str, site_ref: str, topic_root: str,
                       zones: list[str]) -> dict[str, bytes]:
    """Discovery topic -> retained config payload, one per entity. zones: detection zone names ([] = whole image)."""
    device = {"identifiers": [f"pid-agent-{device_id}"], "name": f"Intrusion camera {device_id}",
              "manufacturer": "pid-agent", "model": "loaned intrusion-detection unit", "sw_version": __version__,
              "suggested_area": site_ref}
    common = {"device": device, "availability_topic": f"{topic_root}/status",
              "availability_template": "{{ 'online' if value_json.state == 'online' else 'offline' }}",
              "payload_available": "online", "payload_not_available": "offline"}
    heartbeat, event = f"{topic_root}/heartbeat", f"{topic_root}/event"
    entities: dict[tuple[str, str], dict] = {}
    for zone in zones or [None]:
        name = f"Intrusion {zone}" if zone else "Intrusion"
        entities[("binary_sensor", _object_id(f"intrusion_{zone}" if zone else "intrusion"))] = {
            "name": name, "device_class": "motion", "state_topic": event, "value_template": _zone_template(zone)}
    entities[("binary_sensor", "armed")] = {
        "name": "Armed", "state_topic": heartbeat, "value_template": "{{ 'ON' if value_json.armed else 'OFF' }}",
        "icon": "mdi:shield-lock"}
    entities[("binary_sensor", "tamper")] = {
        "name": "Tamper", "device_class": "tamper", "state_topic": heartbeat, "entity_category": "diagnostic",
        "value_template": "{{ 'ON' if value_json.tamper or value_json.inputs.tamper_open else 'OFF' }}"}
    entities[("binary_sensor", "camera_fault")] = {
        "name": "Camera fault", "device_class": "problem", "state_topic": heartbeat, "entity_category": "diagnostic",
        "value_template": "{{ 'OFF' if value_json.camera.state == 'ok' else 'ON' }}"}
    entities[("sensor", "outbox_depth")] = {
        "name": "Outbox depth", "state_topic": heartbeat, "value_template": "{{ value_json.outbox_depth }}",
        "unit_of_measurement": "messages", "state_class": "measurement", "entity_category": "diagnostic"}
    entities[("sensor", "last_alarm")] = {
        "name": "Last alarm", "device_class": "timestamp", "state_topic": event,
        "value_template": "{% if value_json.kind == 'intrusion' and value_json.phase == 'start' %}"
                          "{{ value_json.ts }}{% endif %}"}
    entities[("image", "snapshot")] = {"name": "Last alarm picture", "image_topic": f"{topic_root}/{SNAPSHOT_TOPIC}",
                                       "content_type": "image/jpeg"}
    node, entity = _node_id(device_id), _object_id(device_id)
    return {f"{settings.discovery_prefix}/{component}/{node}/{object_id}/config":
            json.dumps({**common, **body, "unique_id": f"{entity}_{object_id}",
                        "object_id": f"{entity}_{object_id}"}, sort_keys=True).encode()
            for (component, object_id), body in entities.items()}


def snapshot_jpeg(image: np.ndarray, max_bytes: int, quality: int = 85) -> bytes:
    """One JPEG of a BGR frame, no larger than max_bytes: the quality drops first, then the picture shrinks."""
    import cv2  # here, not at import: the config imports this module's settings

    while True:
        for q in (quality, 70, 50):
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, q])
            if ok and encoded.size <= max_bytes:
                return encoded.tobytes()
        if min(image.shape[:2]) < 32:
            raise ValueError(f"cannot fit a snapshot into {max_bytes} bytes")
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)


def announce(uplink, config) -> None:
    """Publish (retained, again at every reconnect) the discovery config of every entity of this unit, and clear
    what an earlier run announced that this config does not (a zone renamed or removed, discovery switched off):
    an empty retained message deletes the broker's copy, and Home Assistant the entity."""
    snapshot = f"{config.topic_root}/{SNAPSHOT_TOPIC}"
    messages: dict[str, bytes] = {}
    if config.homeassistant.enabled:
        zones = [zone.name for zone in config.detection.zones if zone.kind == "detect"]
        messages = discovery_messages(config.homeassistant, config.device_id, config.site_ref, config.topic_root,
                                      zones)
    current = [*messages, snapshot] if messages else []
    previous = load_topics(config.data_dir)
    if not current and not previous:
        return   # discovery never used on this unit: no record to keep
    stale = stale_topics(previous, current, config.device_id, {snapshot})   # the node id is the device id
    for topic in stale:
        uplink.retain(topic, b"")
    for topic, payload in messages.items():
        uplink.retain(topic, payload)
    if stale:
        log.info("Home Assistant: clearing %d retained topic(s) this config no longer announces", len(stale))
    # the stale ones stay recorded: if the broker is down for the whole run, the next run clears them again
    save_topics(config.data_dir, current + stale)


def snapshot_observer(uplink, config):
    """A frame observer: on an alarm's start, the (privacy-blanked) picture becomes HA's retained image entity."""
    # imported here: agent.config imports this module's settings, and agent.events imports agent.config
    from agent.events import AlarmStarted

    topic = f"{config.topic_root}/{SNAPSHOT_TOPIC}"

    def observe(frame, analysis) -> None:
        if any(isinstance(event, AlarmStarted) for event in analysis.events):
            uplink.retain(topic, snapshot_jpeg(frame.image, config.homeassistant.snapshot_max_bytes))

    return observe
