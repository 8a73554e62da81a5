"""Trust and environment for clients that reach the proxy as an explicit HTTP(S) proxy.

Such clients (httpx, requests, ``websockets`` >= 15, aiohttp with ``trust_env``)
read the proxy from ``https_proxy``/``wss_proxy`` and the roots they trust from
``SSL_CERT_FILE``. The bundle written here holds the system roots plus the proxy's
CA, so intercepted staging hosts and everything else verify alike.
"""

from __future__ import annotations

import base64
from pathlib import Path

import certifi

BUNDLE_NAME = "wsreplay-ca-bundle.pem"


def ensure_ca(confdir: str | None = None) -> Path:
    """mitmproxy's CA certificate in `confdir`, created (as mitmproxy would) if missing."""
    from mitmproxy import certs, options

    directory = Path(confdir or options.CONF_DIR).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    certs.CertStore.from_store(directory, options.CONF_BASENAME, options.KEY_SIZE)
    return directory / f"{options.CONF_BASENAME}-ca-cert.pem"


def spki_sha256(ca_cert: Path) -> str:
    """The base64 SHA-256 of the CA certificate's public key (Chromium's ``--ignore-certificate-errors-spki-list``).

    mitmproxy signs the certificate it makes for each host with its CA's own key, so this one
    hash covers every certificate the proxy presents, and nothing else.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    certificate = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    key = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(key)
    return base64.b64encode(digest.finalize()).decode("ascii")


def write_ca_bundle(ca_cert: Path, directory: Path | None = None) -> Path:
    """Write (or refresh) system roots + the proxy CA to a stable path; return it."""
    directory = directory or ca_cert.parent
    bundle = directory / BUNDLE_NAME
    roots = Path(certifi.where()).read_text(encoding="ascii", errors="replace")
    content = roots.rstrip("\n") + "\n" + ca_cert.read_text(encoding="ascii")
    if not bundle.exists() or bundle.read_text(encoding="ascii", errors="replace") != content:
        temporary = bundle.with_suffix(".tmp")
        temporary.write_text(content, encoding="ascii")
        temporary.replace(bundle)
    return bundle


def proxy_environment(proxy_url: str, bundle: Path) -> dict[str, str]:
    """Environment variables that make the common clients use and trust the proxy."""
    environment = {
        "https_proxy": proxy_url,
        "http_proxy": proxy_url,
        "wss_proxy": proxy_url,
        "ws_proxy": proxy_url,
        "SSL_CERT_FILE": str(bundle),
        "REQUESTS_CA_BUNDLE": str(bundle),
        "CURL_CA_BUNDLE": str(bundle),
        "NODE_EXTRA_CA_CERTS": str(bundle),
        "no_proxy": "localhost,127.0.0.1,::1",
    }
    for name in ("https_proxy", "http_proxy", "wss_proxy", "ws_proxy", "no_proxy"):
        environment[name.upper()] = environment[name]
    return environment
