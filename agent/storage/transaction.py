"""One SQLite write transaction, and the mapping of SQLite/OS errors to the agent's storage errors.

A full disk (SQLITE_FULL, ENOSPC) becomes StorageFull so callers can treat it as a fault to report. A COMMIT that
fails may leave no transaction open (SQLite rolls back itself on SQLITE_FULL), so ROLLBACK is only issued while
one is still open: a ROLLBACK of nothing raised "cannot rollback - no transaction is active" and crashed the agent.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from common.errors import StorageError, StorageFull

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def is_full(exc: BaseException) -> bool:
    """Whether an error means "no space left" (SQLite's SQLITE_FULL or an OS ENOSPC/EDQUOT)."""
    if isinstance(exc, OSError):
        return exc.errno in _FULL_ERRNOS
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return isinstance(exc, StorageFull)


def storage_error(message: str, exc: BaseException) -> StorageError:
    """The StorageError (StorageFull for a full disk) to raise for exc, with message and exc's reason."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return (StorageFull if is_full(exc) else StorageError)(f"{message}: {reason}")


class Transaction:
    """`with Transaction(db, where):` BEGIN IMMEDIATE ... COMMIT, rolled back on error."""

    def __init__(self, db: sqlite3.Connection, where: Path) -> None:
        self._db, self._where = db, where

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise storage_error(f"outbox {self._where}: cannot start a write", exc) from None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
                return False
            except sqlite3.Error as err:
                self._rollback()
                raise storage_error(f"outbox {self._where}: write failed", err) from None
        self._rollback()
        if isinstance(exc, sqlite3.Error):
            raise storage_error(f"outbox {self._where}: write failed", exc) from None
        return False

    def _rollback(self) -> None:
        if not self._db.in_transaction:
            return  # SQLite already rolled back (e.g. SQLITE_FULL at COMMIT)
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            # the statement error being raised says what failed; a failed ROLLBACK leaves SQLite's own
            # automatic rollback, which happens when the connection's next statement runs
            pass
