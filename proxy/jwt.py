"""Minimal HS256 JSON Web Tokens, as used by the staging auth service.

Stdlib only. Enough to mint staging-shaped access tokens, verify them in the
sample server and spot tokens embedded in recorded traffic.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
import uuid
from typing import Any

__all__ = [
    "JWT_PATTERN",
    "decode_unverified",
    "e2e_user_id",
    "encode_hs256",
    "mint_access_token",
    "verify_hs256",
]

JWT_PATTERN = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+")
"""Finds JWTs (base64url JSON header and claims, then a signature) inside any text."""

STAGING_ISSUER = "netra-auth-service"
STAGING_AUDIENCE = "netra-platform"


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(segment: str) -> bytes:
    padded = segment + "=" * (-len(segment) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def _as_bytes(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def _json_segment(data: dict[str, Any]) -> str:
    return _b64url_encode(json.dumps(data, separators=(",", ":")).encode("utf-8"))


def _signature(signing_input: str, secret: str | bytes) -> bytes:
    return hmac.new(_as_bytes(secret), signing_input.encode("ascii"), hashlib.sha256).digest()


def encode_hs256(claims: dict[str, Any], secret: str | bytes) -> str:
    """Sign `claims` with HMAC-SHA256 and return the compact token."""
    signing_input = f"{_json_segment({'alg': 'HS256', 'typ': 'JWT'})}.{_json_segment(claims)}"
    return f"{signing_input}.{_b64url_encode(_signature(signing_input, secret))}"


def _decode_json_segment(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64url_decode(segment))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"not a JWT: {what} is not base64url-encoded JSON") from exc
    if not isinstance(value, dict):
        raise ValueError(f"not a JWT: {what} is not a JSON object")
    return value


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (header, claims) without checking the signature."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise ValueError("not a JWT: expected three non-empty dot-separated segments")
    return _decode_json_segment(parts[0], "header"), _decode_json_segment(parts[1], "claims")


def verify_hs256(token: str, secret: str | bytes, *, now: float | None = None) -> dict[str, Any]:
    """Return the claims of `token` if its HS256 signature is valid and it has not expired."""
    header, claims = decode_unverified(token)
    if header.get("alg") != "HS256":
        raise ValueError(f"unsupported JWT algorithm: {header.get('alg')!r}")
    signing_input, _, signature = token.rpartition(".")
    try:
        given = _b64url_decode(signature)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("invalid JWT signature encoding") from exc
    if not hmac.compare_digest(given, _signature(signing_input, secret)):
        raise ValueError("invalid JWT signature")
    exp = claims.get("exp")
    if exp is not None:
        if not isinstance(exp, int | float):
            raise ValueError("invalid JWT exp claim")
        if exp <= (time.time() if now is None else now):
            raise ValueError("JWT has expired")
    return claims


def e2e_user_id(email: str) -> str:
    """The staging user id for an E2E email: ``e2e-<localpart>``."""
    return f"e2e-{email.partition('@')[0]}"


def mint_access_token(
    email: str,
    permissions: list[str],
    secret: str | bytes,
    lifetime: int = 900,
    *,
    subject: str | None = None,
) -> str:
    """Mint a staging-shaped access token; every call has a new jti, iat and exp."""
    issued_at = int(time.time())
    claims = {
        "sub": subject or e2e_user_id(email),
        "iat": issued_at,
        "exp": issued_at + lifetime,
        "type": "access",
        "token_type": "access",
        "iss": STAGING_ISSUER,
        "aud": STAGING_AUDIENCE,
        "jti": str(uuid.uuid4()),
        "env": "staging",
        "email": email,
        "permissions": list(permissions),
    }
    return encode_hs256(claims, secret)
