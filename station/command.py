"""Send one command to a unit through the broker and wait for its answer (station side)."""

from __future__ import annotations

import json
import uuid

from common.errors import ConfigError
from station.monitor import Monitor


def send_command(url: str, device_id: str, command_json: str, timeout: float) -> dict | None:
    """Publish a command to one unit and wait for its result; None if the unit did not answer in time."""
    try:
        request = json.loads(command_json)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"the command is not JSON: {exc}") from None
    if isinstance(request, dict) and not request.get("id"):
        request["id"] = uuid.uuid4().hex[:12]
    wanted = request.get("id") if isinstance(request, dict) else ""
    monitor = Monitor(url, device_id, None, printer=lambda line: None)
    monitor.start()
    try:
        if not monitor.wait_for(lambda m: m.subscribed, timeout=min(timeout, 10.0)):
            raise ConfigError(f"cannot reach broker {url}")
        info = monitor._client.publish(f"{monitor._prefix}/{device_id}/cmd", json.dumps(request), qos=1)
        info.wait_for_publish(timeout)
        answered = lambda m: any(r.get("id") == wanted for r in m.command_results)
        if not monitor.wait_for(answered, timeout=timeout):
            return None
        return next(r for r in monitor.command_results if r.get("id") == wanted)
    finally:
        monitor.stop()
