"""broker.urls: the uplink moves to the next broker when the current one is unreachable (two real mosquittos)."""

from __future__ import annotations

import pytest

from agent.config import BrokerSettings, parse_config
from agent.storage.outbox import Outbox
from agent.uplink.client import Uplink
from common.clock import SystemClock
from common.errors import ConfigError
from station.monitor import Monitor
from tests.conftest import Broker, _require_mosquitto
from tests.faults.harness import kill_broker


def test_urls_are_tried_after_url_in_order_and_share_its_scheme():
    settings = BrokerSettings(url="mqtt://a:1884", urls=["mqtt://b", "mqtt://c:1999"])
    assert settings.addresses == [("a", 1884), ("b", 1883), ("c", 1999)]
    with pytest.raises(ConfigError, match=r"broker: .*urls \[.mqtts://b.\] must use the same scheme"):
        parse_config({"broker": {"url": "mqtt://a", "urls": ["mqtts://b"]}})
    with pytest.raises(ConfigError, match="broker.urls"):
        parse_config({"broker": {"urls": ["http://b"]}})


@pytest.mark.broker
def test_uplink_moves_to_the_next_broker_when_its_own_dies(tmp_path):
    _require_mosquitto()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = Broker(tmp_path / "a"), Broker(tmp_path / "b")
    first.start()
    second.start()
    clock = SystemClock()
    outbox = Outbox(tmp_path / "data", 1 << 30, clock)
    settings = BrokerSettings(url=first.url, urls=[second.url], reconnect_min_s=0.2, reconnect_max_s=0.5)
    uplink = Uplink(settings, "pids/unit-1", "unit-1", outbox, clock, "test")
    monitor = Monitor(second.url, "unit-1", None, printer=lambda line: None)
    try:
        monitor.start()
        assert monitor.wait_for(lambda m: m.subscribed, timeout=10)
        uplink.start()
        assert uplink.wait_drained(10) and monitor.statuses == {}  # connected to the first broker only
        kill_broker(first)
        outbox.put_message("event", {"event_id": "e1", "phase": "start"}, kind="event")
        uplink.notify()
        assert monitor.wait_for(lambda m: m.statuses.get("unit-1", {}).get("state") == "online", timeout=20)
        assert uplink.wait_drained(20) and uplink.connected
    finally:
        uplink.stop()
        monitor.stop()
        outbox.close()
        first.stop()
        second.stop()
