"""The loan: when this deployment started, when it ends, its extensions, and the notices the unit owes about them.

A deployment starts when the station says the unit is installed and armed on site (a signed start_loan command);
its end is start + term + every extension (or the
latest paid-until date, when later). The book is kept in data_dir/loan.json (written atomically) and every change
also goes into the signed audit log, so the service period can be proven from the unit's own records. `check()`
returns the notices due at a moment: warnings 7, 3 and 1 days before the end, and the end itself, each once.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.security_parse import Refused, load_json
from common.clock import iso_utc
from common.errors import StorageError
from common.settings import Section, describe_errors

DAY_S = 86400.0
FILE = "loan.json"
MAX_BOOK_BYTES = 1 << 20  # a book is a few hundred bytes (one line per extension); far larger is not ours


class LoanSettings(Section):
    term_days: int = Field(30, ge=1, le=3650, description="Length of a loan before any extension, in days.")
    at_end: Literal["keep", "stop"] = Field("keep", description="At the end of the loan: 'keep' monitoring and flag "
                                                                "every event out_of_term, or 'stop' raising alarms.")
    warn_days: tuple[int, ...] = Field((7, 3, 1), description="Days before the end at which a loan notice is sent.")
    client_ref: str = Field("", max_length=128, description="The client's contact reference, for the reports.")
    survey_url: str = Field("", max_length=512, description="The victim feedback survey, carried in the reports.")


@dataclass(frozen=True, slots=True)
class Extension:
    days: int
    paid_until: str | None   # an ISO date (YYYY-MM-DD) the client paid up to, when the firm sets one
    reference: str           # invoice or order reference
    at: float                # wall time the extension was applied


@dataclass(frozen=True, slots=True)
class LoanNotice:
    state: Literal["started", "warning", "extended", "ended"]
    end_wall: float
    days_remaining: float
    reference: str | None = None


@dataclass
class _Book:
    started: float | None = None
    extensions: list[Extension] = field(default_factory=list)
    warned: list[int] = field(default_factory=list)  # warn_days already sent
    ended_notice: bool = False


class _ExtensionRecord(BaseModel):
    """An extension as loan.json keeps it. Strict: the unit wrote these values itself, anything else is damage."""

    model_config = ConfigDict(extra="forbid", strict=True)
    days: int
    paid_until: str | None
    reference: str
    at: float

    @field_validator("paid_until")
    @classmethod
    def _a_date(cls, value: str | None) -> str | None:
        if value is not None:
            _date_end(value)  # a ValueError here becomes the key's validation error
        return value


class _BookRecord(BaseModel):
    """loan.json: what `_Book` holds (asdict), every key checked; a key missing from an older book takes its default."""

    model_config = ConfigDict(extra="forbid", strict=True)
    started: float | None = None
    extensions: list[_ExtensionRecord] = []
    warned: list[int] = []
    ended_notice: bool = False


def _date_end(paid_until: str) -> float:
    """The end of a paid-until day (UTC), as wall time."""
    day = datetime.strptime(paid_until, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    return day.timestamp() + DAY_S


class LoanBook:
    def __init__(self, settings: LoanSettings, data_dir: Path) -> None:
        self.settings = settings
        self.path = Path(data_dir) / FILE
        self._book = self._load()

    def _load(self) -> _Book:
        """The book on disk, or a new one; a damaged book stops the unit with a StorageError naming file and key."""
        try:
            with self.path.open("rb") as stream:
                payload = stream.read(MAX_BOOK_BYTES + 1)  # one byte past the bound, so an oversized book is seen
        except FileNotFoundError:
            return _Book()
        except OSError as exc:
            raise StorageError(f"loan book {self.path} cannot be read: {exc.strerror or exc}") from None
        try:
            data = load_json(payload, MAX_BOOK_BYTES, "the file")
            if not isinstance(data, dict):
                raise Refused("the file is not a JSON object")
            record = _BookRecord.model_validate(data)
        except Refused as refusal:
            raise StorageError(f"loan book {self.path}: {refusal}") from None
        except ValidationError as exc:
            raise StorageError(f"loan book {self.path}: {'; '.join(describe_errors(exc))}") from None
        return _Book(record.started, [Extension(**item.model_dump()) for item in record.extensions],
                     list(record.warned), record.ended_notice)

    def _save(self) -> None:
        part = self.path.with_name(FILE + ".part")
        try:
            descriptor = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                json.dump(asdict(self._book), stream, sort_keys=True)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(part, self.path)
        except OSError as exc:
            raise StorageError(f"loan book {self.path}: {exc.strerror or exc}") from None

    # --- what the book says ------------------------------------------------------------------------------------
    @property
    def started(self) -> float | None:
        return self._book.started

    @property
    def extensions(self) -> list[Extension]:
        return list(self._book.extensions)

    def end_wall(self) -> float | None:
        if self._book.started is None:
            return None
        end = self._book.started + DAY_S * (self.settings.term_days + sum(e.days for e in self._book.extensions))
        paid = [_date_end(e.paid_until) for e in self._book.extensions if e.paid_until]
        return max([end, *paid])

    def remaining_s(self, wall: float) -> float | None:
        end = self.end_wall()
        return None if end is None else end - wall

    def in_term(self, wall: float) -> bool:
        """True before the start (installation) and during the loan; False once it has ended."""
        remaining = self.remaining_s(wall)
        return remaining is None or remaining > 0

    def alarms_stopped(self, wall: float) -> bool:
        return self.settings.at_end == "stop" and not self.in_term(wall)

    # --- changes -----------------------------------------------------------------------------------------------
    def start(self, wall: float, reference: str | None = None) -> LoanNotice | None:
        """The unit is installed and armed on site (a signed start_loan command): the loan begins, once."""
        if self._book.started is not None:
            return None
        self._book.started = wall
        self._save()
        return self._notice("started", wall, reference)

    def extend(self, days: int, paid_until: str | None, reference: str, wall: float) -> LoanNotice:
        if self._book.started is None:
            self._book.started = wall  # an extension before the first arming starts the loan now
        if paid_until is not None:
            _date_end(paid_until)  # a malformed date is refused before anything changes
        self._book.extensions.append(Extension(days, paid_until, reference, wall))
        end = self.end_wall()
        self._book.warned = [d for d in self._book.warned if end - wall <= d * DAY_S]
        self._book.ended_notice = self._book.ended_notice and end <= wall
        self._save()
        return self._notice("extended", wall, reference)

    def check(self, wall: float) -> list[LoanNotice]:
        """Notices due now, each sent once: warnings as their day passes, and the end."""
        remaining = self.remaining_s(wall)
        if remaining is None:
            return []
        notices = []
        if remaining <= 0:
            if not self._book.ended_notice:
                self._book.ended_notice = True
                self._save()
                notices.append(self._notice("ended", wall))
            return notices
        due = [d for d in sorted(self.settings.warn_days) if remaining <= d * DAY_S and d not in self._book.warned]
        if due:
            self._book.warned += due
            self._save()
            notices.append(self._notice("warning", wall))
        return notices

    def _notice(self, state, wall: float, reference: str | None = None) -> LoanNotice:
        end = self.end_wall()
        return LoanNotice(state, end, round(max(0.0, end - wall) / DAY_S, 3), reference)

    def describe(self) -> dict:
        """The book as it stands, for the audit log and the reports."""
        end = self.end_wall()
        return {"started": iso_utc(self._book.started) if self._book.started is not None else None,
                "ends": iso_utc(end) if end is not None else None, "term_days": self.settings.term_days,
                "extensions": [{"days": e.days, "paid_until": e.paid_until, "reference": e.reference,
                                "at": iso_utc(e.at)} for e in self._book.extensions]}
