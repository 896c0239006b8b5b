"""Certificates for the TLS tests, made once per test session with trustme (never checked
in): a cluster CA, member certificates for 127.0.0.1, client certificates by common name,
and a second CA nobody trusts."""

from __future__ import annotations

import os
from dataclasses import dataclass

import trustme


@dataclass(frozen=True)
class CertFiles:
    cert: str
    key: str


class Certs:
    """Files under ``directory``: ca.pem, other-ca.pem and certificates made on request."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._ca = trustme.CA()
        self._other = trustme.CA()
        self.ca = self._write("ca.pem", self._ca.cert_pem.bytes())
        self.other_ca = self._write("other-ca.pem", self._other.cert_pem.bytes())
        self._made: dict[tuple[str, bool], CertFiles] = {}

    def issue(self, common_name: str, *, untrusted: bool = False) -> CertFiles:
        """A certificate for 127.0.0.1/localhost with this CN (server and client use)."""
        key = (common_name, untrusted)
        if key not in self._made:
            ca = self._other if untrusted else self._ca
            issued = ca.issue_cert("127.0.0.1", "localhost", common_name=common_name)
            stem = f"{'other-' if untrusted else ''}{common_name}"
            self._made[key] = CertFiles(
                self._write(f"{stem}.pem", b"".join(b.bytes() for b in issued.cert_chain_pems)),
                self._write(f"{stem}-key.pem", issued.private_key_pem.bytes()),
            )
        return self._made[key]

    def peer_args(self, common_name: str = "member", *, client_cert_auth: bool = True) -> list:
        files = self.issue(common_name)
        return [
            "--peer-cert-file",
            files.cert,
            "--peer-key-file",
            files.key,
            "--peer-trusted-ca-file",
            self.ca,
            *(["--peer-client-cert-auth"] if client_cert_auth else []),
        ]

    def client_args(self, common_name: str = "member") -> list:
        """Client TLS with client-certificate auth on the client port."""
        files = self.issue(common_name)
        return [
            "--cert-file",
            files.cert,
            "--key-file",
            files.key,
            "--trusted-ca-file",
            self.ca,
            "--client-cert-auth",
        ]

    def tls(self, common_name: str | None = "root", *, ca: str | None = None, **options):
        """A client's TLS options: trusting our CA (or ``ca``), with this CN's certificate."""
        from pyraftkv import TLS

        files = self.issue(common_name) if common_name else None
        return TLS(
            ca_file=ca or self.ca,
            cert_file=files.cert if files else None,
            key_file=files.key if files else None,
            **options,
        )

    def _write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "wb") as f:
            f.write(data)
        return path
