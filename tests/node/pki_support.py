"""A throwaway PKI for the TLS tests: a CA, a server certificate for 127.0.0.1 and
localhost, and client certificates whose subject names an admin (``index:handle``)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.node.challenge_support import PrivateKey

NOW = datetime.now(UTC)


def _name(cn: str, oid: x509.ObjectIdentifier = NameOID.COMMON_NAME) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "idnode tests"), x509.NameAttribute(oid, cn)]
    )


def _builder(subject: x509.Name, issuer: x509.Name, key: PrivateKey) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())  # type: ignore[arg-type]
        .not_valid_before(NOW - timedelta(hours=1))
        .not_valid_after(NOW + timedelta(days=1))
    )


def write_pem(path: Path, cert: x509.Certificate, key: PrivateKey | None = None) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return path


@dataclass
class Pki:
    directory: Path
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate

    @classmethod
    def create(cls, directory: Path) -> Pki:
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name("idnode test CA")
        cert = (
            _builder(name, name, key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        write_pem(directory / "ca.pem", cert)
        return cls(directory, key, cert)

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def server(self) -> tuple[Path, Path]:
        """(certificate, key) files for 127.0.0.1 / localhost, signed by the CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            _builder(_name("localhost"), self.ca_cert.subject, key)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        path = write_pem(self.directory / "server.pem", cert, key)
        return path, path.with_suffix(".key")

    def client(
        self, name: str, key: PrivateKey, *, uid: bool = False, self_signed: bool = False
    ) -> Path:
        """A client certificate for ``key`` whose CN (or UID) is ``name``; its key file
        is next to it (``.key``)."""
        subject = _name(name, NameOID.USER_ID if uid else NameOID.COMMON_NAME)
        builder = _builder(
            subject, subject if self_signed else self.ca_cert.subject, key
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = builder.sign(key if self_signed else self.ca_key, hashes.SHA256())  # type: ignore[arg-type]
        stem = name.replace("/", "_").replace(":", "_") + ("-self" if self_signed else "")
        return write_pem(self.directory / f"{stem}.pem", cert, key)

    def client_context(self, cert: Path | None = None) -> ssl.SSLContext:
        """What a client uses: trusts the CA, presents ``cert`` if given."""
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if cert is not None:
            ctx.load_cert_chain(cert, cert.with_suffix(".key"))
        return ctx
