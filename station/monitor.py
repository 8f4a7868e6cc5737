"""The engineers' receiver (station side): watches one unit (or all), prints what arrives, reassembles media.

Monitor routes each topic to its handler: the connection is station/link.py's, media chunks go to
station/media_assembly.py (reassembly within the station's bounds, SHA-256 check, saving), records to
station/records.py, signature checks use station/signatures.py. Names from the network (device, event id, file
name) are sanitised into single safe path components, never joined as given, and every file written is checked to
lie inside `--out` (station/paths.py).

It says at once where it connects and prints every failed attempt with its reason (paho retries on its own);
`--json` prints one JSON object a line instead (`kind`, `device`, `topic`, and `payload` or `media`), for scripts.
With `--out DIR` it also keeps the record a deployment report is made from (station/deployment_report.py), one
JSON line per message as received, under DIR/<device>/: events.jsonl (each verified event once), heartbeats.jsonl,
status.jsonl, and results.jsonl ({"result": <the unit's answer>, "command": <the command seen on <root>/cmd with
that id, or null>}: the unit's ok is what says a signed command, such as a verdict, was accepted).

Given a unit's public key (`--unit-key B64`, or `--unit-keys FILE`), every event, command result, heartbeat and
status from that unit is checked against the signature the unit put on it (`key`, `sig`: agent/uplink/publisher.py);
anything unsigned, signed with another key or whose signature does not match is counted, printed as UNVERIFIED or
FORGED and kept apart (`rejected`): a spoofed heartbeat saying `armed: false` or a spoofed `stopped` status is never
taken for the unit's state, nor written to the records a deployment report is made from.
"""

from __future__ import annotations

import functools
import json
import socket
import time
from pathlib import Path
from typing import Callable

import paho.mqtt.client as mqtt
from pydantic import TypeAdapter, ValidationError

from agent.config import BrokerSettings, TlsSettings
from agent.security_parse import load_json
from agent.uplink.messages import EVENT, CommandResult, Heartbeat, MediaManifest, Status
from common.errors import ConfigError
from station.link import BrokerLink
from station.media_assembly import MediaAssembler, MediaFile, MediaLimits
from station.paths import inside, safe_component
from station.records import Records
from station.signatures import ANY_DEVICE, load_unit_keys, public_key, signature_verdict

__all__ = ["ANY_DEVICE", "MediaFile", "MediaLimits", "Monitor", "default_session", "inside", "load_unit_keys",
           "public_key", "run_monitor", "safe_component", "signature_verdict", "tls_from"]

PRINT = functools.partial(print, flush=True)  # a line reaches a script reading the pipe at once
MAX_MESSAGE_BYTES = 1024 * 1024  # JSON messages (not media chunks) larger than this are refused unread


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


def _settings_for(url: str, tls: TlsSettings | None = None) -> BrokerSettings:
    try:
        return BrokerSettings(url=url, tls=tls)
    except ValidationError:
        raise ConfigError(f"broker URL {url!r} is not mqtt://host[:port] or mqtts://host[:port]") from None


def tls_from(ca_file: Path | None, cert_file: Path | None, key_file: Path | None) -> TlsSettings | None:
    """The station tool's TLS files (its own client certificate under mutual TLS), None when none given."""
    if ca_file is None and cert_file is None and key_file is None:
        return None
    return TlsSettings(ca_file=ca_file, cert_file=cert_file, key_file=key_file)


