"""What commands leave behind, kept across restarts: nonces already used (replay refusal) and the commanded state.

Its own small SQLite file, `data_dir/commands.sqlite` (the outbox is another store with another life cycle).
A nonce is kept until its command's expiry plus the clock window has passed; after that the command would be
refused as expired anyway, so the table stays as small as the station's rate of commands.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

FILE_NAME = "commands.sqlite"


def private_dir(path: Path) -> Path:
    """Create the data directory readable by the agent's user only (0700), tightening an existing one."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


class CommandStore:
    def __init__(self, data_dir: Path) -> None:
        path = private_dir(Path(data_dir)) / FILE_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # created 0600 before SQLite opens it
        os.close(fd)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, forget_after REAL NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT)")

    def use_nonce(self, nonce: str, forget_after: float, now: float) -> bool:
        """Record a nonce; False if it was already used (a replay)."""
        self._db.execute("DELETE FROM nonces WHERE forget_after < ?", (now,))
        try:
            self._db.execute("INSERT INTO nonces VALUES (?, ?)", (nonce, forget_after))
        except sqlite3.IntegrityError:
            return False
        return True

    def get(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def put(self, name: str, value: str | None) -> None:
        self._db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (name, value))

    def close(self) -> None:
        self._db.close()
