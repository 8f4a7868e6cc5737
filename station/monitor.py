"""The engineers' receiver (station side): watches one unit (or all), prints what arrives, reassembles media.

Media chunks may arrive before their manifest, out of order, or twice (at-least-once delivery); a file is
assembled once the manifest and every chunk index are present, then checked against the manifest's SHA-256.
Names from the network (device, event id, file name) are sanitised into single safe path components, never
joined as given, and every file written is checked to lie inside `--out`.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import paho.mqtt.client as mqtt
from pydantic import TypeAdapter, ValidationError

from agent.config import BrokerSettings
from agent.security_parse import load_json
from agent.uplink.client import make_client
from agent.uplink.messages import EVENT, CommandResult, Heartbeat, MediaManifest, Status
from common.errors import ConfigError

MAX_MESSAGE_BYTES = 1024 * 1024  # JSON messages (not media chunks) larger than this are refused unread


@dataclass
class MediaFile:
    device_id: str
    event_id: str
    name: str
    path: Path | None      # where it was saved (None when the monitor has no out_dir)
    size: int
    sha256: str            # of the bytes received
    expected_sha256: str   # from the manifest
    verified: bool
    data: bytes | None = None  # kept only when not saved to disk


@dataclass
class _Assembly:
    manifest: dict | None = None
    chunks: dict[int, bytes] = field(default_factory=dict)


def _parsed(schema, payload: bytes) -> dict:
    """A payload checked against the unit's contract (agent/uplink/messages.py); the JSON as sent, as a dict.

    A payload that does not match is a ValueError, reported as a bad message and otherwise ignored."""
    data = load_json(payload, MAX_MESSAGE_BYTES, "message")  # bounded: a hostile payload is a ValueError
    adapter = schema if isinstance(schema, TypeAdapter) else TypeAdapter(schema)
    try:
        adapter.validate_python(data)
    except ValidationError as exc:
        raise ValueError(f"does not match the contract: {exc.error_count()} problem(s), first: "
                         f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']}") from None
    return data


def safe_component(name: str) -> str:
    """One path component made from a network name: no separators, no leading dots, bounded length."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:100].lstrip(".")
    return cleaned or "_"


def inside(root: Path, *names: str) -> Path:
    """root/<each name sanitised>, refused (ValueError) if it would still resolve outside root."""
    path = root.joinpath(*(safe_component(name) for name in names))
    if not path.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"refusing to write outside {root}: {path}")
    return path


def _settings_for(url: str) -> BrokerSettings:
    try:
        return BrokerSettings(url=url)
    except ValidationError:
        raise ConfigError(f"broker URL {url!r} is not mqtt://host[:port] or mqtts://host[:port]") from None


