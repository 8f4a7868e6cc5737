"""Wall-clock steps of ±1 h on a live unit, through its injected clock: each step is reported once with its size,
every event after it carries the new time, alarms keep their true length, and the station loses nothing."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

from tests.faults.harness import FaultResult, long_or_short, record
from tests.faults.live import FPS, QUIET_FRAMES, WALK_FRAMES, Fault, quiet_plan, run_live

HOUR = 3600.0


def epoch(iso: str) -> float:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


@pytest.mark.faults
@pytest.mark.broker
@pytest.mark.slow
def test_clock_stepped_an_hour_either_way_is_reported_and_loses_nothing(mosquitto, tmp_path):
    walks = long_or_short(long=12, short=3)
    chooser = random.Random(1703)
    steps = [Fault("step", chooser.choice((HOUR, -HOUR))) for _ in range(walks)]
    plan = quiet_plan(walks, steps, [chooser.randint(*QUIET_FRAMES) for _ in steps])
    # and one step while an alarm runs (between its start at ~frame 66 and its end at ~127)
    mid_alarm = (walks - 1) * WALK_FRAMES + 95
    plan[mid_alarm] = Fault("step", -HOUR)
    run = run_live(mosquitto.url, tmp_path, walks, plan, events={"update_interval_s": 1.0})

    problems = list(run.problems)
    reported = [e["stepped_s"] for e in run.expected if e["kind"] == "clock_step"]
    wanted = [plan[index].amount for index in sorted(plan)]
    if reported != wanted:
        problems.append(f"steps reported {reported}, made {wanted}")
    # every frame-stamped event is on the clock as it was when its frame arrived
    for event in run.expected:
        if event.get("frame") is not None and abs(epoch(event["ts"]) - run.camera.walls[event["frame"]]) > 0.01:
            problems.append(f"{event['kind']} {event.get('phase')} at frame {event['frame']}: ts {event['ts']}")
    ends = [e for e in run.expected if e["kind"] == "intrusion" and e.get("phase") == "end"]
    for end in ends:  # its length is the frames it lasted, whatever the wall clock did meanwhile
        lasted = (end["frame"] - end["started_frame"]) / FPS
        if end["duration_s"] is None or abs(end["duration_s"] - lasted) > 0.5:
            problems.append(f"alarm {end['event_id']} lasted {lasted:.1f} s, reported {end['duration_s']}")
    last = ends[-1] if ends else {}
    updates = [e for e in run.expected if e["kind"] == "intrusion" and e.get("phase") == "update"
               and e.get("alarm_event_id") == last.get("event_id")]
    if not any(mid_alarm < e["frame"] for e in updates):  # a step back must not hold the alarm's updates an hour
        problems.append(f"no update after the mid-alarm step: {[e['frame'] for e in updates]}")
    record(FaultResult("clock step ±1 h", len(plan), len(reported) if not problems else 0, run.lost,
                       run.duplicated, run.monitor.duplicates,
                       f"{sum(s > 0 for s in wanted)} forward, {sum(s < 0 for s in wanted)} back, one mid-alarm; "
                       f"{len(ends)} of {walks} alarms"))
    assert len(ends) == walks
    assert not problems, problems
