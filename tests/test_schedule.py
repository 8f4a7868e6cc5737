"""Armed hours by weekday in the site's time zone."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from agent.schedule import Schedule, ScheduleSettings

LONDON = ZoneInfo("Europe/London")


def at(text: str, zone=LONDON) -> float:
    """Unix time of a local 'YYYY-MM-DD HH:MM' in the zone."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=zone).timestamp()


NIGHTS = ScheduleSettings(periods=[
    {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "18:00", "end": "07:30"},  # weeknights
    {"days": ["sat", "sun"]},                                                           # all weekend
])


@pytest.mark.parametrize("local, armed", [
    ("2026-11-23 12:00", False),   # Monday midday
    ("2026-11-23 17:59", False),
    ("2026-11-23 18:00", True),    # Monday evening
    ("2026-11-24 07:29", True),    # Tuesday morning: still Monday's night
    ("2026-11-24 07:30", False),
    ("2026-11-23 03:00", False),   # Monday early: Sunday's all-day period ended at midnight
    ("2026-11-28 12:00", True),    # Saturday
    ("2026-11-27 23:00", True),    # Friday night ...
    ("2026-11-28 07:45", True),    # ... runs into Saturday, which is armed anyway
])
def test_weekday_periods_and_overnight(local, armed):
    assert Schedule(NIGHTS).is_armed(at(local)) is armed


def test_local_time_follows_the_zone_and_daylight_saving():
    schedule = Schedule(ScheduleSettings(timezone="Europe/London",
                                         periods=[{"days": ["sun"], "start": "01:30", "end": "02:00"}]))
    # 2026-10-25 (Sunday) clocks go back at 02:00 BST: 01:30 local happens at 00:30 and 01:30 UTC
    utc = ZoneInfo("UTC")
    assert schedule.is_armed(at("2026-10-25 00:45", utc))   # 01:45 BST
    assert schedule.is_armed(at("2026-10-25 01:45", utc))   # 01:45 GMT
    assert not schedule.is_armed(at("2026-10-25 02:15", utc))
    tokyo = Schedule(ScheduleSettings(timezone="Asia/Tokyo", periods=[{"start": "09:00", "end": "17:00"}]))
    assert tokyo.is_armed(at("2026-11-23 01:00", utc))      # 10:00 in Tokyo
    assert not tokyo.is_armed(at("2026-11-23 12:00", utc))  # 21:00 in Tokyo


def test_no_periods_means_always_armed_and_changes_are_reported_once():
    assert Schedule(ScheduleSettings()).is_armed(at("2026-11-23 12:00"))
    schedule = Schedule(NIGHTS)
    calls = [schedule.change(at(t)) for t in ("2026-11-23 12:00", "2026-11-23 13:00", "2026-11-23 18:00",
                                              "2026-11-23 19:00", "2026-11-24 08:00")]
    assert calls == [False, None, True, None, False]


@pytest.mark.parametrize("settings, message", [
    ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"periods": [{"start": "25:00"}]}, "String should match pattern"),
    ({"periods": [{"days": ["monday"]}]}, "Input should be 'mon'"),
    ({"periods": [{"days": []}]}, "at least 1 item"),
    ({"periods": [{"begin": "08:00"}]}, "Extra inputs are not permitted"),
])
def test_bad_schedule_settings_are_named(settings, message):
    with pytest.raises(ValidationError, match=message):
        ScheduleSettings(**settings)