class Monitor:
    def __init__(self, url: str, device_id: str | None, out_dir: Path | None, topic_prefix: str = "pids",
                 printer=PRINT, session: str | None = None,
                 as_json: bool = False, unit_keys: dict[str, str] | None = None,
                 tls: TlsSettings | None = None, media_limits: MediaLimits | None = None) -> None:
        """session: a client id for a persistent broker session, so QoS 1 messages published while this
        monitor was away are queued by the broker and delivered on reconnect (None = clean session).
        as_json: each line printed is one JSON object rather than text for people.
        unit_keys: device id (or ANY_DEVICE) -> the unit's public key; what they send is verified.
        tls: CA and the station's own client certificate and key (a broker with one identity per client).
        media_limits: the bounds of media reassembly (station/media_assembly.py)."""
        settings = _settings_for(url, tls)
        self.device_id = device_id
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self._records = Records(self.out_dir)
        self.assembler = MediaAssembler(self.out_dir, self._problem, self._say, media_limits or MediaLimits())
        self._prefix = topic_prefix.rstrip("/")
        self._print = printer
        self.as_json = as_json
        self._topic: str | None = None  # of the message being handled, for --json lines
        self._sent: dict[tuple[str, str], dict] = {}  # commands seen on <root>/cmd, by (device, id)
        self.events: list[dict] = []
        self.duplicates = 0
        self.statuses: dict[str, dict] = {}
        self.heartbeats: list[dict] = []
        self.command_results: list[dict] = []
        self.media: dict[tuple[str, str], MediaFile] = self.assembler.media  # (event id, name) -> the file
        self.rejected: list[dict] = []  # events, results, heartbeats and statuses that failed the signature check
        self.errors: list[str] = []
        self.unit_keys = {device: public_key(text, f"unit key for {device}")
                          for device, text in (unit_keys or {}).items()}
        self.verified = 0     # messages (events, results, heartbeats, statuses) whose signature checked out
        self.unverified = 0   # unsigned or signed by another key, from a unit whose key we hold
        self.forged = 0       # signed with the unit's key id, but the signature does not match
        self._seen: set[tuple[str, str, str]] = set()
        self._link = BrokerLink(settings, self.topic_filter, session, self._on_message, self._say, self._problem)

    @property
    def topic_filter(self) -> str:
        return f"{self._prefix}/{self.device_id or '+'}/#"

    @property
    def subscribed(self) -> bool:
        return self._link.subscribed

    def start(self) -> None:
        self._link.start()

    def stop(self) -> None:
        self._link.stop()

    def publish(self, device: str, channel: str, payload: str, qos: int = 1) -> mqtt.MQTTMessageInfo:
        """Publish on <prefix>/<device>/<channel> over this monitor's connection (a command to a unit)."""
        return self._link.publish(f"{self._prefix}/{device}/{channel}", payload, qos=qos)

    def wait_for(self, predicate: Callable[["Monitor"], bool], timeout: float) -> bool:
        """Wait (on the real network) until predicate(self) holds; False on timeout."""
        return self._link.wait_for(lambda: predicate(self), timeout)

    # ---- routing ---------------------------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        """<prefix>/<device>/<rest>: each message to its handler; a bad one is said and otherwise ignored."""
        parts = topic.split("/")
        base = len(self._prefix.split("/"))
        device, rest = (parts[base], parts[base + 1:]) if len(parts) > base + 1 else ("?", [])
        try:
            self._topic = topic
            self._dispatch(device, rest, payload)
        except (ValueError, KeyError, TypeError, OSError) as exc:
            self._problem(f"[{device}] bad message on {topic}: {exc}")

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
            self._on_command(device, payload)  # our own (or another operator's) command on its way to the unit
        elif rest == ["snapshot"]:
            self._say("snapshot", device, f"[{device}] SNAPSHOT {len(payload)} B", bytes=len(payload))
        elif len(rest) >= 4 and rest[0] == "media":
            # RabbitMQ's MQTT plugin turns a '.' in a topic into '/' (AMQP routing keys): clip.mp4 comes as clip/mp4
            self._on_media(device, rest[1], ".".join(rest[2:-1]), rest[-1], payload)
        else:
            self._problem(f"[{device}] unexpected topic {'/'.join(rest)!r} ({len(payload)} bytes)")

    def _on_status(self, device: str, status: dict) -> None:
        mark = self._check_signature(device, status, f"status {str(status.get('state'))!r}")
        if not mark or mark == " VERIFIED":
            self.statuses[device] = status
            self._records.append(device, "status.jsonl", status)
        else:
            self.rejected.append(status)
        self._say("status", device, f"[{device}] STATUS {status.get('state')} ts={status.get('ts')} "
                                    f"version={status.get('version')}{mark}", payload=status)

    def _on_heartbeat(self, device: str, beat: dict) -> None:
        mark = self._check_signature(device, beat, f"heartbeat of {str(beat.get('ts'))[:40]}")
        if not mark or mark == " VERIFIED":
            self.heartbeats.append(beat)
            self._records.append(device, "heartbeats.jsonl", beat)
        else:
            self.rejected.append(beat)
        fields = ("uptime_s", "frames", "fps", "armed", "outbox_depth", "outbox_bytes", "disk_free_bytes",
                  "cpu_temp_c", "last_event_id")
        shown = " ".join(f"{key}={beat[key]}" for key in fields if key in beat)
        self._say("heartbeat", device, f"[{device}] HEARTBEAT ts={beat.get('ts')} {shown}{mark}", payload=beat)

    def _check_signature(self, device: str, message: dict, what: str) -> str:
        """' VERIFIED', ' UNVERIFIED (...)', ' FORGED' for the printed line ('' without the unit's key);
        anything but verified is counted and also reported as a problem."""
        public_b64 = self.unit_keys.get(device, self.unit_keys.get(ANY_DEVICE))
        if public_b64 is None:
            return ""
        verdict = signature_verdict(message, public_b64)
        if verdict == "verified":
            self.verified += 1
            return " VERIFIED"
        if verdict == "forged":
            self.forged += 1
        else:
            self.unverified += 1
        self._problem(f"[{device}] {what} not from the unit's key: {verdict}")
        return " FORGED" if verdict == "forged" else f" UNVERIFIED ({verdict})"

    def _on_event(self, device: str, event: dict) -> None:
        mark = self._check_signature(device, event, f"event {str(event['event_id'])[:80]!r}")
        if mark and mark != " VERIFIED":
            self.rejected.append(event)
            self._say("event", device, f"[{device}] EVENT {event.get('phase')} {event['event_id']} "
                      f"kind={event.get('kind')}{mark}", payload=event)
            return  # not the unit's: neither counted as seen (the genuine one may follow) nor shown as an event
        key = (device, str(event["event_id"]), str(event.get("phase")))
        if key in self._seen:
            self.duplicates += 1  # at-least-once delivery: a resend after reconnect
            return
        self._seen.add(key)
        self.events.append(event)
        self._records.append(device, "events.jsonl", event)
        line = (f"[{device}] EVENT {event.get('phase')} {event['event_id']} kind={event.get('kind')} "
                f"seq={event.get('seq')} "
                f"ts={event.get('ts')} score={event.get('score')} boxes={len(event.get('boxes') or [])}")
        for item in ("clip", "snapshot"):
            if isinstance(event.get(item), dict):
                line += f" {item}={event[item].get('name')}({event[item].get('bytes')} B)"
        if isinstance(event.get("clip"), dict) and event["clip"].get("partial"):
            line += f" PARTIAL CLIP ({event['clip'].get('duration_s')} s)"
        if event.get("incomplete"):
            line += " INCOMPLETE"
        self._say("event", device, line + mark, payload=event)

    def _on_command_result(self, device: str, result: dict) -> None:
        mark = self._check_signature(device, result, f"command result {str(result.get('id'))[:80]!r}")
        if mark and mark != " VERIFIED":
            self.rejected.append(result)
        else:
            self.command_results.append(result)
            command = self._sent.pop((device, result["id"]), None) if result.get("id") else None
            self._records.append(device, "results.jsonl", {"result": result, "command": command})
        verdict = f"OK {result.get('detail')}" if result.get("ok") else f"REFUSED {result.get('reason')}"
        self._say("result", device, f"[{device}] COMMAND {result.get('cmd', '?')} id={result.get('id')} "
                  f"{verdict}{mark}", payload=result)

    def _on_command(self, device: str, payload: bytes) -> None:
        """Keep a command on its way to the unit until its answer arrives (signed envelope or bare command)."""
        data = load_json(payload, MAX_MESSAGE_BYTES, "command")
        command = data.get("cmd") if isinstance(data, dict) else None
        if isinstance(command, dict) and isinstance(command.get("id"), str) and command["id"]:
            self._sent[(device, command["id"])] = command
        elif isinstance(data, dict) and isinstance(data.get("id"), str) and data["id"]:
            self._sent[(device, data["id"])] = data  # a bare (unsigned) command: the unit will refuse it

    def _on_media(self, device: str, event_id: str, name: str, part: str, payload: bytes) -> None:
        key = (device, event_id, name)
        if part == "manifest":
            self.assembler.manifest(key, _parsed(MediaManifest, payload))
        else:
            self.assembler.chunk(key, part, payload)

    def _say(self, kind: str, device: str | None, text: str, **fields) -> None:
        """One line out: the text for people, or one JSON object (kind, device, topic, fields) for scripts."""
        if not self.as_json:
            self._print(text)
            return
        topic = self._topic if device is not None else None
        self._print(json.dumps({"kind": kind, "device": device, "topic": topic, **fields}, sort_keys=True))

    def _problem(self, text: str, kind: str = "warning") -> None:
        self.errors.append(text)
        self._say(kind, None, f"WARNING {text}", message=text)


