"""A station tool's connection to the broker: says where it connects and every failed attempt with its reason
(paho retries on its own), subscribes to one topic filter, and hands each message on under the lock that
`wait_for` waits on, so a waiting caller sees each message's effect whole."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from typing import Callable

import paho.mqtt.client as mqtt

from agent.config import BrokerSettings
from agent.uplink.client import make_client


class BrokerLink:
    def __init__(self, settings: BrokerSettings, topic_filter: str, session: str | None,
                 on_message: Callable[[str, bytes], None], say: Callable[..., None],
                 problem: Callable[[str, str], None]) -> None:
        """session: a client id for a persistent broker session (None: a clean session, a random client id).
        say(kind, device, text, **fields) and problem(text, kind) print what happens to the connection."""
        self.settings, self.topic_filter, self.session = settings, topic_filter, session
        self.subscribed = False
        self.changed = threading.Condition()
        self._handle, self._say, self._problem = on_message, say, problem
        client_id = session or f"pid-monitor-{uuid.uuid4().hex[:12]}"
        self.client = make_client(settings, client_id=client_id, clean_session=session is None)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def start(self) -> None:
        session = f"persistent session {self.session}" if self.session else "clean session"
        self._say("connecting", None, f"connecting to {self.settings.url} to watch {self.topic_filter} ({session})",
                  broker=self.settings.url, watching=self.topic_filter, session=self.session)
        self.client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: str, qos: int = 1) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait (on the real network) until predicate() holds; False on timeout."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.5))
            return True

    # ---- paho callbacks --------------------------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self._problem(f"broker {self.settings.url} refused connection: {reason}; retrying", "refused")
            return
        self._say("connected", None, f"connected to {self.settings.url}, watching {self.topic_filter}",
                  broker=self.settings.url, watching=self.topic_filter)
        client.subscribe(self.topic_filter, qos=1)

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this from inside its `except OSError`: the exception being handled is the reason
        failure = sys.exc_info()[1]
        why = (failure.strerror or str(failure)) if isinstance(failure, OSError) else "no answer"
        self._problem(f"cannot reach broker {self.settings.url}: {why}; retrying in at most "
                      f"{self.settings.reconnect_max_s:g} s", "retry")

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        with self.changed:
            self.subscribed = False
        if reason.is_failure:
            self._problem(f"connection to {self.settings.url} lost: {reason}; reconnecting", "disconnected")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self.changed:
            self.subscribed = all(not code.is_failure for code in reason_codes)
            self.changed.notify_all()
        if not self.subscribed:
            self._problem(f"subscription to {self.topic_filter} refused: {reason_codes}", "warning")

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        with self.changed:
            self._handle(message.topic, message.payload)
            self.changed.notify_all()
