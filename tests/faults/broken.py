"""Deliberately broken builds the fault suite is run against once, to show it can fail (issue 17).

Each is a real implementation with one classic mistake, swapped in where the agent builds its part
(`Agent.outbox_type`), not a Mock: the fault check runs unchanged and must report what the mistake loses.
"""

from __future__ import annotations

from agent.pipeline import Agent
from agent.storage.outbox import OutboundMessage, Outbox


class DeletesBeforePuback(Outbox):
    """Forgets each row the moment it hands it to the uplink ("sent" taken for "acknowledged"): a message on
    the wire when the broker dies is gone, since the uplink's resend from the oldest row finds nothing."""

    def pending(self, after_id: int, limit: int) -> list[OutboundMessage]:
        rows = super().pending(after_id, limit)
        for row in rows:
            self.ack(row.id)  # the mistake: the broker's PUBACK for this row has not arrived yet
        return rows


class AgentDeletingBeforePuback(Agent):
    outbox_type = DeletesBeforePuback
