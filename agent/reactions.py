"""Reactions to what the analyzer and the hardware report: alarms → recorder, publisher and signalling; everything
else the unit notices (tamper, scene change, inputs, camera and storage faults) → a typed event upstream."""

from __future__ import annotations

import errno
import logging
import os
from typing import Callable

from agent.analyzer import Analysis
from agent.arc.reports import ArcReport, PathFailed, PathRestored
from agent.events import (
    AlarmEnded,
    AlarmStarted,
    AnimalSeen,
    EngineEvent,
    SceneChanged,
    TamperCleared,
    TamperRaised,
    new_event_id,
)
from agent.evidence.notary import Notary
from agent.loan import LoanNotice
from agent.moment import Moment
from agent.sensors import FrameInputs, PirEvent, PowerEvent, SensorEvent, TamperEvent, TriggerEvent
from agent.signalling import Signaller
from agent.storage.fragments import clip_duration
from agent.storage.media import MediaFile
from agent.storage.outbox import Outbox
from agent.storage.recorder import Recorder
from agent.uplink import messages
from agent.uplink.messages import ClipRef, Identity, MediaRef
from agent.uplink.publisher import Publisher
from common.clock import iso_utc
from common.errors import StorageError
from drivers.camera.base import Frame
from drivers.camera.watchdog import CameraFault, CameraRestored
from models.fusion import FaultReport
from models.panorama import alarm_fields

log = logging.getLogger(__name__)


def media_ref(media: MediaFile | None) -> MediaRef | None:
    return MediaRef(**media.describe()) if media is not None else None


def clip_ref(media: MediaFile | None, partial: bool = False, duration_s: float | None = None) -> ClipRef | None:
    """A clip named in an alarm end, with the seconds of video it holds (read from the file when not given)."""
    if media is None:
        return None
    return ClipRef(**media.describe(), partial=partial,
                   duration_s=duration_s if duration_s is not None else clip_duration(media.path))


def sensor_message(event: SensorEvent, envelope: dict) -> messages.Event:
    """The event message for one debounced input change (each input on its own, never grouped)."""
    if isinstance(event, (PirEvent, TriggerEvent)):
        return messages.DetectorChange(**envelope, kind=event.kind, input=event.input_id, zone=event.zone,
                                       active=event.active)
    if isinstance(event, TamperEvent):
        return messages.EnclosureTamper(**envelope, input=event.input_id, zone=event.zone, open=event.open)
    assert isinstance(event, PowerEvent)
    return messages.PowerChange(**envelope, input=event.input_id, mains_ok=event.mains_ok)


def fault_message(report: FaultReport, envelope: dict) -> messages.DetectorFault:
    return messages.DetectorFault(**envelope, detector=report.detector, zone=report.zone, reason=report.reason,
                                  active=report.active, evidence_count=report.count,
                                  evidence_s=round(report.ts - report.since, 1))


def _object_class(boxes) -> str:
    """The alarm's class: that of its largest object (boxes come largest first); animals never raise alarms."""
    label = boxes[0].label if boxes else "unknown"
    return label if label in ("person", "vehicle") else "unknown"


