"""Overt/covert signalling on simulated outputs, timed by a ManualClock (no sleeps)."""

import pytest
from pydantic import ValidationError

from agent.clock import ManualClock
from agent.errors import ConfigError
from agent.signalling import Signaller, SignallingSettings
from drivers.gpio import GpioSettings, OutputChange, SimulatedGpio

GPIO = GpioSettings(outputs=[{"id": "strobe", "pin": 22, "kind": "strobe"},
                             {"id": "siren", "pin": 23, "kind": "siren", "active_low": True},
                             {"id": "status", "pin": 24, "kind": "led"}])


def rig(**settings):
    clock = ManualClock(monotonic_start=100.0)
    gpio = SimulatedGpio(GPIO)
    gpio.open()
    return Signaller(SignallingSettings(**settings), gpio, clock), gpio, clock


def run_for(signaller: Signaller, clock: ManualClock, seconds: float, step: float = 0.1) -> None:
    for _ in range(round(seconds / step)):
        clock.advance(step)
        signaller.tick()


def rounded(history):
    """History with timestamps to the microsecond (the clock advances in float steps)."""
    return [OutputChange(round(ts, 6), out, on) for ts, out, on in history]


def on_periods(history, output_id):
    """[(on_ts, off_ts), ...] of one output, rounded to ms."""
    periods, start = [], None
    for ts, out, on in history:
        if out != output_id:
            continue
        if on:
            start = ts
        elif start is not None:
            periods.append((round(start, 3), round(ts, 3)))
            start = None
    return periods


def test_overt_alarm_flashes_strobe_in_its_pattern_for_the_set_time_and_sounds_the_siren():
    signaller, gpio, clock = rig(mode="overt", strobe_pattern_ms=(200, 300), strobe_s=2.0, siren=True, siren_s=1.0)
    signaller.alarm_started()
    run_for(signaller, clock, 5.0)
    assert on_periods(gpio.history, "strobe") == [(100.0, 100.2), (100.5, 100.7), (101.0, 101.2), (101.5, 101.7)]
    assert on_periods(gpio.history, "siren") == [(100.0, 101.0)]
    assert gpio.pin_levels[23] == 1 and not signaller.active  # active-low siren back at its off level
    assert "status" not in {out for _, out, _ in gpio.history}  # LEDs are not alarm outputs


def test_covert_mode_keeps_every_output_off():
    signaller, gpio, clock = rig(mode="covert", siren=True)
    signaller.alarm_started()
    run_for(signaller, clock, 3.0)
    signaller.alarm_ended()
    assert [change for change in gpio.history if change.on] == []
    assert not any(gpio.is_on(out) for out in gpio.outputs)


def test_switching_to_covert_mid_alarm_turns_everything_off_at_once():
    signaller, gpio, clock = rig(mode="overt", strobe_pattern_ms=(1000, 0), siren=True, siren_s=10, strobe_s=10)
    signaller.alarm_started()
    run_for(signaller, clock, 1.0)
    signaller.set_mode("covert")
    assert rounded(gpio.history) == [OutputChange(100.0, "strobe", True), OutputChange(100.0, "siren", True),
                            OutputChange(101.0, "strobe", False), OutputChange(101.0, "siren", False)]
    signaller.alarm_started()
    run_for(signaller, clock, 1.0)
    assert len(gpio.history) == 4
    with pytest.raises(ConfigError, match="mode must be 'overt' or 'covert'"):
        signaller.set_mode("loud")


def test_retriggers_extend_but_never_past_max_on():
    signaller, gpio, clock = rig(mode="overt", strobe=False, siren=True, siren_s=10, strobe_s=5,
                                 max_on_s=25)
    signaller.alarm_started()
    for _ in range(6):                      # a new alarm every 8 s keeps asking for 10 more seconds
        run_for(signaller, clock, 8.0)
        signaller.alarm_started()
    assert on_periods(gpio.history, "siren")[0] == (100.0, 125.0)


