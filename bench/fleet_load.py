"""Fleet load: one process simulating hundreds of units (real paho connections) against one broker, and a station.

Each unit heartbeats every --heartbeat-s (60 s in the field, accelerated to 1 s here) and raises alarms at random
(on average one per --alarm-every-s per unit): an event `start`, a ~50 KB snapshot, an event `end`, all QoS 1.
A station-side consumer (its own persistent session) counts what reaches it per unit: delivery, loss, duplicates,
and alarm latency (unit's `start` publish to the station holding its snapshot) p50/p95/p99. Prints the table.

The units share one network thread (paho's external-loop API over a selector) rather than a thread each, so 500
units fit on a small machine; the station runs paho's own loop thread.

Run: .venv/bin/python bench/fleet_load.py [--units 500] [--seconds 60] [--url mqtt://host:port] [--cluster]
(no --url: a mosquitto is started on loopback, like the tests' broker; --cluster: then the same load against a
3-node RabbitMQ cluster started on loopback (tests/rabbit_cluster.py), the units spread over its nodes and the
station on one of them, so every alarm crosses the cluster; one table per broker)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import selectors
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import Broker  # noqa: E402
from tests.rabbit_cluster import RabbitCluster, available  # noqa: E402

ROOT = "pids"
SNAPSHOT_BYTES = 50 * 1024


@dataclass
class Sent:
    heartbeats: int = 0
    alarms: dict[str, float] = field(default_factory=dict)  # event_id -> monotonic time of its start publish


@dataclass
class Seen:
    heartbeats: set[int] = field(default_factory=set)
    duplicates: int = 0
    starts: set[str] = field(default_factory=set)
    snapshots: dict[str, float] = field(default_factory=dict)  # event_id -> monotonic arrival of its snapshot
    ends: set[str] = field(default_factory=set)


class Station:
    """The consumer: one persistent QoS 1 subscription to every unit's topics, counting per unit."""

    def __init__(self, host: str, port: int) -> None:
        self.seen: dict[str, Seen] = {}
        self.received = 0
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fleet-station", clean_session=False,
                                   protocol=mqtt.MQTTv311)
        self._client.max_inflight_messages_set(100)
        self._client.on_connect = lambda c, u, f, r, p: c.subscribe(f"{ROOT}/+/#", qos=1)
        self._client.on_subscribe = lambda *args: self.subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(host, port, keepalive=30)

    def start(self) -> None:
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_message(self, client, userdata, message) -> None:
        now = time.monotonic()
        _, unit, kind = message.topic.split("/", 2)
        with self._lock:
            self.received += 1
            seen = self.seen.setdefault(unit, Seen())
            if kind == "heartbeat":
                seq = json.loads(message.payload)["seq"]
                if seq in seen.heartbeats:
                    seen.duplicates += 1
                seen.heartbeats.add(seq)
            elif kind == "event":
                event = json.loads(message.payload)
                (seen.starts if event["phase"] == "start" else seen.ends).add(event["event_id"])
            elif kind.startswith("media/"):
                seen.snapshots.setdefault(kind.split("/")[1], now)

    def holds(self, sent: dict[str, Sent]) -> bool:
        with self._lock:
            return all(len(self.seen.get(unit, Seen()).heartbeats) >= s.heartbeats
                       and len(self.seen.get(unit, Seen()).ends) >= len(s.alarms) for unit, s in sent.items())


