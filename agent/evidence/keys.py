"""The unit's own Ed25519 signing key (PyNaCl): made once on first start, kept 0600 in data_dir/keys."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from common.errors import StorageError

KEY_FILE = "unit.ed25519"


def key_id(verify_key: VerifyKey) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(bytes(verify_key)).hexdigest()[:16]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class UnitKey:
    """Signs what the unit vouches for (manifests, audit entries); the public half goes to the station."""

    def __init__(self, signing_key: SigningKey) -> None:
        self._key = signing_key
        self.public = signing_key.verify_key
        self.id = key_id(self.public)

    @classmethod
    def load_or_create(cls, data_dir: Path) -> "UnitKey":
        path = Path(data_dir) / "keys" / KEY_FILE
        try:
            if path.exists():
                return cls(SigningKey(path.read_bytes()[:32]))
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = SigningKey.generate()
            descriptor = os.open(path.with_suffix(".part"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as stream:
                stream.write(bytes(key))
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(path.with_suffix(".part"), path)
            return cls(key)
        except OSError as exc:
            raise StorageError(f"unit key {path}: {exc.strerror or exc}") from None

    def sign(self, message: bytes) -> str:
        """The detached signature of message, base64."""
        return b64(self._key.sign(message).signature)

    def public_b64(self) -> str:
        return b64(bytes(self.public))


def verify_signature(public_b64: str, message: bytes, signature_b64: str) -> bool:
    try:
        VerifyKey(base64.b64decode(public_b64)).verify(message, base64.b64decode(signature_b64))
        return True
    except (BadSignatureError, ValueError, TypeError):
        return False
