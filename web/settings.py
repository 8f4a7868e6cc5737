"""[commissioning] settings, defined with the agent's config (agent/commissioning_settings.py) and used here."""

from agent.commissioning_settings import CommissioningSettings

__all__ = ["CommissioningSettings"]