def test_stop_with_alarm_and_close_leave_outputs_off():
    signaller, gpio, clock = rig(mode="overt", siren=True, stop_with_alarm=True)
    signaller.alarm_started()
    run_for(signaller, clock, 0.5)
    signaller.alarm_ended()
    assert not gpio.is_on("siren") and not gpio.is_on("strobe")
    assert round(gpio.history[-1].ts, 6) == 100.5
    signaller.alarm_started()
    signaller.close()
    assert all(not gpio.is_on(out) for out in gpio.outputs)
    assert {out for ts, out, on in rounded(gpio.history) if ts == 100.5 and not on} == {"strobe", "siren", "status"}


def test_next_change_in_tells_a_loop_when_to_wake():
    signaller, gpio, clock = rig(mode="overt", strobe_pattern_ms=(200, 300), strobe_s=2.0)
    assert signaller.next_change_in() is None
    signaller.alarm_started()
    assert signaller.next_change_in() == pytest.approx(0.2)
    clock.advance(0.25)
    assert signaller.next_change_in() == pytest.approx(0.25)


@pytest.mark.parametrize("settings, message", [
    ({"strobe_pattern_ms": (100, 100, 100)}, "an even count"),
    ({"strobe_pattern_ms": (0, 100)}, "on durations must be 1-60000 ms"),
    ({"siren_s": 300, "max_on_s": 100}, r"siren_s \(300.0\) exceeds max_on_s \(100.0\)"),
    ({"mode": "stealth"}, "'overt' or 'covert'"),
    ({"volume": 11}, "Extra inputs are not permitted"),
])
def test_bad_settings_are_named(settings, message):
    with pytest.raises(ValidationError, match=message):
        SignallingSettings(**settings)


# -- a real recording replayed with a PIR script: detection -> fusion -> engine -> signalling -----------------------

@pytest.fixture(scope="module")
def walk_clip(tmp_path_factory):
    """The demo scene (a figure crosses the yard from 6 s to 11 s) written to a real MP4 and decoded back."""
    from agent.demo import write_demo

    path = tmp_path_factory.mktemp("walk") / "walk.mp4"
    write_demo(path, seconds=14.0, width=320, height=180)
    return path


WALK_GPIO = {"inputs": [{"id": "pir-east", "pin": 17, "kind": "pir", "zone": "yard", "debounce_ms": 100},
                        {"id": "lid", "pin": 6, "kind": "tamper", "debounce_ms": 50}],
             "outputs": [{"id": "strobe", "pin": 22, "kind": "strobe"}, {"id": "siren", "pin": 23, "kind": "siren"}]}


def replay(clip, script_rows, mode, *, policy="both"):
    """Run the clip frame by frame through the real detector, fusion, engine and signaller, as the pipeline does."""
    from agent.config import EventSettings
    from agent.events import AlarmEnded, AlarmStarted, EventEngine
    from agent.sensors import AlarmInputs
    from drivers.camera.replay import ReplayCamera
    from drivers.gpio import make_gpio, sidecar_script
    from models.fusion import FusionSettings
    from models.motion import MotionDetector, MotionSettings

    script = clip.with_name(clip.name + ".pir.csv")
    script.write_text("ts,input,level\n" + "".join(f"{ts},{ref},{level}\n" for ts, ref, level in script_rows))
    gpio = make_gpio(GpioSettings(**WALK_GPIO), script=sidecar_script(clip))
    clock = ManualClock(monotonic_start=0.0)
    inputs = AlarmInputs(gpio, FusionSettings(zones=[{"zone": "yard", "policy": policy}], window_s=3.0))
    signaller = Signaller(SignallingSettings(mode=mode, strobe_pattern_ms=(300, 200), strobe_s=4.0, siren=True,
                                             siren_s=2.0), gpio, clock)
    detector = MotionDetector(MotionSettings())
    engine = EventEngine(EventSettings(min_motion_frames=3), post_roll_s=1.0)
    alarms, sensor_events = [], []
    with ReplayCamera(clip) as camera, gpio:
        def handle(events):
            for event in events:
                if isinstance(event, AlarmStarted):
                    alarms.append({"start": event.ts, "confirmed_by": inputs.alarm_started()})
                    signaller.alarm_started()
                elif isinstance(event, AlarmEnded):
                    alarms[-1].update(end=event.ts, all_sources=inputs.alarm_ended())
                    signaller.alarm_ended()

        for frame in camera.frames():
            clock.set_monotonic(frame.ts)
            step = inputs.frame(frame.ts, detector.process(frame.luma))
            sensor_events += step.events
            handle(engine.update(frame.ts, frame.index, step.result))
            signaller.tick()
        handle(engine.finish(frame.ts, frame.index))
        signaller.close()
    return alarms, sensor_events, gpio.history


