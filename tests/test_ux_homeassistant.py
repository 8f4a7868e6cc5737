"""Home Assistant discovery through a real replay and a real broker: configs checked against the keys Home
Assistant's MQTT discovery accepts per entity type, read-only, and the retained snapshot a decodable JPEG."""

from __future__ import annotations

import json
import threading

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest

from agent.config import parse_config
from agent.uplink.homeassistant import discovery_messages, snapshot_jpeg
from common.errors import ConfigError
from tests.test_ux import pid_agent, short_clip  # noqa: F401 - the module fixture is used by name

__all__ = ["short_clip"]

# From Home Assistant's MQTT integration (abbreviations not used): the keys each platform's discovery schema
# accepts, the ones it requires, and the device classes these entities use.
COMMON = {"name", "unique_id", "object_id", "device", "availability_topic", "availability_template",
          "payload_available", "payload_not_available", "icon", "entity_category"}
PLATFORMS = {
    "binary_sensor": ({"state_topic"}, COMMON | {"state_topic", "value_template", "device_class", "payload_on",
                                                 "payload_off", "off_delay", "expire_after"}),
    "sensor": ({"state_topic"}, COMMON | {"state_topic", "value_template", "device_class", "unit_of_measurement",
                                          "state_class", "expire_after"}),
    "image": ({"image_topic"}, COMMON | {"image_topic", "content_type", "image_encoding"}),
}
DEVICE_CLASSES = {"binary_sensor": {"motion", "tamper", "problem", "occupancy", "safety"},
                  "sensor": {"timestamp"}, "image": set()}
DEVICE_KEYS = {"identifiers", "name", "manufacturer", "model", "sw_version", "suggested_area"}


def retained(url: str, topics: list[str], wanted: int) -> dict[str, bytes]:
    """The retained messages on these topics, as a new subscriber receives them."""
    got: dict[str, bytes] = {}
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)

    def on_message(_client, _userdata, message):
        got[message.topic] = bytes(message.payload)
        if len(got) >= wanted:
            done.set()

    client.on_message = on_message
    client.on_connect = lambda c, *_: [c.subscribe(topic, qos=1) for topic in topics]
    host, port = url.split("://")[1].split(":")
    client.connect(host, int(port))
    client.loop_start()
    done.wait(20)
    client.loop_stop()
    client.disconnect()
    return got


@pytest.mark.broker
def test_discovery_and_snapshot_after_a_replayed_alarm(mosquitto, tmp_path, short_clip):  # noqa: F811
    config = tmp_path / "ha.toml"
    config.write_text('device_id = "pid-0042"\n[homeassistant]\nenabled = true\nsnapshot_max_bytes = 20000\n'
                      '[[detection.zones]]\nname = "yard"\npolygon = [[0, 0], [1, 0], [1, 1], [0, 1]]\n',
                      encoding="utf-8")
    result = pid_agent("replay", short_clip, "--fast", "--config", config, "--broker", mosquitto.url,
                       "--data-dir", tmp_path / "data")
    assert result.returncode == 0, result.stderr
    messages = retained(mosquitto.url, ["homeassistant/#", "pids/pid-0042/snapshot"], wanted=8)
    configs = {topic: json.loads(payload) for topic, payload in messages.items() if topic.endswith("/config")}
    platforms = sorted(topic.split("/")[1] for topic in configs)
    assert platforms == ["binary_sensor"] * 4 + ["image"] + ["sensor"] * 2, platforms
    assert len({body["unique_id"] for body in configs.values()}) == len(configs)
    for topic, body in configs.items():
        prefix, platform, node, object_id, _ = topic.split("/")
        assert node == "pid-0042"  # the device id, as the broker's ACL names the unit (docs/mqtt.md)
        assert body["unique_id"] == f"pid_0042_{object_id}"
        required, allowed = PLATFORMS[platform]
        assert required <= body.keys() and body.keys() <= allowed, (topic, body.keys() - allowed)
        assert body.get("device_class", next(iter(DEVICE_CLASSES[platform]), None)) in DEVICE_CLASSES[platform] | {None}
        assert body["device"]["identifiers"] == ["pid-agent-pid-0042"] and body["device"].keys() <= DEVICE_KEYS
        assert body["availability_topic"] == "pids/pid-0042/status"
        assert not any(key.startswith("command") for key in body)  # read-only: nothing here can disarm the unit
    zone = configs["homeassistant/binary_sensor/pid-0042/intrusion_yard/config"]
    assert zone["state_topic"] == "pids/pid-0042/event" and "'yard'" not in zone["value_template"]
    assert '"yard"' in zone["value_template"]
    snapshot = messages["pids/pid-0042/snapshot"]
    assert len(snapshot) <= 20000
    picture = cv2.imdecode(np.frombuffer(snapshot, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None and picture.shape[2] == 3


def test_snapshot_is_shrunk_to_its_cap():
    noise = np.random.default_rng(7).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    jpeg = snapshot_jpeg(noise, 15_000)
    assert len(jpeg) <= 15_000
    picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape[1] < 1280  # noise does not compress: only a smaller picture fits


def test_discovery_is_refused_for_a_device_id_that_cannot_be_a_node_id():
    # a '.' is allowed in device ids, not in Home Assistant node ids; a unit publishing under a changed node would be
    # thrown off by the ACL at every connect, so the config says so before the unit starts
    with pytest.raises(ConfigError, match="homeassistant.enabled needs a device_id without '.'"):
        parse_config({"device_id": "pid-0042.b", "homeassistant": {"enabled": True}})
    assert parse_config({"device_id": "pid-0042.b"}).device_id == "pid-0042.b"  # without discovery it is fine
    topics = discovery_messages(parse_config({}).homeassistant, "pid-0042_b-x", "site", "pids/x", [])
    assert {topic.split("/")[2] for topic in topics} == {"pid-0042_b-x"}
