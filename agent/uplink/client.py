"""MQTT uplink: drains the outbox to the broker in id order, deleting each row only once the broker acknowledged it.

Threads: paho's network thread (loop_start) runs the callbacks; our sender thread reads the outbox and publishes.
Delivery is at-least-once and in order: on every (re)connect paho's own queue is dropped and sending restarts
from the oldest unacknowledged outbox row, so nothing sent on a dead connection can overtake older rows.

Commands come the other way through a persistent broker session: a stable client id (`pid-agent-<device_id>`),
clean session off and a QoS 1 subscription, so a command the station sends while the unit is offline is queued by
the broker and delivered when the unit returns (still checked by its expiry, never taken from a retained message).
Status messages are signed with the unit's key like events (the Last Will when it is set, at start).
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from agent.commands import MAX_RECEIVED, Received
from agent.config import BrokerSettings, insecure_transport
from agent.evidence.keys import UnitKey
from agent.storage.outbox import Outbox
from agent.uplink.messages import Status
from agent.uplink.publisher import signed
from common.clock import Clock, iso_utc
from common.errors import ConfigError

log = logging.getLogger(__name__)

_IDLE_WAIT_S = 1.0  # sender re-checks the outbox at least this often even without a notify()


def make_client(settings: BrokerSettings, client_id: str, clean_session: bool = True) -> mqtt.Client:
    """A paho client with credentials and TLS from the settings (shared by the uplink and the monitor)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session,
                         protocol=mqtt.MQTTv311)
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.use_tls:
        tls = settings.tls
        for label in ("ca_file", "cert_file", "key_file"):
            path = getattr(tls, label, None) if tls else None
            if path is not None and not path.is_file():
                raise ConfigError(f"broker.tls.{label}: file not found: {path}")
        try:
            client.tls_set(ca_certs=str(tls.ca_file) if tls and tls.ca_file else None,
                           certfile=str(tls.cert_file) if tls and tls.cert_file else None,
                           keyfile=str(tls.key_file) if tls and tls.key_file else None,
                           cert_reqs=ssl.CERT_REQUIRED)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(f"broker.tls: cannot load certificates: {exc}") from None
        if tls and tls.insecure:
            client.tls_insecure_set(True)
    client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
    return client


