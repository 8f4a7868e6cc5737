"""Event engine timing, driven by frame times (no sleeping)."""

import itertools

import pytest

from agent.config import EventSettings
from agent.events import AlarmEnded, AlarmStarted, EventEngine, MotionStopped, Phase
from models.motion import Box, MotionResult

FPS = 10
STILL = MotionResult(motion=False, score=0.0)
MOVING = MotionResult(motion=True, score=0.05, boxes=(Box(1, 2, 3, 4, 12),))


def make_engine(**overrides) -> EventEngine:
    settings = EventSettings(**{"min_motion_frames": 3, "event_gap_s": 2.0, "max_alarm_s": 60.0, **overrides})
    ids = (f"ev{n}" for n in itertools.count(1))
    return EventEngine(settings, post_roll_s=5.0, new_id=lambda: next(ids))


def feed(engine: EventEngine, pattern: list[bool], start_frame: int = 0) -> list[tuple[int, object]]:
    out = []
    for offset, moving in enumerate(pattern):
        frame = start_frame + offset
        for event in engine.update(frame / FPS, frame, MOVING if moving else STILL):
            out.append((frame, event))
    return out


def test_alarm_needs_min_consecutive_motion_frames():
    engine = make_engine()
    assert feed(engine, [True, True, False, True, True, False]) == []
    events = feed(engine, [True, True, True], start_frame=6)
    assert [(frame, type(event)) for frame, event in events] == [(8, AlarmStarted)]
    assert events[0][1].boxes == MOVING.boxes
    assert engine.phase is Phase.ALARM


def test_full_cycle_idle_alarm_post_roll_idle():
    engine = make_engine()
    events = feed(engine, [True] * 10 + [False] * 100)
    kinds = [(frame, type(event).__name__) for frame, event in events]
    # raised on the 3rd motion frame; quiet for 2.0 s after the last motion (frame 9) -> frame 29;
    # post-roll of 5.0 s -> ends at frame 79
    assert kinds == [(2, "AlarmStarted"), (29, "MotionStopped"), (79, "AlarmEnded")]
    end = events[-1][1]
    assert end.reason == "motion stopped" and end.started_frame == 2 and end.event_id == "ev1"
    assert engine.phase is Phase.IDLE


def test_bursts_within_event_gap_merge_into_one_alarm():
    engine = make_engine()
    pattern = ([True] * 5 + [False] * 15) * 3 + [False] * 100  # pauses of 1.5 s < gap of 2 s
    events = feed(engine, pattern)
    assert [type(e).__name__ for _, e in events] == ["AlarmStarted", "MotionStopped", "AlarmEnded"]


def test_motion_during_post_roll_resumes_same_alarm():
    engine = make_engine()
    pattern = [True] * 5 + [False] * 30 + [True] * 5 + [False] * 100
    events = feed(engine, pattern)
    names = [type(e).__name__ for _, e in events]
    assert names == ["AlarmStarted", "MotionStopped", "MotionStopped", "AlarmEnded"]
    assert len({e.event_id for _, e in events}) == 1


def test_max_alarm_length_ends_alarm_and_a_new_one_can_start():
    engine = make_engine(max_alarm_s=3.0)
    events = feed(engine, [True] * 50)
    names = [(frame, type(e).__name__) for frame, e in events]
    assert names[:3] == [(2, "AlarmStarted"), (32, "AlarmEnded"), (35, "AlarmStarted")]
    assert events[1][1].reason == "max length"
    assert events[0][1].event_id != events[2][1].event_id


def test_disarmed_engine_never_alarms_and_disarming_ends_alarm():
    engine = make_engine(armed=False)
    assert feed(engine, [True] * 20) == []
    engine.set_armed(True, 2.0, 20)
    started = feed(engine, [True] * 3, start_frame=21)
    assert isinstance(started[0][1], AlarmStarted)
    ended = engine.set_armed(False, 2.5, 25)
    assert isinstance(ended[0], AlarmEnded) and ended[0].reason == "disarmed"
    assert engine.phase is Phase.IDLE


