"""API keys with scopes: storage (hashed) and verification (cached briefly). The FastAPI dependencies
that check a request's key (``ReadKey``…) are in the web layer, ``deps.py``.

Scopes: ``read`` < ``predict`` / ``write`` < ``admin``. A key is sent as ``Authorization: Bearer KEY``
or ``X-API-Key: KEY``. The bootstrap admin key comes from ``MODELYARD_ADMIN_KEY``.
"""

import hashlib
import hmac
import secrets
import time
from datetime import datetime
from typing import Any

import anyio.to_thread
from sqlalchemy import JSON, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from modelyard.db import Base, new_id, unit_of_work, utcnow
from modelyard.errors import BadRequest, Forbidden, NotFound, Unauthorized

SCOPES = ("read", "predict", "write", "admin")
IMPLIED: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}),
    "predict": frozenset({"read", "predict"}),
    "write": frozenset({"read", "write"}),
    "admin": frozenset(SCOPES),
}
CACHE_SECONDS = 5.0


class ApiKey(Base):
    """An API key; only the sha256 of the secret is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    scopes: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


def hash_key(key: str) -> str:
    """Keys are 256-bit random strings, so a plain sha256 is enough to store them safely."""
    return hashlib.sha256(key.encode()).hexdigest()


def granted(scopes: list[str] | frozenset[str]) -> frozenset[str]:
    """Every scope the given scopes imply."""
    out: set[str] = set()
    for s in scopes:
        out |= IMPLIED.get(s, frozenset())
    return frozenset(out)


def create_key(*, session: Session, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """Make a key; returns the row and the secret, which is shown once and never stored."""
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise BadRequest(f"unknown or missing scopes {bad}; choose from {list(SCOPES)}", field="scopes")
    secret = "my_" + secrets.token_urlsafe(32)
    row = ApiKey(name=name, prefix=secret[:10], key_hash=hash_key(secret), scopes=scopes)
    session.add(row)
    session.flush()
    return row, secret


def list_keys(*, session: Session) -> list[ApiKey]:
    """All keys, newest first (hashes only)."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc())))


def revoke_key(*, session: Session, key_id: str) -> None:
    """Revoke a key by id."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"API key {key_id!r} does not exist", field="id")
    row.revoked_at = utcnow()


class KeyVerifier:
    """Checks presented keys against the bootstrap key and the table, caching answers for a few seconds."""

    def __init__(self, sessions: sessionmaker[Session], admin_key: str | None):
        self._sessions = sessions
        self._admin = admin_key
        self._cache: dict[str, tuple[float, frozenset[str] | None]] = {}
        self._names: dict[str, str] = {}

    def cached(self, key: str) -> frozenset[str] | bool | None:
        """Scopes of a key known without the database (None: refused), or False when a lookup is needed."""
        if self._admin and hmac.compare_digest(key.encode(), self._admin.encode()):
            return IMPLIED["admin"]
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return False

    def scopes_for(self, key: str) -> frozenset[str] | None:
        """Scopes of a key, or None when it is unknown or revoked (may query the database)."""
        known = self.cached(key)
        if known is not False:
            return known  # type: ignore[return-value]
        now = time.monotonic()
        with unit_of_work(self._sessions) as session:
            row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
            scopes = granted(row.scopes) if row is not None and row.revoked_at is None else None
            name = row.name if scopes is not None and row is not None else None
        if len(self._cache) > 10_000:
            self._cache.clear()
            self._names.clear()
        if name is not None:
            self._names[key] = name
        self._cache[key] = (now + CACHE_SECONDS, scopes)
        return scopes

    def forget(self) -> None:
        """Drop cached answers (after a revoke in this process)."""
        self._cache.clear()
        self._names.clear()

    def name_of(self, key: str) -> str | None:
        """The name of a key this process has verified (``admin`` for the bootstrap key), else None."""
        if self._admin and hmac.compare_digest(key.encode(), self._admin.encode()):
            return "admin"
        return self._names.get(key)

    def require(self, authorization: str | None, x_api_key: str | None, scope: str) -> frozenset[str]:
        """The key's scopes if it grants ``scope``; ``Unauthorized`` / ``Forbidden`` otherwise (blocking)."""
        return _check(self.scopes_for(_presented(authorization, x_api_key, scope)), scope)

    async def authorize(self, authorization: str | None, x_api_key: str | None, scope: str) -> frozenset[str]:
        """``require`` for the event loop: the database is asked in a thread, and only on a cache miss."""
        key = _presented(authorization, x_api_key, scope)
        known = self.cached(key)
        if known is False:
            known = await anyio.to_thread.run_sync(self.scopes_for, key)
        return _check(known, scope)  # type: ignore[arg-type]


def _presented(authorization: str | None, x_api_key: str | None, scope: str) -> str:
    key = x_api_key
    if authorization:
        kind, _, value = authorization.partition(" ")
        if kind.lower() == "bearer" and value:
            key = value.strip()
    if not key:
        raise Unauthorized(
            f"this needs an API key with the {scope!r} scope: send it as 'Authorization: Bearer KEY' "
            "or 'X-API-Key: KEY'"
        )
    return key


def _check(scopes: frozenset[str] | None, scope: str) -> frozenset[str]:
    if scopes is None:
        raise Unauthorized(f"unknown or revoked API key; this needs a valid key with the {scope!r} scope")
    if scope not in scopes:
        raise Forbidden(f"this API key lacks the {scope!r} scope")
    return scopes
