"""Camera faults on a live unit: the driver raises, the sensor stalls, the sensor freezes on one frame. Each is
reported once (fault, then restore), the unit keeps detecting, and the station loses and doubles nothing."""

from __future__ import annotations

import random

import pytest

from tests.faults.harness import FaultResult, long_or_short, record
from tests.faults.live import QUIET_FRAMES, Fault, quiet_plan, run_live

REASON = {"error": "error", "stall": "stalled", "freeze": "stalled"}


@pytest.mark.faults
@pytest.mark.broker
@pytest.mark.slow
def test_camera_errors_stalls_and_freezes_are_reported_once_and_lose_nothing(mosquitto, tmp_path):
    walks = long_or_short(long=12, short=3)
    chooser = random.Random(171)
    faults = [Fault(kind, chooser.uniform(3.0, 8.0)) for kind in ("error", "stall", "freeze") * (walks // 3)]
    plan = quiet_plan(walks, faults, [chooser.randint(*QUIET_FRAMES) for _ in faults])
    run = run_live(mosquitto.url, tmp_path, walks, plan)

    reported = [(e["kind"], e["reason"]) for e in run.expected if e.get("source") == "camera"]
    wanted = [item for fault in faults for item in (("fault", REASON[fault.kind]), ("restore", REASON[fault.kind]))]
    alarms = [e for e in run.expected if e["kind"] == "intrusion" and e.get("phase") == "start"]
    for kind in ("error", "stall", "freeze"):
        told = sum(1 for f in faults if f.kind == kind)
        record(FaultResult(f"camera {kind}", run.camera.injected[kind],
                           told if reported == wanted and len(alarms) == walks else 0,
                           run.lost, run.duplicated, run.monitor.duplicates,
                           f"each a fault + restore; {len(alarms)} of {walks} alarms"))
    assert sum(run.camera.injected.values()) == len(faults)
    assert reported == wanted, reported
    assert len(alarms) == walks, "a camera fault cost an alarm"
    assert run.summary.frames >= walks * 140 - 5 * len(faults)
    assert not run.problems, run.problems
