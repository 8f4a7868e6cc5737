"""Armed hours by day of week, in the site's local time zone.

A period that ends at or before its start runs past midnight: {days = ["fri"], start = "22:00", end = "06:00"}
is armed from Friday 22:00 to Saturday 06:00. With no periods the schedule is always armed (the [events] armed
switch alone decides). Local time comes from the IANA zone name, so daylight-saving changes are followed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from common.settings import Section

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$"


class ArmedPeriod(Section):
    days: tuple[Day, ...] = Field(DAYS, min_length=1, description="Days the period starts on: mon ... sun.")
    start: str = Field("00:00", pattern=_HHMM, description="Local start time HH:MM.")
    end: str = Field("24:00", pattern=_HHMM, description="Local end time HH:MM (24:00 = midnight at the end of "
                                                         "the day); at or before start = the next day.")


class ScheduleSettings(Section):
    """Config section [schedule]."""

    timezone: str = Field("Europe/London", description="IANA time zone of the site, e.g. 'Europe/London'.")
    periods: tuple[ArmedPeriod, ...] = Field((), description="Armed periods ([[schedule.periods]]); none = always.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r}; use an IANA name such as 'Europe/London'") from None
        return name


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


class Schedule:
    def __init__(self, settings: ScheduleSettings) -> None:
        self.settings = settings
        self.zone = ZoneInfo(settings.timezone)
        self._last: bool | None = None

    def is_armed(self, wall_time: float) -> bool:
        """Whether the schedule arms the unit at this Unix time."""
        if not self.settings.periods:
            return True
        local = datetime.fromtimestamp(wall_time, self.zone)
        minute = local.hour * 60 + local.minute
        today = DAYS[local.weekday()]
        yesterday = DAYS[(local.weekday() - 1) % 7]
        return any(self._covers(p, today, yesterday, minute) for p in self.settings.periods)

    @staticmethod
    def _covers(period: ArmedPeriod, today: Day, yesterday: Day, minute: int) -> bool:
        start, end = _minutes(period.start), _minutes(period.end)
        if start < end:
            return today in period.days and start <= minute < end
        # runs past midnight: the evening part belongs to today, the morning part to yesterday's period
        return (today in period.days and minute >= start) or (yesterday in period.days and minute < end)

    def change(self, wall_time: float) -> bool | None:
        """The new armed state if it differs from the last call's (the first call always reports), else None."""
        armed = self.is_armed(wall_time)
        if armed == self._last:
            return None
        self._last = armed
        return armed

