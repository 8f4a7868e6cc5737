"""Home Assistant discovery through a real replay and a real broker: configs checked against the keys Home
Assistant's MQTT discovery accepts per entity type, read-only, and the retained snapshot a decodable JPEG."""

from __future__ import annotations

import json
import logging
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


def retained_now(url: str, topics: list[str]) -> dict[str, bytes]:
    """Every retained message on these topics, absent ones included: after subscribing, a marker published to a
    topic of its own comes back once the broker has handed over what it retained (it queues those at the
    subscribe, before the marker exists)."""
    marker = "test/marker/retained-now"
    got: dict[str, bytes] = {}
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)

    def on_message(_client, _userdata, message):
        if message.topic == marker:
            done.set()
        elif message.payload:   # an empty retained message is a deletion, never handed over: ignore live ones too
            got[message.topic] = bytes(message.payload)

    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe([(topic, 1) for topic in [*topics, marker]])
    client.on_subscribe = lambda c, *_: c.publish(marker, b"done", qos=1)
    host, port = url.split("://")[1].split(":")
    client.connect(host, int(port))
    client.loop_start()
    assert done.wait(20), "the marker never came back"
    client.loop_stop()
    client.disconnect()
    return got


def _run_with(tmp_path, mosquitto, clip, toml: str) -> None:
    config = tmp_path / "ha.toml"
    config.write_text('device_id = "pid-0043"\n' + toml, encoding="utf-8")
    result = pid_agent("replay", clip, "--fast", "--config", config, "--broker", mosquitto.url,
                       "--data-dir", tmp_path / "data")
    assert result.returncode == 0, result.stderr


ZONE = '[[detection.zones]]\nname = "{}"\npolygon = [[0, 0], [1, 0], [1, 1], [0, 1]]\n'


@pytest.mark.broker
def test_what_a_config_no_longer_announces_is_cleared_from_the_broker(mosquitto, tmp_path, short_clip):  # noqa: F811
    topics = ["homeassistant/#", "pids/pid-0043/snapshot", "homeassistant/+/pid-other/#"]
    # another unit's entity, which this unit must never touch
    other = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    host, port = mosquitto.url.split("://")[1].split(":")
    other.connect(host, int(port))
    other.loop_start()
    other.publish("homeassistant/binary_sensor/pid-other/armed/config", b"{}", qos=1, retain=True).wait_for_publish()
    other.loop_stop()
    other.disconnect()

    _run_with(tmp_path, mosquitto, short_clip, "[homeassistant]\nenabled = true\n" + ZONE.format("yard"))
    first = retained_now(mosquitto.url, topics)
    assert "homeassistant/binary_sensor/pid-0043/intrusion_yard/config" in first
    assert "pids/pid-0043/snapshot" in first and len(first) == 9   # 8 of this unit's, 1 of the other's
    # the zone renamed: its old entity goes, the new one comes, the rest stay
    _run_with(tmp_path, mosquitto, short_clip, "[homeassistant]\nenabled = true\n" + ZONE.format("gate"))
    second = retained_now(mosquitto.url, topics)
    assert "homeassistant/binary_sensor/pid-0043/intrusion_yard/config" not in second
    assert "homeassistant/binary_sensor/pid-0043/intrusion_gate/config" in second
    assert set(first) - set(second) == {"homeassistant/binary_sensor/pid-0043/intrusion_yard/config"}
    # discovery switched off: nothing of this unit is left retained, its last alarm picture included
    _run_with(tmp_path, mosquitto, short_clip, ZONE.format("gate"))
    assert retained_now(mosquitto.url, topics) == {
        "homeassistant/binary_sensor/pid-other/armed/config": b"{}"}


def test_a_damaged_record_is_set_aside_and_foreign_topics_are_never_stale(tmp_path, caplog):
    from agent.uplink.retained_record import FILE, load_topics, save_topics, stale_topics

    assert load_topics(tmp_path) == []   # no record: discovery never used
    save_topics(tmp_path, ["homeassistant/sensor/pid-1/outbox_depth/config", "pids/pid-1/snapshot"])
    assert load_topics(tmp_path) == ["homeassistant/sensor/pid-1/outbox_depth/config", "pids/pid-1/snapshot"]
    for damaged, reason in [(b"\xff\xfe", "UTF-8"), (b'{"topics": ["a/b"], "more": 1}', "more"),
                            (b'{"topics": ["a b/#"]}', "topics.0"), (b"[" * 100_000, "deeply"),
                            (b" " * 200_000, "too large")]:
        (tmp_path / FILE).write_bytes(damaged)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert load_topics(tmp_path) == []
        assert "ignored" in caplog.text and reason in caplog.text, (damaged[:20], caplog.text)
    previous = ["homeassistant/sensor/pid-1/outbox_depth/config", "ha2/binary_sensor/pid-1/armed/config",
                "homeassistant/sensor/pid-2/outbox_depth/config", "pids/pid-2/status", "pids/pid-1/snapshot",
                "homeassistant/sensor/pid-1/outbox_depth/config", "homeassistant/pid-1/config"]
    assert stale_topics(previous, ["homeassistant/sensor/pid-1/outbox_depth/config"], "pid-1",
                        {"pids/pid-1/snapshot"}) == ["ha2/binary_sensor/pid-1/armed/config", "pids/pid-1/snapshot"]
