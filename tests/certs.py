"""Certificates the tests make: a CA, a server cert for 127.0.0.1, client certs (good, expired, other CA)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(directory: Path, stem: str, cert: x509.Certificate, key) -> Pem:
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Pem(cert_path, key_path)


def make_ca(directory: Path, name: str) -> tuple[Pem, x509.Certificate, object]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return _write(directory, name, cert, key), cert, key


def issue(
    directory: Path,
    stem: str,
    ca_cert: x509.Certificate,
    ca_key,
    *,
    server: bool,
    expired: bool = False,
) -> Pem:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    start, end = (
        (now - dt.timedelta(days=10), now - dt.timedelta(days=1))
        if expired
        else (now - dt.timedelta(days=1), now + dt.timedelta(days=30))
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(stem))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return _write(directory, stem, builder.sign(ca_key, hashes.SHA256()), key)


@dataclass(frozen=True)
class TestPki:
    ca: Pem
    server: Pem
    client: Pem
    expired_client: Pem
    other_ca: Pem
    other_client: Pem


def make_pki(directory: Path) -> TestPki:
    ca, ca_cert, ca_key = make_ca(directory, "test-ca")
    other_ca, other_cert, other_key = make_ca(directory, "other-ca")
    return TestPki(
        ca=ca,
        server=issue(directory, "server", ca_cert, ca_key, server=True),
        client=issue(directory, "client", ca_cert, ca_key, server=False),
        expired_client=issue(directory, "expired-client", ca_cert, ca_key, server=False, expired=True),
        other_ca=other_ca,
        other_client=issue(directory, "other-client", other_cert, other_key, server=False),
    )