class Reactions:
    """Acts on engine events and reports the unit's own conditions; the one place alarms turn into media."""

    def __init__(self, identity: Identity, publisher: Publisher, outbox: Outbox, recorder: Recorder,
                 signaller: Signaller, on_alarm: Callable[[str], None], notary: Notary,
                 update_interval_s: float = 0.0) -> None:
        self.identity = identity
        self.notary = notary
        self.in_term: Callable[[float], bool] = lambda wall: True  # the loan's, once the agent has one
        self.walk_test: Callable[[], bool] = lambda: False  # True while the installer walks the site
        self.publisher = publisher
        self.outbox = outbox
        self.recorder = recorder
        self.signaller = signaller
        self.on_alarm = on_alarm  # told each new alarm's event id (health, run summary)
        self._snapshots: dict[str, MediaFile] = {}
        # an alarm's start on the frame timeline: its length must not take in a wall-clock step made meanwhile
        self._started_ts: dict[str, float] = {}
        self._recording: str | None = None  # event id of the clip being recorded
        self._walk_alarms: set[str] = set()  # alarms raised during a walk test: their end says so too
        self._active: str | None = None  # event id of the running alarm, and when its last start/update went out
        self._last_update_ts = 0.0  # frame timeline: a wall-clock step back must not hold updates for an hour
        self.update_interval_s = update_interval_s  # 0: no updates; measured on the frame timeline's wall time

    # --- events of the unit ------------------------------------------------------------------------------------
    def publish(self, build: Callable[[dict], messages.Event], wall: float, frame: int | None) -> dict:
        """Publish one event; build gets the envelope (identity, event id, seq, ts, frame)."""
        event_id = new_event_id()
        out_of_term = not self.in_term(wall)
        return self.publisher.event(
            lambda seq: build(messages.envelope(self.identity, seq, event_id, wall, frame, out_of_term)))

    def publish_strict(self, build: Callable[[dict], messages.Event], wall: float) -> dict:
        """publish(), raising StorageError when the outbox cannot store the event (the caller retries)."""
        event_id = new_event_id()
        return self.publisher.event(
            lambda seq: build(messages.envelope(self.identity, seq, event_id, wall, None, not self.in_term(wall))),
            strict=True)

    def camera_events(self, events: list[CameraFault | CameraRestored]) -> None:
        for event in events:
            if isinstance(event, CameraFault):
                self.publish(lambda env, e=event: messages.CameraFault(**env, reason=e.reason, message=e.message),
                             event.wall, None)
            else:
                self.publish(lambda env, e=event: messages.Restore(**env, source="camera", reason=e.reason,
                                                                   down_s=round(e.down_s, 1)), event.wall, None)

    def inputs(self, inputs: FrameInputs, moment: Moment) -> None:
        for sensor_event in inputs.events:
            self.publish(lambda env, e=sensor_event: sensor_message(e, env), moment.wall, moment.frame)
        for fault in inputs.faults:
            self.publish(lambda env, f=fault: fault_message(f, env), moment.wall, moment.frame)

    def armed(self, armed: bool, source: str, moment: Moment) -> None:
        self.publish(lambda env: messages.ArmedChange(**env, armed=armed, source=source), moment.wall, moment.frame)

    def loan(self, notice: LoanNotice, at_end: str, moment: Moment) -> None:
        self.publish(lambda env: messages.LoanChange(
            **env, state=notice.state, ends=iso_utc(notice.end_wall), days_remaining=notice.days_remaining,
            at_end=at_end, reference=notice.reference), moment.wall, moment.frame)

    def clock_stepped(self, stepped_s: float, moment: Moment) -> None:
        """The wall clock jumped (NTP's first sync, a manual set): timestamps before and after differ by this."""
        log.warning("wall clock stepped by %+.1f s", stepped_s)
        self.publish(lambda env: messages.ClockStep(**env, stepped_s=round(stepped_s, 3)), moment.wall, moment.frame)

    def arc_path(self, report: ArcReport) -> None:
        """A report of the ARC link's thread (agent/arc): its path failed or came back, or a signal was refused."""
        self.publish(lambda env: arc_message(report, env), self._now(), None)

    def _now(self) -> float:
        return self.notary.clock.wall()

    def storage_failed(self, event_id: str | None, error: StorageError, moment: Moment) -> None:
        """A clip or snapshot could not be written or queued: say so upstream and keep guarding the site."""
        log.error("storage: %s", error)
        if os.strerror(errno.ENOSPC) in str(error):
            self.outbox.note_full(error)  # the media writers report ENOSPC by its text: the storage check sees it
        self.publish(lambda env: messages.StorageFault(**env, message=str(error), alarm_event_id=event_id),
                     moment.wall, moment.frame)

    # --- engine events ----------------------------------------------------------------------------------------
    def handle(self, event: EngineEvent, moment: Moment, frame: Frame | None = None,
               analysis: Analysis | None = None) -> None:
        """frame: the frame the event happened on (needed for an alarm's start: its snapshot and pre-roll)."""
        if isinstance(event, AlarmStarted):
            assert frame is not None, "an alarm starts on a frame"
            self._alarm_started(event, moment, frame, analysis)
        elif isinstance(event, AlarmEnded):
            self._alarm_ended(event, moment)
        elif isinstance(event, TamperRaised):
            self.publish(lambda env: messages.VideoTamper(**env, reason=event.reason), moment.wall, moment.frame)
        elif isinstance(event, TamperCleared):
            self.publish(lambda env: messages.Restore(**env, source="video", reason=event.reason,
                                                      down_s=round(event.duration_s, 1)), moment.wall, moment.frame)
        elif isinstance(event, SceneChanged):
            self.publish(lambda env: messages.SceneChange(**env), moment.wall, moment.frame)
        elif isinstance(event, AnimalSeen):
            scale = frame.image.shape[1] / frame.luma.shape[1] if frame is not None else 1.0
            zone = next((box.zone for box in event.boxes if box.zone), None)
            self.publish(lambda env: messages.AnimalSighting(**env, boxes=[b.scaled(scale) for b in event.boxes],
                                                             zone=zone), moment.wall, moment.frame)

    def record(self, frame: Frame, moment: Moment) -> None:
        """Feed a frame to the recorder (pre-roll, or the clip of the running alarm)."""
        try:
            if self.recorder.recording:
                self.outbox.keep_headroom()  # the clip grows each frame: older media make room before it fails
            self.recorder.push(frame)
        except StorageError as exc:
            recording = self._recording if self.recorder.recording else None
            self.recorder.abandon()
            self.storage_failed(recording, exc, moment)

    def _alarm_started(self, event: AlarmStarted, moment: Moment, frame: Frame, analysis: Analysis | None) -> None:
        scale = frame.image.shape[1] / frame.luma.shape[1]
        where = alarm_fields(analysis.locations) if analysis is not None and analysis.locations else {}
        zone = next((box.zone for box in event.boxes if box.zone), None)

        def build(seq: int) -> messages.AlarmStart:
            snapshot = self._snapshots.get(event.event_id)
            return messages.AlarmStart(
                **messages.envelope(self.identity, seq, event.event_id, moment.wall, event.frame,
                                    not self.in_term(moment.wall)),
                score=round(float(event.score), 5), boxes=[box.scaled(scale) for box in event.boxes],
                image_size=[frame.image.shape[1], frame.image.shape[0]], zone=zone,
                confirmed_by=list(event.confirmed_by), object_class=_object_class(event.boxes),
                walk_test=True if self.walk_test() else None, snapshot=media_ref(snapshot), **where)

        self.outbox.protected = event.event_id  # the bound evicts older media, never this alarm's own
        failure = self._take_snapshot(event, frame)  # the snapshot is written and queued before the start goes out
        payload = self.publisher.event(build)
        self._journal(self.outbox.open_alarm, event.event_id, payload)
        self._started_ts[event.event_id] = moment.ts
        if payload.get("walk_test"):
            # the installer's own alarm: no strobe pattern and never the siren; the page blinks the strobe once
            # per detection instead (web/live.py), so a walk is seen on the unit without waking the street
            self._walk_alarms.add(event.event_id)
        else:
            self.signaller.alarm_started(moment.ts)
        self._active, self._last_update_ts = event.event_id, moment.ts
        self.on_alarm(event.event_id)
        if failure is not None:
            self.storage_failed(event.event_id, failure, moment)
        try:
            self.recorder.start(event.event_id, frame)
            self._recording = event.event_id
        except StorageError as exc:
            self.recorder.abandon()
            self.storage_failed(event.event_id, exc, moment)

    def _take_snapshot(self, event: AlarmStarted, frame: Frame) -> StorageError | None:
        """Write the alarm's snapshot and its manifest (fsynced, renamed) and queue them, so a kill after the start
        was published cannot leave an alarm without its image; the error, reported after the start (which then
        says there is no snapshot), when it could not be kept."""
        try:
            self.outbox.make_headroom()  # room for this alarm's snapshot and clip: older media go first
            snapshot = self.recorder.snapshot(event.event_id, frame, event.boxes)
            self._queue_media(event.event_id, snapshot)
        except StorageError as exc:
            return exc
        self._snapshots[event.event_id] = snapshot
        return None

    def update(self, moment: Moment, frame: Frame, analysis: Analysis) -> None:
        """While an alarm runs: where its objects are now, at most once per update_interval_s, on frames with boxes."""
        boxes = analysis.result.boxes
        if not self.update_interval_s or self._active is None or not boxes:
            return
        if moment.ts - self._last_update_ts < self.update_interval_s:
            return
        self._last_update_ts = moment.ts
        scale = frame.image.shape[1] / frame.luma.shape[1]
        where = alarm_fields(analysis.locations) if analysis.locations else {}
        alarm_id = self._active
        self.publish(lambda env: messages.AlarmUpdate(
            **env, alarm_event_id=alarm_id, score=round(float(analysis.result.score), 5),
            boxes=[box.scaled(scale) for box in boxes], labels=[box.label for box in boxes],
            image_size=[frame.image.shape[1], frame.image.shape[0]], zone=next((b.zone for b in boxes if b.zone), None),
            **where), moment.wall, moment.frame)

    def _alarm_ended(self, event: AlarmEnded, moment: Moment) -> None:
        if self._active == event.event_id:
            self._active = None
        try:
            clip = self._finish_clip(event.event_id, moment)
            snapshot = self._snapshots.pop(event.event_id, None)
            duration = moment.ts - self._started_ts.pop(event.event_id, moment.ts)
            self.publisher.event(lambda seq: messages.alarm_end(
                self.identity, seq, event.event_id, moment.wall, frame=event.frame,
                started_frame=event.started_frame, score=event.peak_score, reason=event.reason, duration_s=duration,
                clip=clip, snapshot=media_ref(snapshot), confirmed_by=list(event.confirmed_by),
                walk_test=event.event_id in self._walk_alarms, out_of_term=not self.in_term(moment.wall),
                clip_frames_dropped=self.recorder.dropped_frames))
            self._walk_alarms.discard(event.event_id)
            self._journal(self.outbox.close_alarm, event.event_id)
            if self.outbox.protected == event.event_id:
                self.outbox.protected = None
        finally:
            self.signaller.alarm_ended(moment.ts)

    @staticmethod
    def _journal(write: Callable[..., None], *args) -> None:
        """The journal of open alarms on a full disk: the alarm goes on (outputs, events); recovery at the next
        start may then miss or repeat an honest end, which is what the storage fault already says."""
        try:
            write(*args)
        except StorageError as exc:
            log.error("alarm journal not updated: %s", exc)

    def _finish_clip(self, event_id: str, moment: Moment) -> ClipRef | None:
        """Close and queue the alarm's clip; None (and a storage fault) when it could not be kept. Its duration is
        read before it is queued: once queued, the uplink may send and delete it at any moment."""
        self._recording = None
        if not self.recorder.recording:
            return None
        try:
            clip = self.recorder.finish()
            ref = clip_ref(clip)
            self._queue_media(event_id, clip)
            return ref
        except StorageError as exc:
            self.storage_failed(event_id, exc, moment)
            return None

    def _queue_media(self, event_id: str, media: MediaFile) -> None:
        """Queue a finished file and its signed manifest; one the outbox cannot take is deleted, never left on disk
        unaccounted for."""
        # the manifest is written (it reads the file) before the file is queued: once queued, the uplink may send
        # it and the outbox delete it at once (a one-chunk snapshot on a fast link is acknowledged in a millisecond)
        try:
            manifest, unsigned = self.notary.manifest(event_id, media), None
        except StorageError as exc:
            manifest, unsigned = None, exc  # the evidence itself still goes out; the failure is reported
        try:
            self.publisher.media(event_id, media)
        except StorageError:
            media.path.unlink(missing_ok=True)
            if manifest is not None:
                manifest.path.unlink(missing_ok=True)
            raise
        if unsigned is not None:
            raise unsigned
        try:
            self.publisher.media(event_id, manifest)
        except StorageError:
            manifest.path.unlink(missing_ok=True)
            raise


def arc_message(report: ArcReport, env: dict) -> messages.Event:
    if isinstance(report, PathRestored):
        return messages.ArcRestore(**env, path=report.path)
    if isinstance(report, PathFailed):
        return messages.ArcFault(**env, reason=report.reason, path=report.path)
    return messages.ArcFault(**env, reason="receiver_duh", signal=report.signal, code=report.code,
                             alarm_event_id=report.event_id)