def test_replay_with_pir_script_confirms_by_both_and_drives_outputs(walk_clip):
    alarms, events, history = replay(walk_clip, [(6.8, "pir-east", 1), (10.5, "pir-east", 0),
                                                 (12.0, "lid", 1)], "overt")
    assert len(alarms) == 1
    alarm = alarms[0]
    # video sees the figure from ~6.2 s, but outdoors it needs the PIR: edge 6.8 s, reported after its 0.1 s
    # debounce on the 6.9 s frame, then 3 consecutive confirmed frames -> 7.1 s (video alone would start at 6.4 s)
    assert alarm["start"] == pytest.approx(7.1)
    assert alarm["confirmed_by"] == alarm["all_sources"] == ["video", "pir:pir-east"]
    assert [(e.kind, e.input_id, round(e.ts, 3)) for e in events] == [
        ("pir", "pir-east", 6.8), ("pir", "pir-east", 10.5), ("tamper", "lid", 12.0)]
    start = alarm["start"]
    periods = on_periods(rounded(history), "strobe")
    assert periods[0][0] == pytest.approx(start) and len(periods) == 8  # 4 s of a 0.5 s pattern
    assert all(off - on == pytest.approx(0.3, abs=0.11) for on, off in periods)  # 0.3 s flashes, at 10 fps ticks
    assert periods[-1][1] <= start + 4.0 + 1e-6
    assert on_periods(rounded(history), "siren") == [(pytest.approx(start), pytest.approx(start + 2.0))]
    assert not any(on for _, _, on in history[-2:])  # safe state at the end


def test_replay_video_motion_without_pir_raises_no_alarm_when_both_are_required(walk_clip):
    alarms, events, history = replay(walk_clip, [], "overt")
    assert alarms == [] and events == []
    assert not any(on for _, _, on in history)
    video_alone, _, _ = replay(walk_clip, [], "covert", policy="video")
    assert len(video_alone) == 1 and video_alone[0]["confirmed_by"] == ["video"]
    assert video_alone[0]["start"] < 7.0


def test_replay_in_covert_mode_alarms_but_keeps_every_output_off(walk_clip):
    alarms, _, history = replay(walk_clip, [(6.8, "pir-east", 1), (10.5, "pir-east", 0)], "covert")
    assert len(alarms) == 1 and alarms[0]["confirmed_by"] == ["video", "pir:pir-east"]
    assert history and not any(on for _, _, on in history)  # only the safe-state writes of close()


def test_overt_signalling_without_the_output_wired_is_reported():
    from agent.signalling import signalling_problems

    no_siren = GpioSettings(outputs=[{"id": "strobe", "pin": 22, "kind": "strobe"}])
    overt = SignallingSettings(mode="overt", siren=True)
    assert signalling_problems(overt, no_siren) == [
        "signalling.siren is enabled in overt mode but gpio.outputs has no output of kind 'siren'"]
    assert signalling_problems(overt, GPIO) == []
    assert signalling_problems(SignallingSettings(mode="covert", siren=True), no_siren) == []
