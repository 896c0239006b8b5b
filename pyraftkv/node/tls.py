"""TLS settings of one listener family (client or peer) as etcd's flags give them, turned
into the standard library's ssl contexts (TLS 1.2 or newer).

A server context requires, with client-certificate auth on, a certificate signed by the
trusted CA before the connection reaches any protocol code. A dialing context presents
this member's certificate and checks the server's against the trusted CA. Auto TLS makes a
self-signed certificate in the data dir (as etcd does) and dials without verifying: it
encrypts, but does not authenticate.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass

from ..errors import PyraftkvError

# etcd's --cipher-suites names (Go's) and OpenSSL's names for the same TLS 1.2 suites.
CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
}


class TlsError(PyraftkvError):
    """Certificates or keys that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class TlsSettings:
    """One listener family's TLS flags (all empty: no TLS configured)."""

    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    auto_tls: bool = False
    allowed_cn: str = ""
    cipher_suites: tuple[str, ...] = ()

    @property
    def has_cert(self) -> bool:
        return bool(self.cert_file)

    @property
    def self_signed(self) -> bool:
        """Auto TLS made this certificate: nothing can verify it."""
        return self.auto_tls and not self.trusted_ca_file

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> TlsSettings:
        return cls(**{**data, "cipher_suites": tuple(data["cipher_suites"])})

    def with_auto_cert(self, directory: str, hosts: list[str]) -> TlsSettings:
        """With auto TLS and no certificate given: a self-signed one kept in ``directory``
        (made on first use, reused after), as etcd keeps it under <data-dir>/fixtures."""
        if not self.auto_tls or self.has_cert:
            return self
        cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
        if not (os.path.exists(cert) and os.path.exists(key)):
            os.makedirs(directory, mode=0o700, exist_ok=True)
            _write_self_signed(cert, key, hosts)
        return dataclasses.replace(self, cert_file=cert, key_file=key)

    def server_context(self) -> ssl.SSLContext:
        """The listener's context; requires a verified client certificate with client-cert
        auth on."""
        context = self._context(ssl.PROTOCOL_TLS_SERVER)
        if self.client_cert_auth:
            self._load_ca(context)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self) -> ssl.SSLContext:
        """The dialer's context: presents this member's certificate, verifies the server's
        (against the trusted CA, or the system's CAs when none is given)."""
        context = self._context(ssl.PROTOCOL_TLS_CLIENT)
        if self.self_signed:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self.trusted_ca_file:
            self._load_ca(context)
        else:
            context.load_default_certs()
        return context

    def _context(self, protocol: int) -> ssl.SSLContext:
        context = ssl.SSLContext(protocol)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cipher_suites:
            context.set_ciphers(":".join(CIPHER_SUITES[name] for name in self.cipher_suites))
        if self.has_cert:
            try:
                context.load_cert_chain(self.cert_file, self.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise TlsError(
                    f"cannot use certificate {self.cert_file} with key {self.key_file}: {exc}"
                ) from exc
        return context

    def _load_ca(self, context: ssl.SSLContext) -> None:
        try:
            context.load_verify_locations(self.trusted_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"cannot use trusted CA file {self.trusted_ca_file}: {exc}") from exc


def common_name(peercert: dict | None) -> str:
    """The subject CN of a verified certificate (ssl's getpeercert() form); '' if none."""
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return ""


def _write_self_signed(cert_path: str, key_path: str, hosts: list[str]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pyraftkv")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
