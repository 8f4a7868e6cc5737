"""The agent's ARC reporting: builds the enabled links (DC-09, email) over the outbox and runs them.

Links that config no longer enables are unregistered from the outbox at start-up, so rows they would have
held are not kept for a receiver nobody sends to.
"""

from __future__ import annotations

from typing import Callable

from agent.arc import email, link
from agent.arc.reports import ArcReport
from agent.arc.settings import ArcSettings
from agent.storage.outbox import Outbox
from common.clock import Clock


class ArcLinks:
    def __init__(self, settings: ArcSettings, outbox: Outbox, clock: Clock, identity: dict,
                 on_fault: Callable[[ArcReport], None] | None = None) -> None:
        self.dc09 = link.Dc09Link(settings, outbox, clock, identity, on_fault) if settings.dc09.enabled else None
        self.email = email.EmailLink(settings, outbox, clock, identity) if settings.email.enabled else None
        if self.dc09 is None:
            outbox.unregister_link(link.LINK_NAME)
        if self.email is None:
            outbox.unregister_link(email.LINK_NAME)

    @property
    def links(self) -> list:
        return [x for x in (self.dc09, self.email) if x is not None]

    def start(self) -> None:
        for one in self.links:
            one.start()

    def stop(self) -> None:
        for one in self.links:
            one.stop()

    def notify(self) -> None:
        for one in self.links:
            one.notify()

    def status(self) -> dict:
        return {"dc09": self.dc09.status() if self.dc09 else None,
                "email": {"sent": self.email.sent} if self.email else None}
