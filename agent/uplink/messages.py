"""The MQTT contract, typed: one pydantic model per payload, used by the unit to build and by station tools to parse.

MQTT, the outbox and `--events` JSONL all carry `model.wire()`, so what the unit sends and what a receiver checks
are the same schema. Extra keys are refused both ways: a payload that does not match is a bad message, not a guess.
`docs/mqtt.md` describes each payload with examples.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from common.clock import iso_utc


class Message(BaseModel):
    """Base of every payload: unknown keys refused, immutable once built."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def wire(self) -> dict:
        """The JSON-ready dict that goes into the outbox and onto the wire."""
        return self.model_dump(mode="json", by_alias=True)


class Identity(Message):
    device_id: str
    site_ref: str


class MediaRef(Message):
    """A finished file named in an alarm end: its size and SHA-256 as computed when it was written."""

    name: str
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ClipRef(MediaRef):
    """An alarm's clip. partial: the agent stopped abruptly while recording it, and the restart kept what was
    written up to the last whole fragment (file `clip.partial.mp4`); duration_s is the video it holds, read from
    the file (None when that cannot be told, as for a raw H.264 clip)."""

    partial: bool = False
    duration_s: float | None = Field(None, ge=0)


# --- events (`<root>/event`): one envelope, a body per kind --------------------------------------------------

class Event(Identity):
    event_id: str
    seq: int = Field(ge=0)
    ts: str
    frame: int | None
    out_of_term: bool | None = None  # true on every event after the loan ended (loan.at_end = "keep")
    key: str | None = None  # the unit key's id and its Ed25519 signature (base64) over the canonical JSON of the
    sig: str | None = None  # payload without `sig`: added by the publisher, checked by the station

    #: fields left out of the wire payload while None (optional facts, not nulls to be read)
    OPTIONAL: ClassVar[tuple[str, ...]] = ("out_of_term", "key", "sig")

    def wire(self) -> dict:
        absent = {name for name in self.OPTIONAL if getattr(self, name) is None}
        return self.model_dump(mode="json", by_alias=True, exclude=absent)


class AlarmStart(Event):
    kind: Literal["intrusion"] = "intrusion"
    phase: Literal["start"] = "start"
    score: float
    boxes: list[list[int]]
    image_size: list[int]
    zone: str | None
    confirmed_by: list[str]
    object_class: Literal["person", "vehicle", "unknown"] = Field("unknown", alias="class")  # of the largest object
    bearings_deg: list[float] | None = None  # 360° units only
    sectors: list[str] | None = None

    walk_test: bool | None = None  # raised during the installer's walk test: not sent to the ARC
    # the snapshot, written and queued before this start was published; None: there is none (it could not be
    # written), the storage fault that follows says why
    snapshot: MediaRef | None = None

    # a unit without a panorama sends no bearing keys at all, rather than nulls
    OPTIONAL: ClassVar[tuple[str, ...]] = (*Event.OPTIONAL, "bearings_deg", "sectors", "walk_test")


class AlarmUpdate(Event):
    """Where a running alarm's objects are now: at most once a second between its start and end. Its own event_id;
    alarm_event_id is the start's and end's."""

    kind: Literal["intrusion"] = "intrusion"
    phase: Literal["update"] = "update"
    alarm_event_id: str
    score: float
    boxes: list[list[int]]
    labels: list[str]  # one per box: 'person' | 'vehicle' | 'animal' | 'unknown'
    image_size: list[int]
    zone: str | None
    bearings_deg: list[float] | None = None  # 360° units only
    sectors: list[str] | None = None

    OPTIONAL: ClassVar[tuple[str, ...]] = ("key", "sig", "bearings_deg", "sectors")  # out_of_term: sent as null


class AlarmEnd(Event):
    kind: Literal["intrusion"] = "intrusion"
    phase: Literal["end"] = "end"
    started_frame: int | None
    score: float
    boxes: list[list[int]] = []
    reason: str
    duration_s: float | None  # None when the agent stopped abruptly and the alarm's length is unknown
    clip: ClipRef | None
    #: frames left out of the software clip because its encoder could not keep up (detection saw them all);
    #: absent without a clip or when the camera's own encoder wrote it
    clip_frames_dropped: int | None = Field(None, ge=0)
    snapshot: MediaRef | None
    confirmed_by: list[str]
    incomplete: bool = False
    walk_test: bool | None = None  # the alarm was raised during the installer's walk test

    OPTIONAL: ClassVar[tuple[str, ...]] = (*Event.OPTIONAL, "walk_test", "clip_frames_dropped")


class VideoTamper(Event):
    kind: Literal["tamper"] = "tamper"
    source: Literal["video"] = "video"
    reason: str


class Restore(Event):
    """A video tamper, camera fault or storage fault cleared."""

    kind: Literal["restore"] = "restore"
    source: Literal["video", "camera", "storage"]
    reason: str
    down_s: float


