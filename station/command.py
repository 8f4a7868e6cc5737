"""Send one command to a unit through the broker and wait for its answer (station side), signed with a station key."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from agent.config import TlsSettings
from agent.security import load_key_file, sign
from common.errors import ConfigError
from station.monitor import Monitor

DEFAULT_TTL_S = 30


def envelope_for(command_json: str, device_id: str, key_file: Path | None, now: float,
                 ttl_s: int = DEFAULT_TTL_S) -> tuple[dict, str]:
    """(what to publish, the request id): the command signed for this device, or bare without a key."""
    try:
        request = json.loads(command_json)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"the command is not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise ConfigError("the command must be a JSON object such as {\"cmd\": \"disarm\"}")
    request.setdefault("id", uuid.uuid4().hex[:12])
    if key_file is None:
        return request, request["id"]  # the unit will refuse it as unsigned, and say so
    key_id, key = load_key_file(key_file)
    return sign(request, device_id, key, key_id, now, ttl_s), request["id"]


def send_command(url: str, device_id: str, command_json: str, timeout: float,
                 key_file: Path | None = None, ttl_s: int = DEFAULT_TTL_S,
                 tls: TlsSettings | None = None) -> dict | None:
    """Publish a command to one unit (QoS 1, not retained) and wait for its result; None if the unit did not answer
    in time. A unit that is offline gets it from its persistent broker session when it returns, if before ttl_s."""
    message, wanted = envelope_for(command_json, device_id, key_file, time.time(), ttl_s)
    monitor = Monitor(url, device_id, None, printer=lambda line: None, session=None, tls=tls)
    monitor.start()
    try:
        if not monitor.wait_for(lambda m: m.subscribed, timeout=min(timeout, 10.0)):
            raise ConfigError(f"cannot reach broker {url}")
        info = monitor.publish(device_id, "cmd", json.dumps(message))
        info.wait_for_publish(timeout)
        answered = lambda m: any(r.get("id") == wanted for r in m.command_results)
        if not monitor.wait_for(answered, timeout=timeout):
            return None
        return next(r for r in monitor.command_results if r.get("id") == wanted)
    finally:
        monitor.stop()