class Uplink:
    def __init__(self, settings: BrokerSettings, topic_root: str, device_id: str, outbox: Outbox, clock: Clock,
                 version: str, key: UnitKey | None = None) -> None:
        self._settings = settings
        self._key = key  # signs status messages (None: sent unsigned)
        self._root = topic_root.rstrip("/")
        self._device_id = device_id
        self._outbox = outbox
        self._clock = clock
        self._version = version
        self.last_error: str | None = None
        # persistent session: commands published while the unit is away wait on the broker for this client id
        self._client = make_client(settings, client_id=f"pid-agent-{device_id}", clean_session=False)
        # url then the fallbacks in broker.urls; paho retries the current one, on_connect_fail moves to the next
        self._targets = settings.addresses
        self._target = 0
        # paho's own window a little above ours so status messages never wait behind outbox rows.
        self._client.max_inflight_messages_set(settings.inflight + 4)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        #: called on the network thread with each message received on <root>/cmd (checked later, by control)
        self.on_command: Callable[[Received], None] | None = None
        # _send_lock: held around "check connection generation + publish", and by on_connect around dropping
        # paho's queue, so a publish can never slip onto a new connection with a stale cursor.
        self._send_lock = threading.Lock()
        # _state_lock guards _gen/_connected only; it is never held while calling into paho (no lock cycles
        # with paho's internal mutexes, which on_publish runs under).
        self._state_lock = threading.Lock()
        self._gen = 0
        self._connected = False
        self._ever_connected = False
        self.connects = 0  # successful connections so far (a second one means the first was lost)
        self._listening = threading.Event()  # the broker acknowledged the <root>/cmd subscription on this connection
        self._acks: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._idle = threading.Condition()
        self._inflight_count = 0
        self._sender: threading.Thread | None = None
        self._retained: dict[str, bytes] = {}  # full topic -> payload, (re)published on every connect

    # ---- public ----------------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        with self._state_lock:
            return self._connected

    def wait_listening(self, timeout: float) -> bool:
        """True once connected with the command subscription acknowledged (waits on the real network)."""
        return self._listening.wait(timeout)

    def start(self) -> None:
        for key, why in insecure_transport(self._settings):
            log.warning("INSECURE broker connection: %s: %s (forbid with security.allow_insecure_transport = "
                        "false)", key, why)
        status = self._status_payload("offline")
        self._client.will_set(self._topic("status"), status, qos=1, retain=True)
        log.info("uplink connecting to %s as %s", self._broker, self._device_id)
        # connect_async + loop_start: an unreachable broker is retried by paho's loop, never fatal.
        self._client.connect_async(*self._targets[0], keepalive=self._settings.keepalive_s)
        self._client.loop_start()
        self._sender = threading.Thread(target=self._send_loop, name="uplink-sender", daemon=True)
        self._sender.start()

    def retain(self, topic: str, payload: bytes) -> None:
        """A retained QoS 1 message outside the outbox (Home Assistant discovery, the last snapshot): only its
        latest value matters, so it is sent now if connected and again after every reconnect."""
        with self._send_lock:
            self._retained[topic] = payload
            if self.connected:
                self._client.publish(topic, payload, qos=1, retain=True)

    def notify(self) -> None:
        """New rows were put in the outbox: wake the sender now rather than at its next poll."""
        self._wake.set()

    def wait_drained(self, timeout: float) -> bool:
        """True once the outbox is empty and nothing is in flight (waits on the real network, timed by the clock)."""
        deadline = self._clock.monotonic() + timeout
        with self._idle:
            while True:
                if self._outbox.depth() == 0 and self._inflight_count == 0:
                    return True
                left = deadline - self._clock.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.5))

    def stop(self, timeout: float = 5.0) -> None:
        deadline = self._clock.monotonic() + timeout
        self._stopping.set()
        self._wake.set()
        if self._sender is not None:
            self._sender.join(max(0.1, deadline - self._clock.monotonic()))
        if self.connected:
            info = self._client.publish(self._topic("status"), self._status_payload("stopped"), qos=1, retain=True)
            try:
                info.wait_for_publish(max(0.1, deadline - self._clock.monotonic()))
            except (RuntimeError, ValueError) as exc:
                self._error(f"status 'stopped' not delivered: {exc}")
            if not info.is_published():
                self._error("status 'stopped' not acknowledged before timeout")
        else:
            log.warning("uplink stopping while disconnected; %s", "the broker shows the 'offline' Last Will"
                        if self._ever_connected else "it never connected")
        self._client.disconnect()
        self._client.loop_stop()

    # ---- paho callbacks (network thread) ---------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self._error(f"broker {self._settings.url} refused connection: {reason}")
            return
        if self._ever_connected and not flags.session_present:
            # the broker lost our session (restarted without persistence, session expired, or a client with our id
            # connected with a clean session): commands queued for us meanwhile are gone; we subscribe again below
            log.warning("uplink: the broker kept no session for %s; commands sent while it was away are lost",
                        self._device_id)
        with self._send_lock:
            # Anything paho kept from the old connection would be resent ahead of older outbox rows; drop it
            # and let the sender restart from the oldest unacknowledged row instead.
            client.drop_out_messages()
            with self._state_lock:
                self._gen += 1
                self._connected = True
                self._ever_connected = True
                self.connects += 1
            client.publish(self._topic("status"), self._status_payload("online"), qos=1, retain=True)
            for topic, payload in self._retained.items():
                client.publish(topic, payload, qos=1, retain=True)
        client.subscribe(self._topic("cmd"), qos=1)
        self.last_error = None
        log.info("uplink connected to %s", self._broker)
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        self._listening.clear()
        with self._state_lock:
            self._gen += 1
            was_connected, self._connected = self._connected, False
        # a refused connection also ends in a disconnect: keep the refusal's reason as the error to show
        if was_connected and reason.is_failure and not self._stopping.is_set():
            self._error(f"connection to {self._settings.url} lost: {reason}; will reconnect")
        self._wake.set()

    def _on_message(self, client, userdata, message) -> None:
        if self.on_command is None or message.topic != self._topic("cmd"):
            return
        try:
            # the retain flag goes along (a retained command is refused, never applied); of an oversized payload
            # only the head is kept, so a flood of large messages cannot pile up in the queue
            payload = bytes(message.payload[:MAX_RECEIVED])
            self.on_command(Received(payload, retained=bool(message.retain), size=len(message.payload)))
        except Exception:  # noqa: BLE001 - an exception here would end paho's network thread: the unit goes deaf
            log.exception("uplink: command message dropped")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:  # an ACL that does not let the unit read its own <root>/cmd: no command can ever reach it
            self._error(f"subscription to {self._topic('cmd')} refused by the broker: {', '.join(refused)}")
            return
        self._listening.set()

    def _on_connect_fail(self, client, userdata) -> None:
        unreachable = self._broker
        if len(self._targets) > 1:
            # this node is down (paho's reconnect to it just failed): paho's next attempt goes to the next node.
            # paho's host/port setters refuse in the CONNECTING state this callback runs in, though no socket is
            # open; its reconnect() reads these two attributes, so set them directly.
            self._target = (self._target + 1) % len(self._targets)
            client._host, client._port = self._targets[self._target]
        self._error(f"cannot connect to broker {unreachable}; retrying {self._broker}")

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        with self._state_lock:
            gen = self._gen
        self._acks.put((gen, mid))
        self._wake.set()

    # ---- sender thread ---------------------------------------------------------------------------------------

    def _send_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._send_until_stopped()
            except Exception as exc:  # noqa: BLE001 - a dead sender would silently stop all uplink traffic
                log.exception("uplink sender failed; restarting from the oldest unacknowledged row")
                self._error(f"sender failed: {exc!r}")
                self._stopping.wait(_IDLE_WAIT_S)

    def _send_until_stopped(self) -> None:
        gen, cursor, inflight = -1, 0, {}  # inflight: paho mid -> outbox row id (this thread only)
        while not self._stopping.is_set():
            self._apply_acks(gen, inflight)
            with self._state_lock:
                current, connected = self._gen, self._connected
            if current != gen:
                gen, cursor, inflight = current, 0, {}  # new connection: resend from the oldest row
                self._set_inflight(0)
            room = self._settings.inflight - len(inflight)
            self._wake.clear()  # before reading the outbox, so a notify() after the read still wakes us
            rows = self._outbox.pending(cursor, room) if connected and room > 0 else []
            if not rows:
                self._wake.wait(_IDLE_WAIT_S)
                continue
            for row in rows:
                mid = self._publish(gen, row)
                if mid is None:
                    break
                inflight[mid] = row.id
                cursor = row.id
            self._set_inflight(len(inflight))

    def _publish(self, gen: int, row) -> int | None:
        with self._send_lock:
            with self._state_lock:
                if not self._connected or self._gen != gen:
                    return None
            info = self._client.publish(f"{self._root}/{row.topic}", row.payload, qos=row.qos, retain=row.retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            # Connection dropped under us; on_connect will restart from the oldest row.
            log.info("publish of outbox row %d deferred: %s", row.id, mqtt.error_string(info.rc))
            return None
        return info.mid

    def _apply_acks(self, gen: int, inflight: dict[int, int]) -> None:
        acked = False
        while True:
            try:
                ack_gen, mid = self._acks.get_nowait()
            except queue.Empty:
                break
            row_id = inflight.pop(mid, None) if ack_gen == gen else None
            if row_id is not None:
                self._outbox.ack(row_id)
                acked = True
        if acked:
            self._set_inflight(len(inflight))

    def _set_inflight(self, count: int) -> None:
        with self._idle:
            self._inflight_count = count
            self._idle.notify_all()

    # ---- helpers ---------------------------------------------------------------------------------------------

    @property
    def _broker(self) -> str:
        """The node currently connected or being tried, for logs."""
        host, port = self._targets[self._target]
        return f"{host}:{port}"

    def _topic(self, suffix: str) -> str:
        return f"{self._root}/{suffix}"

    def _status_payload(self, state: str) -> bytes:
        status = Status(state=state, device_id=self._device_id, ts=iso_utc(self._clock.wall()), version=self._version)
        return json.dumps(signed(self._key, status.wire()), separators=(",", ":")).encode("utf-8")

    def _error(self, message: str) -> None:
        self.last_error = message
        log.warning("uplink: %s", message)
