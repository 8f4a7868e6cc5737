"""Video-alarm email to the ARC: on each alarm, the snapshot at once, then the finished clip in a follow-up.

Fed from the outbox like every link: an alarm's start event and its snapshot manifest stay queued for the
"email" link until the SMTP server accepted the message (smtplib/email from the standard library, STARTTLS and
login from config). Message-IDs are derived from the event id, so if the unit dies between the server's accept
and the outbox ack, the one resend carries the same Message-ID for the ARC to recognise.
"""

from __future__ import annotations

import logging
import mimetypes
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from agent.arc import codes
from agent.arc.polling import PollingLink
from agent.arc.settings import ArcSettings
from agent.storage.outbox import LinkMessage, Outbox
from common.backoff import Backoff
from common.clock import Clock

log = logging.getLogger(__name__)

LINK_NAME = "email"
SNAPSHOT_NAME = "snapshot.jpg"
SNAPSHOT_WAIT_S = 30.0   # an alarm whose snapshot never comes (storage fault) is mailed without it after this


def template_fields(payload: dict, settings: ArcSettings) -> dict:
    """What subject/body templates may name (agent/arc/settings.py lists the same names)."""
    zone = payload.get("zone") or ""
    bearings = payload.get("bearings_deg") or []
    return {"site_ref": payload.get("site_ref", ""), "device_id": payload.get("device_id", ""), "zone": zone,
            "zone_number": settings.dc09.zones.get(zone, settings.dc09.default_zone),
            "event_id": payload.get("event_id", ""), "time": payload.get("ts", ""),
            "kind": payload.get("kind", ""), "phase": payload.get("phase", ""),
            "bearing_deg": bearings[0] if bearings else "", "sector": ", ".join(payload.get("sectors") or []),
            "class": payload.get("class") or "/".join(payload.get("confirmed_by") or []),
            "score": payload.get("score", ""), "media": codes.media_reference(payload, settings.dc09)}


class EmailLink(PollingLink):
    thread_name = "arc-email"

    def __init__(self, settings: ArcSettings, outbox: Outbox, clock: Clock, identity: dict) -> None:
        super().__init__()
        self.arc = settings
        self.settings = settings.email
        self._outbox = outbox
        self._clock = clock
        self._identity = identity
        self._next_attempt = clock.monotonic()
        self._backoff = Backoff(self.settings.backoff_min_s, self.settings.backoff_max_s)
        self._first_seen: dict[int, float] = {}      # start row id -> when it was first seen without a snapshot
        self._alarms: dict[str, dict] = {}           # event id -> start payload, for the clip's follow-up
        self.sent = 0
        outbox.register_link(LINK_NAME, ("intrusion",), media=True)

    # ---- one step --------------------------------------------------------------------------------------------

    def poll(self) -> bool:
        """Send at most one email that is due; returns True when it sent or consumed rows (call again)."""
        if self._clock.monotonic() < self._next_attempt:
            return False
        rows = self._outbox.link_pending(LINK_NAME, 200)
        for index, row in enumerate(rows):
            later = rows[index + 1:]
            if row.kind == "event":
                outcome = self._event(row, later)
            else:
                outcome = self._media(row)
            if outcome != "consumed":
                return outcome == "sent"
        return bool(rows)

    def _event(self, row: LinkMessage, later: list[LinkMessage]) -> str:
        payload = row.payload
        event_id = payload.get("event_id")
        if payload.get("phase") != "start" or payload.get("walk_test"):
            self._outbox.link_ack(LINK_NAME, row.id)
            return "consumed"
        self._alarms[event_id] = payload
        snapshot = next((r for r in later if r.kind == "manifest" and r.payload.get("event_id") == event_id
                         and r.payload.get("name") == SNAPSHOT_NAME), None)
        ended = any(r.kind == "event" and r.payload.get("event_id") == event_id for r in later)
        seen = self._first_seen.setdefault(row.id, self._clock.monotonic())
        if snapshot is None and not ended and self._clock.monotonic() - seen < SNAPSHOT_WAIT_S:
            return "waiting"  # the snapshot is queued right after the start; mail them together
        attachments = [snapshot.media_path] if snapshot is not None else []
        if not self._send(self._compose(payload, "alarm", attachments)):
            return "failed"
        self._first_seen.pop(row.id, None)
        self._outbox.link_ack(LINK_NAME, row.id)
        if snapshot is not None:
            self._outbox.link_ack(LINK_NAME, snapshot.id)
        return "sent"

    def _media(self, row: LinkMessage) -> str:
        manifest = row.payload
        wanted = (manifest.get("name") != SNAPSHOT_NAME and self.settings.attach_clip
                  and manifest.get("total_bytes", 0) <= self.settings.max_attachment_bytes)
        if not wanted:
            self._outbox.link_ack(LINK_NAME, row.id)  # a snapshot already mailed with its alarm, or too big
            return "consumed"
        event_id = manifest.get("event_id", "")
        payload = self._alarms.get(event_id) or {**self._identity, "event_id": event_id, "kind": "intrusion"}
        if not self._send(self._compose(payload, f"media-{manifest.get('name')}", [row.media_path])):
            return "failed"
        self._outbox.link_ack(LINK_NAME, row.id)
        return "sent"

    # ---- the email -------------------------------------------------------------------------------------------

    def _compose(self, payload: dict, part: str, attachments: list[Path]) -> EmailMessage:
        fields = codes.BlankFields(template_fields(payload, self.arc))
        mail = EmailMessage()
        subject = self.settings.subject.format_map(fields)
        mail["Subject"] = subject if part == "alarm" else f"{subject} ({part.removeprefix('media-')})"
        mail["From"] = self.settings.sender
        mail["To"] = ", ".join(self.settings.to)
        mail["Date"] = formatdate(self._clock.wall(), usegmt=True)
        device = payload.get("device_id") or self._identity.get("device_id", "unit")
        mail["Message-ID"] = f"<{payload.get('event_id', 'event')}.{part}.{device}@pid-agent>"
        mail.set_content(self.settings.body.format_map(fields))
        for path in attachments:
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            maintype, subtype = kind.split("/", 1)
            mail.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype, filename=path.name)
        return mail

    def _send(self, mail: EmailMessage) -> bool:
        settings = self.settings
        try:
            with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s) as smtp:
                if settings.starttls:
                    cafile = str(settings.ca_file) if settings.ca_file else None
                    smtp.starttls(context=ssl.create_default_context(cafile=cafile))
                if settings.username:
                    smtp.login(settings.username, settings.password or "")
                smtp.send_message(mail)
        except (smtplib.SMTPException, OSError) as exc:
            delay = self._backoff.next()
            log.warning("email to %s:%d failed (%s); retry in %.0f s", settings.host, settings.port, exc, delay)
            self._next_attempt = self._clock.monotonic() + delay
            return False
        self._backoff.reset()
        self.sent += 1
        return True

    def send_test(self) -> str:
        """arc-test: one test email straight to the server (not queued); returns what happened."""
        payload = {**self._identity, "event_id": "arc-test", "kind": "test", "ts": formatdate(self._clock.wall())}
        return "accepted" if self._send(self._compose(payload, "test", [])) else "failed (see log)"
