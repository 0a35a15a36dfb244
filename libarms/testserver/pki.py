"""Certificates for the test server (cryptography): its CA, its LS/RS certificate, SA credentials.

Subjects follow what ARMS devices check (``spec/arms-wire.md`` §2.2): the CA is
``CN=ARMS Root CA ...``, the LS/RS certificate ``CN=Location Server <address>``; the server
certificate also names its addresses in subjectAltName so that agents which can check the host
do. Keys are RSA 2048 as in the libarms capture (the real 5.33 client negotiates RSA suites).
Tests use :func:`make_ca` / :func:`issue` with other names or dates (foreign CA, expired).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from typing import Iterable, Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .._atomic import write_atomic

CA_CN = "ARMS Root CA (libarms testserver)"


def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "libarms testserver"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _dates(not_before, not_after, days):
    now = datetime.datetime.now(datetime.timezone.utc)
    nb = not_before or now - datetime.timedelta(days=1)
    na = not_after or nb + datetime.timedelta(days=days)
    return nb, na


def make_ca(cn: str = CA_CN, *, days: int = 3650, not_before: Optional[datetime.datetime] = None,
            not_after: Optional[datetime.datetime] = None) -> tuple[str, str]:
    """A self-signed CA: (cert PEM, key PEM)."""
    key = _key()
    nb, na = _dates(not_before, not_after, days)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(nb).not_valid_after(na)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), _pem_key(key)


def issue(ca_cert_pem: str, ca_key_pem: str, cn: str, *, ips: Iterable[str] = (),
          server: bool = True, client: bool = True, days: int = 3650,
          not_before: Optional[datetime.datetime] = None,
          not_after: Optional[datetime.datetime] = None) -> tuple[str, str]:
    """A leaf certificate signed by the CA: (cert PEM, key PEM)."""
    ca = x509.load_pem_x509_certificate(ca_cert_pem.encode("ascii"))
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode("ascii"), None)
    key = _key()
    nb, na = _dates(not_before, not_after, days)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
             ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(nb).not_valid_after(na)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                        critical=False))
    ips = [ipaddress.ip_address(i) for i in ips]
    if ips:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(i) for i in ips]), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), _pem_key(key)


class Pki:
    """The CA and server credentials kept in ``<state_dir>/pki`` (made on first start)."""

    def __init__(self, state_dir: str):
        self.dir = os.path.join(state_dir, "pki")
        self.ca_cert = os.path.join(self.dir, "ca.pem")
        self.ca_key = os.path.join(self.dir, "ca.key")
        self.server_cert = os.path.join(self.dir, "server.pem")
        self.server_key = os.path.join(self.dir, "server.key")

    def ensure(self, ips: Iterable[str] = ("127.0.0.1", "::1")) -> "Pki":
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        if not os.path.exists(self.ca_cert):
            cert, key = make_ca()
            write_atomic(self.ca_key, key.encode(), 0o600)
            write_atomic(self.ca_cert, cert.encode(), 0o644)
        if not os.path.exists(self.server_cert):
            ips = list(ips)
            cert, key = issue(self.ca_pem, self.ca_key_pem, f"Location Server {ips[0]}", ips=ips)
            write_atomic(self.server_key, key.encode(), 0o600)
            write_atomic(self.server_cert, cert.encode(), 0o644)
        return self

    @property
    def ca_pem(self) -> str:
        with open(self.ca_cert) as f:
            return f.read()

    @property
    def ca_key_pem(self) -> str:
        with open(self.ca_key) as f:
            return f.read()

    def issue_sa(self, distribution_id: str) -> tuple[str, str]:
        """SA certificate and key for a device (client and server use)."""
        return issue(self.ca_pem, self.ca_key_pem, f"SA {distribution_id}")