class CameraFault(Event):
    kind: Literal["fault"] = "fault"
    source: Literal["camera"] = "camera"
    reason: str
    message: str


class StorageFault(Event):
    """Storage in trouble: one alarm's media could not be written (write_failed, alarm_event_id set), the disk is
    full (disk_full) or the outbox is at its bound and evicting (outbox_full). The last two are states: they end
    with a `restore` from source "storage"."""

    kind: Literal["fault"] = "fault"
    source: Literal["storage"] = "storage"
    message: str
    alarm_event_id: str | None
    reason: Literal["write_failed", "disk_full", "outbox_full"] = "write_failed"
    used_bytes: int | None = None   # what the outbox occupies on disk (database, WAL, media, reserve)
    max_bytes: int | None = None    # its bound (outbox.max_bytes)
    free_bytes: int | None = None   # what the filesystem still has

    OPTIONAL: ClassVar[tuple[str, ...]] = (*Event.OPTIONAL, "used_bytes", "max_bytes", "free_bytes")


class EvictedItem(Message):
    """One media file or message the unit dropped before it was delivered: a station stops waiting for it."""

    what: Literal["media", "event", "result"]
    name: str                      # media file name, or the message's topic
    event_id: str | None           # the event the media belongs to, or the dropped event's own id
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # of the media file, or of the message's payload
    reason: Literal["outbox_full", "disk_full", "unreadable", "damaged", "retention"]


class Evicted(Event):
    """What the outbox dropped, and why; kept like an alarm (never evicted before alarms)."""

    kind: Literal["evicted"] = "evicted"
    items: list[EvictedItem]


class ArcFault(Event):
    """The alarm receiving centre's path failed, or the receiver could not process a signal (DUH)."""

    kind: Literal["fault"] = "fault"
    source: Literal["arc"] = "arc"
    reason: str
    path: str | None = None      # "primary" | "backup"
    signal: str | None = None    # the refused signal's name and code (DUH)
    code: str | None = None
    alarm_event_id: str | None = None


class ArcRestore(Event):
    kind: Literal["restore"] = "restore"
    source: Literal["arc"] = "arc"
    path: str


class SceneChange(Event):
    kind: Literal["scene_change"] = "scene_change"
    source: Literal["video"] = "video"


class AnimalSighting(Event):
    """Objects classed as animals (detection.animals = "report"); never an intrusion alarm."""

    kind: Literal["animal"] = "animal"
    source: Literal["video"] = "video"
    boxes: list[list[int]]
    zone: str | None


class LoanChange(Event):
    """The loan started, was extended, is about to end (warning) or ended; ends is its end as it now stands."""

    kind: Literal["loan"] = "loan"
    state: Literal["started", "warning", "extended", "ended"]
    ends: str
    days_remaining: float
    at_end: Literal["keep", "stop"]
    reference: str | None = None


class PathChange(Event):
    """A reporting path was lost or came back (dual-path supervision: MQTT loss goes to the ARC over DC-09)."""

    kind: Literal["path"] = "path"
    path: Literal["mqtt"]
    ok: bool
    down_s: float


class ClockStep(Event):
    """The unit's wall clock was stepped by stepped_s (NTP after boot, a manual set); ts is on the new clock."""

    kind: Literal["clock_step"] = "clock_step"
    stepped_s: float


class DetectorChange(Event):
    """A PIR or an external trigger asserted or released (each input on its own)."""

    kind: Literal["pir", "trigger"]
    input: str
    zone: str
    active: bool


class EnclosureTamper(Event):
    kind: Literal["tamper"] = "tamper"
    input: str
    zone: str
    open: bool


class PowerChange(Event):
    kind: Literal["power"] = "power"
    input: str
    mains_ok: bool


class DetectorFault(Event):
    kind: Literal["detector_fault"] = "detector_fault"
    detector: str
    zone: str
    reason: str
    active: bool
    evidence_count: int
    evidence_s: float


class ArmedChange(Event):
    kind: Literal["armed"] = "armed"
    armed: bool
    source: Literal["command", "schedule", "loan"]


class SelfTestCheck(Message):
    name: str
    ok: bool | None  # None: could not tell (e.g. the siren, not sounded unless asked); not a failure
    detail: str


class SelfTestResult(Event):
    """`pid-agent selftest` on the unit (the installer's check on the ladder): the verdict and every check."""

    kind: Literal["selftest"] = "selftest"
    passed: bool
    failed: list[str]  # names of the failed checks, in table order
    checks: list[SelfTestCheck]


AnyEvent = Union[AlarmStart, AlarmUpdate, AlarmEnd, VideoTamper, EnclosureTamper, Restore, CameraFault, StorageFault,
                 Evicted,
                 ArcFault, ArcRestore, SceneChange, AnimalSighting, ClockStep, LoanChange, PathChange, DetectorChange,
                 PowerChange, DetectorFault, ArmedChange, SelfTestResult]
EVENT = TypeAdapter(AnyEvent)  # extra="forbid" on each member makes the match exact


