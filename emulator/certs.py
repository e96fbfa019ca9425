"""Local certificate authority and server certificate for the emulator's HTTPS origin.

The real SDKs refuse plain HTTP for bearer tokens (azure-identity's authority check, Key Vault's
challenge policy), so the emulator must speak TLS. On first start it creates a CA and a server
certificate (SANs 127.0.0.1, localhost, ::1) in its certificate folder and reuses them afterwards,
so a client that trusted ``ca.pem`` once (``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE``) keeps working.
EC P-256 keys keep creation well under the 2-second start budget.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertificatePaths:
    """Files of the local CA and server certificate (``ca_pem`` is what clients trust)."""

    ca_pem: Path
    server_pem: Path
    server_key: Path


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def ensure_certificates(folder: Path) -> CertificatePaths:
    """Create the CA and server certificate in ``folder`` unless they already exist and are valid.

    A lock file serialises creation, so emulators started at the same moment on a fresh folder
    (parallel test processes) never mix one's CA with another's server certificate.
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = CertificatePaths(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    with open(folder / ".certs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (all(p.exists() for p in (paths.ca_pem, paths.server_pem, paths.server_key)) and _still_valid(paths.server_pem)):
                _create(paths)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return paths


def _create(paths: CertificatePaths) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Entra provisioning emulator local CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(
        paths.server_key,
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    # server.pem carries the chain so clients that only trust the CA can verify it.
    _write_public(
        paths.server_pem,
        server_cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM),
    )
    _write_public(paths.ca_pem, ca_cert.public_bytes(serialization.Encoding.PEM))


def _still_valid(server_pem: Path) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(server_pem.read_bytes())
    except ValueError:
        return False
    return cert.not_valid_after_utc > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)


def server_ssl_context(paths: CertificatePaths) -> ssl.SSLContext:
    """TLS context the aiohttp site listens with."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(paths.server_pem), str(paths.server_key))
    return context
