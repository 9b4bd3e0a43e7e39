"""Webhook signatures: ``X-Modelyard-Signature`` is the hex HMAC-SHA256, under the subscription's secret,
of ``"{timestamp}.{body}"``, where ``timestamp`` is ``X-Modelyard-Timestamp`` (Unix seconds) and ``body``
the raw request body. A receiver recomputes it, compares in constant time, and refuses old timestamps
(a replay of a captured request)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh signing secret (256 random bits)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature of ``body`` sent at ``timestamp`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    secret: str, timestamp: int, body: bytes, signature: str, *, now: int, tolerance: int = 300
) -> bool:
    """Whether ``signature`` is ``body``'s at ``timestamp``, and ``timestamp`` within ``tolerance`` seconds
    of ``now``."""
    if abs(now - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