def default_session(device_id: str | None) -> str:
    """A stable client id per host and watched unit, so a restarted monitor resumes its broker session."""
    return safe_component(f"pid-monitor-{socket.gethostname()}-{device_id or 'all'}")[:64]


def run_monitor(url: str, device_id: str | None, out_dir: Path | None, session: str | None = None,
                clean_session: bool = False, as_json: bool = False, unit_key: str | None = None,
                unit_keys_file: Path | None = None, tls: TlsSettings | None = None) -> int:
    """CLI entry: print everything until Ctrl-C; exit code 1 if any media file failed verification.

    By default the session is persistent (QoS 1 messages sent while the monitor was away are delivered when it
    is back); clean_session=True starts afresh every time."""
    if not clean_session and session is None:
        session = default_session(device_id)
    unit_keys = load_unit_keys(unit_keys_file) if unit_keys_file is not None else {}
    if unit_key is not None:
        unit_keys[device_id or ANY_DEVICE] = unit_key
    monitor = Monitor(url, device_id, out_dir, session=None if clean_session else session, as_json=as_json,
                      unit_keys=unit_keys, tls=tls)
    monitor.start()
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        monitor._say("stopping", None, "stopping monitor")
    finally:
        monitor.stop()
    bad = [f"{m.event_id}/{m.name}" for m in monitor.media.values() if not m.verified]
    if bad:
        monitor._say("unverified", None, f"{len(bad)} media file(s) failed verification: {', '.join(bad)}",
                     media=bad)
        return 1
    if monitor.forged or monitor.unverified:
        print(f"{monitor.forged} forged and {monitor.unverified} unverified message(s) claimed to be the unit's")
        return 1
    return 0

