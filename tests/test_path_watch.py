"""Dual-path supervision: MQTT down for long enough is one `path` event (ok false), back is one (ok true); the
DC-09 link turns them into YC / YK."""

from __future__ import annotations

from agent.arc.codes import signal_name
from agent.path_watch import PathWatch
from common.clock import ManualClock


def test_a_short_drop_says_nothing_a_long_one_says_lost_once_then_restored():
    clock, state = ManualClock(), {"up": True}
    watch = PathWatch(lambda: state["up"], loss_after_s=60.0)
    seen = []
    for second in range(300):
        state["up"] = not (10 <= second < 40 or 100 <= second < 250)  # 30 s drop, then a 150 s outage
        seen.append((second, watch.check(clock.monotonic())))
        clock.advance(1.0)
    changes = [(second, change) for second, change in seen if change]
    assert changes == [(160, "lost"), (250, "restored")]


def test_path_events_are_dc09_trouble_and_restore_signals():
    assert signal_name({"kind": "path", "path": "mqtt", "ok": False}) == "path_fail"
    assert signal_name({"kind": "path", "path": "mqtt", "ok": True}) == "path_restore"
