"""Overt/covert signalling on simulated outputs, timed by a ManualClock (no sleeps)."""

import pytest
from pydantic import ValidationError

from agent.signalling import Signaller, SignallingSettings
from common.clock import ManualClock
from common.errors import ConfigError
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

def test_overt_signalling_without_the_output_wired_is_reported():
    from agent.signalling import signalling_problems

    no_siren = GpioSettings(outputs=[{"id": "strobe", "pin": 22, "kind": "strobe"}])
    overt = SignallingSettings(mode="overt", siren=True)
    assert signalling_problems(overt, no_siren) == [
        "signalling.siren is enabled in overt mode but gpio.outputs has no output of kind 'siren'"]
    assert signalling_problems(overt, GPIO) == []
    assert signalling_problems(SignallingSettings(mode="covert", siren=True), no_siren) == []
