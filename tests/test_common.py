"""The shared pieces below every package: clock waits, backoff, hold-for-N-seconds, rate meter, settings errors."""

import pytest
from pydantic import Field, ValidationError

from common.backoff import Backoff
from common.clock import ManualClock
from common.hold import Hold
from common.rate import RateMeter
from common.settings import Section, describe_errors


def test_waiting_on_a_manual_clock_moves_it_and_never_back():
    clock = ManualClock(wall_start=1000.0, monotonic_start=5.0)
    clock.wait(2.5)
    clock.wait(-1.0)                        # a deadline already past: no wait, no error
    assert (clock.monotonic(), clock.wall()) == (7.5, 1002.5)


def test_backoff_doubles_to_its_cap_and_starts_again_after_a_success():
    backoff = Backoff(1, 60)                # the agent's camera retry: min(60, 2 ** attempt)
    assert [backoff.next() for _ in range(8)] == [min(60, 2 ** attempt) for attempt in range(8)]
    backoff.reset()
    assert backoff.next() == 1
    for _ in range(2000):                   # a very long outage stays at the cap (no float overflow)
        backoff.next()
    assert backoff.next() == 60
    with pytest.raises(ValueError, match="min_s <= max_s"):
        Backoff(5, 1)


def test_hold_raises_after_hold_s_present_and_clears_after_hold_s_absent():
    hold = Hold(2.0)
    assert hold.update(0.0, "covered") is None
    assert hold.update(1.0, None) is None   # a gap restarts the wait
    assert hold.update(1.5, "covered") is None
    assert hold.update(3.4, "covered") is None
    assert hold.update(3.5, "covered") == "raised" and (hold.reason, hold.since) == ("covered", 3.5)
    assert hold.update(4.0, None) is None and hold.active
    assert hold.update(6.0, None) == "cleared" and not hold.active


def test_rate_meter_over_a_time_window_falls_when_arrivals_stop():
    meter = RateMeter(window_s=5.0)
    for index in range(41):                 # 4 s of frames at 10 fps
        meter.mark(index / 10)
    assert meter.rate(now=4.0) == pytest.approx(10.0)
    assert meter.rate(now=8.0) == pytest.approx(2.0)   # the 11 arrivals of 3.0-4.0 s, measured to 8 s
    assert meter.rate(now=20.0) == 0.0


def test_rate_meter_over_the_last_samples_measures_between_them():
    meter = RateMeter(max_samples=5)
    for at in (0.0, 10.0, 10.5, 11.0, 11.5, 12.0):
        meter.mark(at)
    assert meter.rate() == pytest.approx(2.0)          # the first arrival has left the last five


def test_settings_errors_name_the_key():
    class Example(Section):
        fps: float = Field(10.0, gt=0)

    with pytest.raises(ValidationError) as caught:
        Example.model_validate({"fps": -5, "colour": "red"})
    assert describe_errors(caught.value) == ["fps: Input should be greater than 0 (got -5)", "colour: unknown key"]
    with pytest.raises(ValidationError, match="frozen"):
        Example().fps = 3
