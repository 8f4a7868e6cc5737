"""The retained topics this unit announced when it last ran (Home Assistant discovery, its snapshot), kept in the data
directory so that the ones it no longer announces can be cleared.

A retained message outlives the config that made it: rename a zone, remove one, or switch discovery off, and the
broker goes on handing Home Assistant the old entity (and the last alarm picture of the victim's site) for ever. The
record is the unit's own file, but read as hostile like any other: bounded, parsed on one path, and a damaged one is
set aside with a warning (losing it costs only the clearing of stale entities, never the unit).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from agent.security_parse import Refused, load_json
from common.settings import describe_errors

log = logging.getLogger(__name__)

FILE = "retained_topics.json"
MAX_TOPICS = 256          # a unit announces ~10; the rest is room for the stale ones of a month of config changes
MAX_BYTES = 128 * 1024    # 256 topics of the longest allowed length, with room to spare

Topic = Annotated[str, StringConstraints(min_length=1, max_length=400, pattern=r"^[A-Za-z0-9_./-]+$")]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topics: list[Topic] = Field(max_length=MAX_TOPICS)


def load_topics(data_dir: Path) -> list[str]:
    """The topics recorded by the last run; [] when there is no record or it cannot be trusted (logged)."""
    path = Path(data_dir) / FILE
    try:
        with path.open("rb") as stream:
            payload = stream.read(MAX_BYTES + 1)   # one byte past the bound, so an oversized record is seen
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("retained-topic record %s cannot be read (%s): stale Home Assistant entities are not cleared",
                    path, exc.strerror or exc)
        return []
    try:
        data = load_json(payload, MAX_BYTES, "the file")
        return _Record.model_validate(data).topics
    except Refused as refusal:
        reason = str(refusal)
    except ValidationError as exc:
        reason = "; ".join(describe_errors(exc)[:3])
    log.warning("retained-topic record %s ignored (%s): stale Home Assistant entities are not cleared", path, reason)
    return []


def save_topics(data_dir: Path, topics: list[str]) -> None:
    """Replace the record (written whole, then renamed: a power cut leaves the old one or the new one)."""
    path = Path(data_dir) / FILE
    part = path.with_name(FILE + ".part")
    try:
        descriptor = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            json.dump({"topics": topics[:MAX_TOPICS]}, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(part, path)
    except OSError as exc:
        # the announcement itself went out; only the next run's clean-up of what this one announced is lost
        log.warning("retained-topic record %s cannot be written: %s", path, exc.strerror or exc)


def stale_topics(previous: list[str], current: list[str], node: str, own: set[str]) -> list[str]:
    """The recorded topics this run does not announce, of those that are this unit's own: a discovery topic whose
    node is `node` (`<prefix>/<component>/<node>/<object>/config`, whatever prefix it was announced under), or one
    of the `own` topics named exactly. Anything else in the record is left alone: the record might have been
    written by someone else, and clearing another unit's retained topics is not this unit's business."""
    announced = set(current)
    stale = []
    for topic in dict.fromkeys(previous):   # in order, once each
        if topic in announced:
            continue
        parts = topic.split("/")
        discovery = len(parts) == 5 and parts[2] == node and parts[4] == "config" and all(parts)
        if discovery or topic in own:
            stale.append(topic)
    return stale
