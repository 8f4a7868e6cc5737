"""The agent's exception hierarchy: everything the agent raises on purpose derives from AgentError."""


class AgentError(Exception):
    """Root of every error the agent raises deliberately; the CLI turns these into a message and exit code."""

    exit_code = 1


class ConfigError(AgentError):
    """The configuration file is missing, unreadable or invalid."""

    exit_code = 2


class SourceError(AgentError):
    """A camera or replay source cannot be opened or read."""

    exit_code = 3


class StorageError(AgentError):
    """The outbox or media directory cannot be created, written or read."""

    exit_code = 4


class StorageFull(StorageError):
    """A write failed because the disk (or the outbox's bound) is full: a fault to report, never a crash."""


class HardwareError(AgentError):
    """A hardware backend (camera, GPIO) is unavailable or failed."""

    exit_code = 5