class Monitor:
    def __init__(self, url: str, device_id: str | None, out_dir: Path | None, topic_prefix: str = "pids",
                 printer=print, session: str | None = None) -> None:
        """session: a client id for a persistent broker session, so QoS 1 messages published while this
        monitor was away are queued by the broker and delivered on reconnect (None = clean session)."""
        self._settings = _settings_for(url)
        self.device_id = device_id
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self._prefix = topic_prefix.rstrip("/")
        self._print = printer
        self.events: list[dict] = []
        self.duplicates = 0
        self.statuses: dict[str, dict] = {}
        self.heartbeats: list[dict] = []
        self.command_results: list[dict] = []
        self.media: dict[tuple[str, str], MediaFile] = {}
        self.errors: list[str] = []
        self.subscribed = False
        self._seen: set[tuple[str, str, str]] = set()
        self._assemblies: dict[tuple[str, str, str], _Assembly] = {}
        self._changed = threading.Condition()
        client_id = session or f"pid-monitor-{uuid.uuid4().hex[:12]}"
        self._client = make_client(self._settings, client_id=client_id, clean_session=session is None)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    @property
    def topic_filter(self) -> str:
        return f"{self._prefix}/{self.device_id or '+'}/#"

    def start(self) -> None:
        self._client.connect_async(self._settings.host, self._settings.port, keepalive=self._settings.keepalive_s)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def wait_for(self, predicate: Callable[["Monitor"], bool], timeout: float) -> bool:
        """Wait (on the real network) until predicate(self) holds; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))
            return True

    # ---- paho callbacks --------------------------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self._problem(f"broker {self._settings.url} refused connection: {reason}")
            return
        self._print(f"connected to {self._settings.url}, watching {self.topic_filter}")
        client.subscribe(self.topic_filter, qos=1)

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        with self._changed:
            self.subscribed = False
        if reason.is_failure:
            self._problem(f"connection to {self._settings.url} lost: {reason}; reconnecting")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._changed:
            self.subscribed = all(not code.is_failure for code in reason_codes)
            self._changed.notify_all()
        if not self.subscribed:
            self._problem(f"subscription to {self.topic_filter} refused: {reason_codes}")

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        parts = message.topic.split("/")
        base = len(self._prefix.split("/"))
        device, rest = (parts[base], parts[base + 1:]) if len(parts) > base + 1 else ("?", [])
        with self._changed:
            try:
                self._dispatch(device, rest, message.payload)
            except (ValueError, KeyError, TypeError, OSError) as exc:
                self._problem(f"[{device}] bad message on {message.topic}: {exc}")
            self._changed.notify_all()

    # ---- handling --------------------------------------------------------------------------------------------

    def _dispatch(self, device: str, rest: list[str], payload: bytes) -> None:
        if rest == ["status"]:
            self._on_status(device, _parsed(Status, payload))
        elif rest == ["heartbeat"]:
            self._on_heartbeat(device, _parsed(Heartbeat, payload))
        elif rest == ["event"]:
            self._on_event(device, _parsed(EVENT, payload))
        elif rest == ["cmd", "result"]:
            self._on_command_result(device, _parsed(CommandResult, payload))
        elif rest == ["cmd"]:
            pass  # our own (or another operator's) command on its way to the unit
        elif len(rest) >= 4 and rest[0] == "media":
            # RabbitMQ's MQTT plugin turns a '.' in a topic into '/' (AMQP routing keys): clip.mp4 comes as clip/mp4
            self._on_media(device, rest[1], ".".join(rest[2:-1]), rest[-1], payload)
        else:
            self._problem(f"[{device}] unexpected topic {'/'.join(rest)!r} ({len(payload)} bytes)")

    def _on_status(self, device: str, status: dict) -> None:
        self.statuses[device] = status
        self._print(f"[{device}] STATUS {status.get('state')} ts={status.get('ts')} version={status.get('version')}")

    def _on_heartbeat(self, device: str, beat: dict) -> None:
        self.heartbeats.append(beat)
        fields = ("uptime_s", "frames", "fps", "armed", "outbox_depth", "outbox_bytes", "disk_free_bytes",
                  "cpu_temp_c", "last_event_id")
        shown = " ".join(f"{key}={beat[key]}" for key in fields if key in beat)
        self._print(f"[{device}] HEARTBEAT ts={beat.get('ts')} {shown}")

    def _on_event(self, device: str, event: dict) -> None:
        key = (device, str(event["event_id"]), str(event.get("phase")))
        if key in self._seen:
            self.duplicates += 1  # at-least-once delivery: a resend after reconnect
            return
        self._seen.add(key)
        self.events.append(event)
        line = (f"[{device}] EVENT {event.get('phase')} {event['event_id']} kind={event.get('kind')} "
                f"seq={event.get('seq')} "
                f"ts={event.get('ts')} score={event.get('score')} boxes={len(event.get('boxes') or [])}")
        for item in ("clip", "snapshot"):
            if isinstance(event.get(item), dict):
                line += f" {item}={event[item].get('name')}({event[item].get('bytes')} B)"
        if event.get("incomplete"):
            line += " INCOMPLETE"
        self._print(line)

    def _on_command_result(self, device: str, result: dict) -> None:
        self.command_results.append(result)
        verdict = f"OK {result.get('detail')}" if result.get("ok") else f"REFUSED {result.get('reason')}"
        self._print(f"[{device}] COMMAND {result.get('cmd', '?')} id={result.get('id')} {verdict}")

    def _on_media(self, device: str, event_id: str, name: str, part: str, payload: bytes) -> None:
        key = (device, event_id, name)
        done = self.media.get((event_id, name))
        assembly = self._assemblies.setdefault(key, _Assembly())
        if part == "manifest":
            manifest = _parsed(MediaManifest, payload)
            if done is not None and done.expected_sha256 == manifest["sha256"]:
                return  # resent after a reconnect; already assembled
            assembly.manifest = manifest
        else:
            if done is not None and assembly.manifest is None:
                return  # late duplicate chunk of a file already assembled
            assembly.chunks[int(part)] = bytes(payload)
        self._try_assemble(key, assembly)

    def _try_assemble(self, key: tuple[str, str, str], assembly: _Assembly) -> None:
        manifest = assembly.manifest
        if manifest is None or len(assembly.chunks) < manifest["chunks"]:
            return
        if any(i not in assembly.chunks for i in range(manifest["chunks"])):
            return
        device, event_id, name = key
        data = b"".join(assembly.chunks[i] for i in range(manifest["chunks"]))
        digest = hashlib.sha256(data).hexdigest()
        verified = digest == manifest["sha256"] and len(data) == manifest["total_bytes"]
        path = None
        if self.out_dir is not None:
            path = inside(self.out_dir, device, event_id, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        self.media[(event_id, name)] = MediaFile(device, event_id, name, path, len(data), digest,
                                                 manifest["sha256"], verified, None if path else data)
        del self._assemblies[key]
        verdict = "VERIFIED" if verified else (f"MISMATCH (expected {manifest['total_bytes']} B "
                                               f"sha256 {manifest['sha256']})")
        where = f" -> {path}" if path else ""
        self._print(f"[{device}] MEDIA {event_id}/{name} {len(data)} B sha256={digest} {verdict}{where}")

    def _problem(self, text: str) -> None:
        self.errors.append(text)
        self._print(f"WARNING {text}")


def default_session(device_id: str | None) -> str:
    """A stable client id per host and watched unit, so a restarted monitor resumes its broker session."""
    return safe_component(f"pid-monitor-{socket.gethostname()}-{device_id or 'all'}")[:64]


def run_monitor(url: str, device_id: str | None, out_dir: Path | None, session: str | None = None,
                clean_session: bool = False) -> int:
    """CLI entry: print everything until Ctrl-C; exit code 1 if any media file failed verification.

    By default the session is persistent (QoS 1 messages sent while the monitor was away are delivered when it
    is back); clean_session=True starts afresh every time."""
    if not clean_session and session is None:
        session = default_session(device_id)
    monitor = Monitor(url, device_id, out_dir, session=None if clean_session else session)
    monitor.start()
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopping monitor")
    finally:
        monitor.stop()
    bad = [f"{m.event_id}/{m.name}" for m in monitor.media.values() if not m.verified]
    if bad:
        print(f"{len(bad)} media file(s) failed verification: {', '.join(bad)}")
        return 1
    return 0

