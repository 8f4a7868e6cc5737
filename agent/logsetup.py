"""Logging set-up: journald priorities (`<N>` prefixes, no timestamp) under systemd, plain timestamped stderr otherwise.

systemd connects stderr to the journal and says so in $JOURNAL_STREAM ("device:inode" of that stream); journald
reads a leading `<N>` on each line as its syslog priority and stamps the time itself, so a second timestamp would
only be noise. The check against stderr's own device and inode keeps a redirected stderr plain (as systemd advises).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import IO, Mapping

# syslog priorities (sd-daemon.h): err 3, warning 4, notice 5, info 6, debug 7
PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def priority(levelno: int) -> int:
    for level, value in PRIORITIES:
        if levelno >= level:
            return value
    return 7


class JournalFormatter(logging.Formatter):
    """`<N>name: message`, and every further line of a traceback with the same priority."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def to_journal(stream: IO[str], environ: Mapping[str, str]) -> bool:
    """True when `stream` is the journal stream systemd announced."""
    announced = environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in announced.split(":"))
        status = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (status.st_dev, status.st_ino) == (device, inode)


class DiskSafeHandler(logging.StreamHandler):
    """A stream handler for a stream that may sit on a full disk (stderr redirected to a file): a line the disk
    refuses is counted, not printed as a traceback (which would fail the same way), and the first line written
    after says how many were lost."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self.lost = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.lost:
            lost, self.lost = self.lost, 0
            notice = logging.LogRecord(__name__, logging.WARNING, __file__, 0,
                                       "%d log line(s) lost: the log's disk was full", (lost,), None)
            super().emit(notice)
            if self.lost:  # still full: that notice was lost too
                self.lost += lost - 1
                return
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            self.lost += 1
            return
        super().handleError(record)


def setup_logging(verbose: bool, stream: IO[str] | None = None, environ: Mapping[str, str] | None = None) -> None:
    stream = sys.stderr if stream is None else stream
    handler = DiskSafeHandler(stream)
    journal = to_journal(stream, os.environ if environ is None else environ)
    handler.setFormatter(JournalFormatter() if journal else logging.Formatter(PLAIN_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
