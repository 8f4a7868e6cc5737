"""The DC-09 link: sends the outbox's alarm-relevant events to the ARC receiver, one at a time, in order.

A row leaves this link's queue only on the receiver's ACK (or a DUH: the receiver cannot process it, so resending
cannot help; that is reported as a fault). NAK with the receiver's time corrects the clock offset and resends
once at once; no valid answer retries on the same path with doubling backoff, then moves to the other path.
NULL link tests go out when the path has been quiet for supervision_s; while on the backup, the primary is
probed at the same interval and taken back once it answers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from agent.arc import codes, dc09
from agent.arc.polling import PollingLink
from agent.arc.reports import ArcReport, PathFailed, PathRestored, SignalRefused
from agent.arc.settings import ArcSettings
from agent.storage.outbox import LinkMessage, Outbox
from common.backoff import Backoff
from common.clock import Clock

log = logging.getLogger(__name__)

LINK_NAME = "dc09"
MAX_OFFSET_S = 86_400.0  # a receiver time more than a day from ours is a broken receiver clock: not learnt


@dataclass
class PathState:
    host: str
    port: int
    backoff: Backoff = field(repr=False)  # retry delays on this path; reset by an answer or a switch
    up: bool | None = None     # None until the first exchange
    failures: int = 0

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


class Dc09Link(PollingLink):
    thread_name = "arc-dc09"

    def __init__(self, settings: ArcSettings, outbox: Outbox, clock: Clock, identity: dict,
                 on_fault: Callable[[ArcReport], None] | None = None) -> None:
        super().__init__()
        self._disarmed = False  # from the armed events this link has passed on, in order
        self.settings = settings.dc09
        self._outbox = outbox
        self._clock = clock
        self._identity = identity
        self._on_fault = on_fault or (lambda report: None)
        self._who = dc09.Account(self.settings.receiver, self.settings.line, self.settings.account,
                                 self.settings.key)
        self.paths = [PathState(host, port, Backoff(self.settings.backoff_min_s, self.settings.backoff_max_s))
                      for host, port in self.settings.paths()]
        self.active = 0                      # index into paths of the path in use
        self.offset_s = 0.0                  # receiver time minus our wall clock, learnt from NAKs
        self._next_attempt = clock.monotonic()
        self._next_supervision = clock.monotonic() + self.settings.supervision_s
        self._next_primary_probe = 0.0
        self._seq: tuple[int, int] | None = None   # (outbox row id, its DC-09 sequence), kept across retries
        self.delivered = 0
        self.last_answer: dc09.Answer | None = None
        self.last_reason = ""                # why the last exchange had no usable answer ("" when it had)
        outbox.register_link(LINK_NAME, codes.EVENT_KINDS)

    # ---- one step --------------------------------------------------------------------------------------------

    def poll(self) -> bool:
        """Do what is due now: send the oldest queued row, or a NULL test, or probe the primary. Returns True
        when it did an exchange (call again at once), False when there is nothing due."""
        now = self._clock.monotonic()
        if now < self._next_attempt:
            return False
        rows = self._outbox.link_pending(LINK_NAME, 1)
        if rows:
            self._deliver(rows[0])
            return True
        if self.active != 0 and self.settings.supervision_s and now >= self._next_primary_probe:
            self._next_primary_probe = now + self.settings.supervision_s
            if self._null(0):
                log.info("DC-09: primary %s answers again; back on it", self.paths[0].label)
                self.active = 0
            return True
        if self.settings.supervision_s and now >= self._next_supervision:
            self._null(self.active)
            return True
        return False

    def _deliver(self, row: LinkMessage) -> None:
        signal = codes.signal_for(row.payload, self.settings)
        if row.payload.get("kind") == "armed":
            self._disarmed = not row.payload.get("armed")
        elif self._disarmed:
            signal = None  # a disarmed unit tells the ARC nothing but its arming (its people are on site)
        if signal is None:
            self._outbox.link_ack(LINK_NAME, row.id)  # not an ARC matter (e.g. a walk test)
            return
        if self._seq is None or self._seq[0] != row.id:
            self._seq = (row.id, dc09.next_sequence(self._outbox.next_counter("dc09_seq")))
        kind = self.settings.protocol
        data = signal.data(kind, self.settings.area)
        answer = self._send(self.active, kind, self._seq[1], data, signal.extended)
        if answer is not None and answer.kind == "DUH":
            log.error("DC-09: receiver %s cannot process %s (%s) of row %d: DUH; dropped from the ARC queue",
                      self.paths[self.active].label, signal.name, signal.code, row.id)
            self._on_fault(SignalRefused(signal.name, signal.code, row.payload.get("event_id")))
        if answer is not None and answer.kind in ("ACK", "DUH"):
            self._outbox.link_ack(LINK_NAME, row.id)
            self._seq = None
            self.delivered += answer.kind == "ACK"

    def _null(self, index: int) -> bool:
        seq = dc09.next_sequence(self._outbox.next_counter("dc09_seq"))
        answer = self._send(index, "NULL", seq, "", ())
        return answer is not None and answer.kind == "ACK"

    def _send(self, index: int, kind: str, seq: int, data: str, extended: tuple[str, ...]) -> dc09.Answer | None:
        """One frame to one path, resent once with the receiver's time after a timed NAK; updates path state."""
        path = self.paths[index]
        answer, why = self._exchange(path, kind, seq, data, extended)
        if answer is not None and answer.kind == "NAK" and answer.receiver_time is not None:
            why = self._learn_offset(path, seq, answer.receiver_time)
            if not why:
                answer, why = self._exchange(path, kind, seq, data, extended)
        self.last_answer, self.last_reason = answer, why
        if answer is not None and answer.kind in ("ACK", "DUH"):
            self._path_ok(index)
        else:
            self._path_failed(index, answer, why)
        return answer

    def _learn_offset(self, path: PathState, seq: int, receiver_time: float) -> str:
        """Take the receiver's time from its NAK as our offset; returns why not ("" when learnt)."""
        offset = receiver_time - self._clock.wall()
        if abs(offset) > MAX_OFFSET_S:
            log.warning("DC-09: %s NAKed seq %04d with a time %+.0f s from ours; refused (beyond %.0f s), "
                        "clock offset stays %+.1f s", path.label, seq, offset, MAX_OFFSET_S, self.offset_s)
            return f"receiver time {offset:+.0f} s off, refused"
        self.offset_s = offset
        log.warning("DC-09: %s NAKed seq %04d with its time; clock offset now %+.1f s, resending",
                    path.label, seq, self.offset_s)
        return ""

    def _exchange(self, path: PathState, kind: str, seq: int, data: str,
                  extended: tuple[str, ...]) -> tuple[dc09.Answer | None, str]:
        """One frame, one answer; (None, why) when there is no valid one."""
        frame = dc09.message(self._who, seq, kind, data, extended, self._clock.wall() + self.offset_s)
        try:
            answer = dc09.exchange(path.host, path.port, frame, self.settings.timeout_s, self._who.key)
        except dc09.NoAnswer as exc:
            return None, str(exc)
        if answer.seq is not None and answer.kind != "NAK" and answer.seq != seq:
            return None, f"answered seq {answer.seq:04d} to seq {seq:04d}"
        return answer, ""

    # ---- path state ------------------------------------------------------------------------------------------

    def _path_ok(self, index: int) -> None:
        path = self.paths[index]
        if path.up is False:
            log.info("DC-09: path %s restored", path.label)
            self._on_fault(PathRestored(path.label))
        path.up, path.failures = True, 0
        path.backoff.reset()
        now = self._clock.monotonic()
        self._next_attempt = now
        if index == self.active:
            self._next_supervision = now + self.settings.supervision_s

    def _path_failed(self, index: int, answer: dc09.Answer | None, detail: str) -> None:
        path = self.paths[index]
        path.failures += 1
        what = "no valid answer" if answer is None else f"answer {answer.kind}"
        log.warning("DC-09: %s: %s%s (failure %d)", path.label, what, f" ({detail})" if detail else "",
                    path.failures)
        if path.up is not False and path.failures >= self.settings.retries_per_path:
            path.up = False
            self._on_fault(PathFailed(path.label, what))
        now = self._clock.monotonic()
        if index != self.active:
            return  # a failed probe of the primary does not delay the queue on the backup
        if path.failures >= self.settings.retries_per_path and len(self.paths) > 1:
            self.active = 1 - index
            path.failures = 0
            path.backoff.reset()
            self._next_primary_probe = now + self.settings.supervision_s
            log.warning("DC-09: switching to %s", self.paths[self.active].label)
            self._next_attempt = now
            return
        self._next_attempt = now + path.backoff.next()

    # ---- bench -----------------------------------------------------------------------------------------------

    def manual_test(self) -> dc09.Answer | None:
        """One RX manual test report straight to the active path (arc-test on the bench; not queued)."""
        code, qualifier, cid_event = codes.SIGNALS["manual_test"]
        signal = codes.Signal("manual_test", self.settings.codes.get("manual_test", code), qualifier, cid_event,
                              self.settings.unit_zone)
        seq = dc09.next_sequence(self._outbox.next_counter("dc09_seq"))
        return self._send(self.active, self.settings.protocol, seq, signal.data(self.settings.protocol,
                                                                                self.settings.area), ())

    def status(self) -> dict:
        return {"active": self.paths[self.active].label if self.paths else None,
                "paths": {p.label: p.up for p in self.paths}, "queued": self._outbox.link_depth(LINK_NAME),
                "delivered": self.delivered, "offset_s": round(self.offset_s, 1)}