# --- heartbeat, command results, status, media manifests -----------------------------------------------------

class CameraHealth(Message):
    state: Literal["ok", "stalled", "error"]
    fps: float
    frames: int
    faults: int
    last_error: str | None
    last_frame_age_s: float | None


class InputStates(Message):
    pir_active: list[str]
    triggers_active: list[str]
    tamper_open: list[str]
    mains_ok: bool | None  # None: no mains-fail input is wired


class SignallingState(Message):
    mode: Literal["overt", "covert"]
    active: bool


class Heartbeat(Identity):
    kind: Literal["heartbeat"] = "heartbeat"
    ts: str
    uptime_s: float
    frames: int
    fps: float
    armed: bool
    outbox_depth: int
    outbox_bytes: int
    disk_free_bytes: int | None
    cpu_temp_c: float | None
    version: str
    last_event_id: str | None
    camera: CameraHealth
    tamper: str | None
    inputs: InputStates
    signalling: SignallingState
    detector_faults: list[str]
    loan_ends: str | None = None            # None until the loan has started (first arming on site)
    loan_days_remaining: float | None = None
    loan_hours_remaining: float | None = None
    audit_entries: int | None = None   # the signed audit log's length and head hash: history rewritten shows
    audit_head: str | None = None
    key: str | None = None             # the unit key's id and signature, as on events (left out unsigned)
    sig: str | None = None

    def wire(self) -> dict:
        absent = {name for name in ("key", "sig") if getattr(self, name) is None}
        return self.model_dump(mode="json", by_alias=True, exclude=absent)


class CommandResult(Identity):
    ts: str
    id: str
    ok: bool
    cmd: str | None = None
    detail: str | None = None    # what was done (ok)
    reason: str | None = None    # why it was refused (not ok)
    key: str | None = None       # the unit key's id and signature, as on events
    sig: str | None = None

    OPTIONAL: ClassVar[tuple[str, ...]] = ("cmd", "detail", "reason", "key", "sig")

    def wire(self) -> dict:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Status(Message):
    state: Literal["online", "offline", "stopped"]
    device_id: str
    ts: str
    version: str
    key: str | None = None   # the unit key's id and signature, as on events (the Last Will is signed when set)
    sig: str | None = None

    def wire(self) -> dict:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class MediaManifest(Message):
    event_id: str
    name: str
    content_type: str
    total_bytes: int = Field(ge=0)
    chunk_bytes: int = Field(gt=0)
    chunks: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


# --- builders shared by the unit's reactions -----------------------------------------------------------------

def envelope(identity: Identity, seq: int, event_id: str, wall_ts: float, frame: int | None,
             out_of_term: bool = False) -> dict:
    """The fields every event carries, as keyword arguments for an Event model."""
    return {**identity.model_dump(), "event_id": event_id, "seq": seq, "ts": iso_utc(wall_ts), "frame": frame,
            "out_of_term": True if out_of_term else None}


def alarm_end(identity: Identity, seq: int, event_id: str, wall_ts: float, *, frame: int | None,
              started_frame: int | None, score: float, reason: str, duration_s: float | None,
              clip: ClipRef | None, snapshot: MediaRef | None, confirmed_by: list[str],
              incomplete: bool = False, walk_test: bool = False, out_of_term: bool = False,
              clip_frames_dropped: int | None = None) -> AlarmEnd:
    """The one builder of an alarm's end: a normal end, and the honest end of an alarm that was open when the
    agent stopped abruptly (incomplete=True: no frame, no duration, the clip only if it had been finished)."""
    return AlarmEnd(**envelope(identity, seq, event_id, wall_ts, frame, out_of_term), started_frame=started_frame,
                    score=round(float(score), 5), reason=reason,
                    duration_s=None if duration_s is None else round(duration_s, 3), clip=clip,
                    clip_frames_dropped=clip_frames_dropped if clip is not None else None,
                    snapshot=snapshot, confirmed_by=confirmed_by, incomplete=incomplete,
                    walk_test=True if walk_test else None)


def incomplete_end(identity: Identity, seq: int, start: AlarmStart, wall_ts: float,
                   clip: ClipRef | None) -> AlarmEnd:
    """The end of an alarm left open by an abrupt stop: its snapshot is the one its start named."""
    if clip is None:
        reason = "agent stopped abruptly; no clip was kept (not one whole fragment written, or it could not be stored)"
    elif clip.partial:
        reason = f"agent stopped abruptly; the clip is partial ({clip.duration_s} s, up to its last whole fragment)"
    else:
        reason = "agent stopped abruptly; the clip was finished and is sent"
    return alarm_end(identity, seq, start.event_id, wall_ts, frame=None, started_frame=start.frame,
                     score=start.score, reason=reason, duration_s=None, clip=clip, snapshot=start.snapshot,
                     confirmed_by=start.confirmed_by, incomplete=True, walk_test=bool(start.walk_test))
