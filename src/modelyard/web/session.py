"""Dashboard sign-in: the API key is kept in an HttpOnly, ``SameSite=Strict`` cookie, and every form that
acts carries a CSRF token derived from that key (an attacker's page can neither read the cookie nor
compute the token, and a strict cookie is not sent with another site's form anyway)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

COOKIE = "modelyard_key"
# A week: the key itself never expires, so the cookie only saves typing it again.
COOKIE_MAX_AGE = 7 * 24 * 3600
_CSRF_CONTEXT = b"modelyard-ui-csrf-v1"


def csrf_token(key: str) -> str:
    """The CSRF token of forms shown to the holder of ``key``."""
    return hmac.new(key.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()[:40]


def csrf_ok(key: str, token: str | None) -> bool:
    """Whether ``token`` is the CSRF token of ``key`` (compared in constant time)."""
    return bool(token) and hmac.compare_digest(csrf_token(key), str(token))


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in user: their key (sent to the API on their behalf) and its scopes."""

    key: str
    scopes: frozenset[str]

    def can(self, scope: str) -> bool:
        """Whether the key grants ``scope`` (templates hide what it cannot do)."""
        return scope in self.scopes

    @property
    def csrf(self) -> str:
        """The CSRF token for this viewer's forms."""
        return csrf_token(self.key)