def test_finish_ends_active_alarm_only():
    engine = make_engine()
    assert engine.finish(0.0, 0) == []
    feed(engine, [True] * 3)
    (end,) = engine.finish(0.3, 3)
    assert isinstance(end, AlarmEnded) and end.reason == "shutdown"
    assert not isinstance(end, MotionStopped)


class Timeline:
    """Feeds an engine still frames at FPS, carrying frame numbers on from call to call."""

    def __init__(self, engine: EventEngine) -> None:
        self.engine, self.frame = engine, 0

    def run(self, seconds: float, **fields) -> list[tuple[int, object]]:
        out = []
        for _ in range(round(seconds * FPS)):
            result = MotionResult(motion=False, score=0.0, **fields)
            out += [(self.frame, e) for e in self.engine.update(self.frame / FPS, self.frame, result)]
            self.frame += 1
        return out


def test_tamper_needs_to_persist_and_is_reported_disarmed_too():
    engine = make_engine(armed=False, tamper_hold_s=2.0)
    timeline = Timeline(engine)
    assert timeline.run(1.5, tamper="covered") == []  # a passing shadow over the lens is not tamper
    assert timeline.run(1.0) == []
    raised = timeline.run(3.0, tamper="covered")
    assert [(frame, type(e).__name__, e.reason) for frame, e in raised] == [(45, "TamperRaised", "covered")]
    assert engine.tampered == "covered"
    cleared = timeline.run(3.0)
    assert [(frame, type(e).__name__) for frame, e in cleared] == [(75, "TamperCleared")]
    assert cleared[0][1].duration_s == pytest.approx(3.0)
    assert engine.tampered is None


def test_while_tampered_an_alarm_needs_motion_sustained_for_a_second():
    # sbi-foliage at activity_gain x0.7: a branch pressed on the lens turns the view (tamper held) and big leaf
    # blobs count for 3-6 frames at a time; someone walking in the turned view moves for longer
    engine = make_engine(tamper_hold_s=1.0, tampered_motion_s=1.0)
    timeline = Timeline(engine)
    timeline.run(1.5, tamper="turned")
    assert engine.tampered == "turned"
    bursts = []
    for _ in range(3):  # 0.6 s of motion, 0.3 s still
        for moving in [True] * 6 + [False] * 3:
            result = MotionResult(motion=moving, score=0.05, boxes=MOVING.boxes if moving else (), tamper="turned")
            bursts += engine.update(timeline.frame / FPS, timeline.frame, result)
            timeline.frame += 1
    assert not any(isinstance(event, AlarmStarted) for event in bursts)
    started = []
    for _ in range(12):
        result = MotionResult(motion=True, score=0.05, boxes=MOVING.boxes, tamper="turned")
        started += [(timeline.frame, e) for e in engine.update(timeline.frame / FPS, timeline.frame, result)]
        timeline.frame += 1
    first = timeline.frame - 12
    assert [(frame - first, type(e)) for frame, e in started] == [(10, AlarmStarted)]   # 1.0 s into the motion
    # and with the view as learnt, 3 frames as ever
    untampered = make_engine(tampered_motion_s=1.0)
    assert [frame for frame, e in feed(untampered, [True] * 6)] == [2]


def test_scene_changes_are_reported_at_most_once_per_quiet_period():
    timeline = Timeline(make_engine(scene_change_quiet_s=10.0))
    first = timeline.run(0.1, scene_change=True)
    again = timeline.run(0.1, scene_change=True)
    later = timeline.run(10.0) + timeline.run(0.1, scene_change=True)
    assert [type(e).__name__ for _, e in first] == ["SceneChanged"]
    assert again == [] and [type(e).__name__ for _, e in later] == ["SceneChanged"]
