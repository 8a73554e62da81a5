"""A private certificate authority for TLS tests, built with `cryptography`."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["PrivateCA", "make_private_ca"]

_VALIDITY = datetime.timedelta(days=30)
_LOCALHOST_IP = ipaddress.ip_address("127.0.0.1")


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _validity() -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    return now - datetime.timedelta(hours=1), now + _VALIDITY


def _san_entries(hostnames: list[str]) -> list[x509.GeneralName]:
    """DNS names for hostnames, IP entries for literal addresses, plus 127.0.0.1."""
    entries: list[x509.GeneralName] = []
    addresses = {_LOCALHOST_IP}
    for name in hostnames:
        try:
            addresses.add(ipaddress.ip_address(name))
        except ValueError:
            entries.append(x509.DNSName(name))
    entries.extend(x509.IPAddress(address) for address in sorted(addresses, key=str))
    return entries


def _self_signed_ca() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wsreplay test CA")])
    not_before, not_after = _validity()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


@dataclass
class PrivateCA:
    """A CA whose certificate and issued leaf certificates live in `directory`."""

    directory: Path
    ca_key: rsa.RSAPrivateKey
    ca_cert: x509.Certificate
    ca_cert_path: Path
    ca_key_path: Path

    def issue_server_cert(self, hostnames: list[str]) -> tuple[Path, Path]:
        """Issue a server certificate for `hostnames` (and 127.0.0.1); returns (cert_path, key_path)."""
        key = _new_key()
        common_name = hostnames[0] if hostnames else "127.0.0.1"
        not_before, not_after = _validity()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(_san_entries(hostnames)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        stem = f"server-{uuid.uuid4().hex[:8]}"
        cert_path = self.directory / f"{stem}.pem"
        key_path = self.directory / f"{stem}.key"
        cert_path.write_bytes(_cert_pem(cert))
        key_path.write_bytes(_key_pem(key))
        return cert_path, key_path

    def server_ssl_context(self, hostnames: list[str]) -> ssl.SSLContext:
        """A server context presenting a fresh certificate for `hostnames`."""
        cert_path, key_path = self.issue_server_cert(hostnames)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        return context

    def client_ssl_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this CA."""
        return ssl.create_default_context(cafile=str(self.ca_cert_path))

    def write_mitmproxy_confdir(self, confdir: Path) -> Path:
        """Install this CA as mitmproxy's CA (`mitmproxy-ca.pem`, key and cert) in `confdir`."""
        confdir.mkdir(parents=True, exist_ok=True)
        (confdir / "mitmproxy-ca.pem").write_bytes(_key_pem(self.ca_key) + _cert_pem(self.ca_cert))
        (confdir / "mitmproxy-ca-cert.pem").write_bytes(_cert_pem(self.ca_cert))
        return confdir


def make_private_ca(tmp_path: Path) -> PrivateCA:
    """Create a fresh CA under `tmp_path/ca`."""
    directory = tmp_path / "ca"
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = _self_signed_ca()
    ca_cert_path = directory / "ca-cert.pem"
    ca_key_path = directory / "ca-key.pem"
    ca_cert_path.write_bytes(_cert_pem(cert))
    ca_key_path.write_bytes(_key_pem(key))
    return PrivateCA(directory, key, cert, ca_cert_path, ca_key_path)