class Fleet:
    """N units, each a paho client, driven by one thread through a selector (paho's external-loop API)."""

    def __init__(self, addresses: list[tuple[str, int]], units: int, heartbeat_s: float,
                 alarm_every_s: float) -> None:
        self.names = [f"fleet-{n:04d}" for n in range(units)]
        self.sent = {name: Sent() for name in self.names}
        self.heartbeat_s, self.alarm_every_s = heartbeat_s, alarm_every_s
        self.snapshot = os.urandom(SNAPSHOT_BYTES)  # incompressible, like a JPEG
        self.selector = selectors.DefaultSelector()
        self.clients: dict[str, mqtt.Client] = {}
        self.refused = 0
        for number, name in enumerate(self.names):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pid-agent-{name}", protocol=mqtt.MQTTv311)
            client.connect(*addresses[number % len(addresses)], keepalive=60)  # spread over a cluster's nodes
            self.selector.register(client.socket(), selectors.EVENT_READ, client)
            self.clients[name] = client
        deadline = time.monotonic() + 60
        while not all(c.is_connected() for c in self.clients.values()) and time.monotonic() < deadline:
            self._pump(0.05)  # CONNACKs: a publish before them would be refused

    def run(self, seconds: float) -> None:
        start = time.monotonic()
        random.seed(17)
        next_beat = {name: start + random.uniform(0, self.heartbeat_s) for name in self.names}
        next_alarm = {name: start + random.expovariate(1 / self.alarm_every_s) for name in self.names}
        last_misc = start
        while True:
            now = time.monotonic()
            sending = now - start < seconds
            for name in self.names if sending else ():
                if now >= next_beat[name]:
                    self._heartbeat(name)
                    next_beat[name] += self.heartbeat_s
                if now >= next_alarm[name]:
                    self._alarm(name)
                    next_alarm[name] = now + random.expovariate(1 / self.alarm_every_s)
            self._pump(0.01)
            if now - last_misc >= 1.0:
                for client in self.clients.values():
                    client.loop_misc()
                last_misc = now
            if not sending and not self._pending():
                return

    def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._pending() and time.monotonic() < deadline:
            self._pump(0.05)

    def close(self) -> None:
        for client in self.clients.values():
            client.disconnect()
        self._pump(0.1)
        self.selector.close()

    def _pending(self) -> bool:
        return any(client.want_write() or client._out_messages for client in self.clients.values())

    def _pump(self, timeout: float) -> None:
        for client in self.clients.values():
            if client.want_write():
                client.loop_write()
        for key, _ in self.selector.select(timeout):
            key.data.loop_read()

    def _publish(self, name: str, kind: str, payload: bytes) -> bool:
        info = self.clients[name].publish(f"{ROOT}/{name}/{kind}", payload, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.refused += 1
            return False
        return True

    def _heartbeat(self, name: str) -> None:
        sent = self.sent[name]
        if self._publish(name, "heartbeat", json.dumps({"seq": sent.heartbeats, "ts": time.time()}).encode()):
            sent.heartbeats += 1

    def _alarm(self, name: str) -> None:
        event_id = os.urandom(8).hex()
        self.sent[name].alarms[event_id] = time.monotonic()
        for kind, payload in (("event", {"event_id": event_id, "phase": "start"}), ("media/" + event_id, None),
                              ("event", {"event_id": event_id, "phase": "end"})):
            self._publish(name, kind, self.snapshot if payload is None else json.dumps(payload).encode())


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(title: str, fleet: Fleet, station: Station, seconds: float, wall_s: float) -> bool:
    beats_sent = sum(s.heartbeats for s in fleet.sent.values())
    alarms_sent = sum(len(s.alarms) for s in fleet.sent.values())
    beats_got = alarms_got = dups = 0
    latencies, unit_share = [], []
    for name, sent in fleet.sent.items():
        seen = station.seen.get(name, Seen())
        beats_got += len(seen.heartbeats)
        dups += seen.duplicates
        whole = [e for e in sent.alarms if e in seen.starts and e in seen.snapshots and e in seen.ends]
        alarms_got += len(whole)
        latencies += [(seen.snapshots[e] - sent.alarms[e]) * 1000 for e in whole]
        expected = sent.heartbeats + len(sent.alarms)
        unit_share.append(100.0 * (len(seen.heartbeats) + len(whole)) / expected if expected else 100.0)
    rows = [("units connected", f"{len(fleet.clients)}", ">= 500"),
            ("run", f"{seconds:.0f} s sending, {wall_s:.0f} s with drain", ""),
            ("heartbeats sent / received / lost", f"{beats_sent} / {beats_got} / {beats_sent - beats_got}", "lost 0"),
            ("alarms sent / whole at station / lost", f"{alarms_sent} / {alarms_got} / {alarms_sent - alarms_got}",
             "lost 0"),
            ("duplicate heartbeats", f"{dups}", "0 (clean connections)"),
            ("publishes refused by the client", f"{fleet.refused}", "0"),
            ("per-unit delivery min / median", f"{min(unit_share):.1f} % / {statistics.median(unit_share):.1f} %",
             "100 %"),
            ("alarm latency p50 / p95 / p99 (start -> snapshot at station)",
             " / ".join(f"{percentile(latencies, q):.0f}" for q in (0.5, 0.95, 0.99)) + " ms", ""),
            ("messages at station", f"{station.received} ({station.received / wall_s:.0f}/s)", "")]
    width = max(len(row[0]) for row in rows)
    print(f"{title.ljust(width)}  {'measured':<40} target")
    for name, value, target in rows:
        print(f"{name.ljust(width)}  {value:<40} {target}")
    return beats_sent == beats_got and alarms_sent == alarms_got


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def load(title: str, addresses: list[tuple[str, int]], station_at: tuple[str, int], args) -> bool:
    """One fleet run against one broker (or cluster): connect, send for args.seconds, drain, print the table."""
    station = Station(*station_at)
    station.start()
    station.subscribed.wait(30)
    fleet = Fleet(addresses, args.units, args.heartbeat_s, args.alarm_every_s)
    began = time.monotonic()
    fleet.run(args.seconds)
    fleet.drain(30)
    deadline = time.monotonic() + 30
    while not station.holds(fleet.sent) and time.monotonic() < deadline:
        time.sleep(0.2)
    wall_s = time.monotonic() - began
    fleet.close()
    station.stop()
    return report(title, fleet, station, args.seconds, wall_s)


def against_mosquitto(args) -> bool:
    broker = Broker(Path(tempfile.mkdtemp(prefix="fleet-load-")))
    broker.config.write_text(broker.config.read_text() + "max_inflight_messages 0\n")
    broker.start()
    try:
        return load("fleet load: mosquitto", [("127.0.0.1", broker.port)], ("127.0.0.1", broker.port), args)
    finally:
        broker.stop()


def against_cluster(args) -> bool:
    if not available():
        print("fleet load: RabbitMQ cluster skipped: rabbitmq-server with rabbitmq_mqtt is not installed",
              file=sys.stderr)
        return False
    cluster = RabbitCluster(Path(tempfile.mkdtemp(prefix="fleet-rabbit-")), size=3)
    try:
        began = time.monotonic()
        cluster.start()
        print(f"(3-node RabbitMQ cluster up in {time.monotonic() - began:.0f} s)", flush=True)
        addresses = [("127.0.0.1", node.mqtt_port) for node in cluster.nodes]
        # the station on the last node; a third of the units share it, the rest publish on the other two
        return load("fleet load: RabbitMQ 3-node cluster", addresses, addresses[-1], args)
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the units send")
    parser.add_argument("--heartbeat-s", type=float, default=1.0, help="60 s in the field, accelerated")
    parser.add_argument("--alarm-every-s", type=float, default=120.0,
                        help="mean gap between one unit's alarms (about 2 an hour in the field, accelerated 60x)")
    parser.add_argument("--url", help="an existing broker (a RabbitMQ node, ...); default: a mosquitto on loopback")
    parser.add_argument("--cluster", action="store_true",
                        help="after mosquitto, the same load against a 3-node RabbitMQ cluster on loopback")
    args = parser.parse_args()
    raise_fd_limit()
    if args.url:
        address = urlparse(args.url)
        at = (address.hostname, address.port or 1883)
        return 0 if load(f"fleet load: {args.url}", [at], at, args) else 1
    ok = against_mosquitto(args)
    if args.cluster:
        print()
        ok = against_cluster(args) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
