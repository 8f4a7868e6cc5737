"""The unit's page password and its own HTTPS certificate, kept under <data_dir>/commissioning/ and made on first
start (the certificate is self-signed: the installer's phone is told to trust this unit once)."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import secrets
from pathlib import Path

from common.errors import ConfigError
from web.settings import CommissioningSettings

log = logging.getLogger(__name__)

CERT_DAYS = 3650


def folder(data_dir: Path) -> Path:
    path = Path(data_dir) / "commissioning"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def password(settings: CommissioningSettings, data_dir: Path) -> str:
    """The configured password file's first line; without one, the unit's own (made once, logged once)."""
    if settings.password_file is not None:
        try:
            value = settings.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"commissioning.password_file: cannot read {settings.password_file}: "
                              f"{exc.strerror or exc}") from None
        if len(value) < 8:
            raise ConfigError(f"commissioning.password_file: {settings.password_file} holds fewer than 8 characters")
        return value
    path = folder(data_dir) / "password"
    if not path.exists():
        _write_private(path, (secrets.token_urlsafe(9) + "\n").encode())
        log.warning("commissioning: a page password was made for this unit in %s", path)
    return path.read_text(encoding="utf-8").strip()


def certificate(host: str, data_dir: Path) -> tuple[Path, Path]:
    """(cert.pem, key.pem) of this unit's page, made on first start for `host`."""
    cert_path, key_path = folder(data_dir) / "cert.pem", folder(data_dir) / "key.pem"
    if not (cert_path.exists() and key_path.exists()):
        cert, key = _self_signed(host)
        _write_private(key_path, key)
        cert_path.write_bytes(cert)
    return cert_path, key_path


def _self_signed(host: str) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"pid-agent commissioning {host}")])
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
