"""
A throwaway certificate authority for a test run: the mock serves
C{wss://} with a certificate it signed, and the tests' clients trust only
it (C{ca.pem}), so TLS is verified for real without touching the system's
trust store. Nothing outlives the run: the keys are made fresh, kept in the
run's directory (readable by its owner only), and valid for a week.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["HOSTS", "TestAuthority", "make_authority"]

#: The names the server's certificate is good for.
HOSTS = ("localhost", "127.0.0.1", "::1")
#: How long the certificates are valid (from an hour before they are made,
#: against clocks a little apart).
VALIDITY = timedelta(days=7)


@dataclass(frozen=True)
class TestAuthority:
    """
    The files of a throwaway CA.

    @ivar ca_path: the CA's certificate (PEM): what clients trust.
    @ivar cert_path: the server's certificate (PEM), signed by the CA.
    @ivar key_path: the server's private key (PEM, 0600).
    """

    __test__ = False  # not a pytest test class, whatever its name

    ca_path: Path
    cert_path: Path
    key_path: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)


def make_authority(directory: Path, now: datetime) -> TestAuthority:
    """
    Make a CA and a server certificate for L{HOSTS} in C{directory}.

    @param now: the time the certificates start from (timezone-aware).
    """
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"wsdaemon test CA {secrets.token_hex(4)}")
    start, end = now - timedelta(hours=1), now + VALIDITY
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in HOSTS:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost")).issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    authority = TestAuthority(directory / "ca.pem", directory / "server.pem",
                              directory / "server.key")
    authority.ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    authority.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(authority.key_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return authority
