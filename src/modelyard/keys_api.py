"""API key routes: ``/api/v1/keys`` (admin scope)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field

from modelyard import auth
from modelyard.bodies import OffLoopJSONRoute
from modelyard.deps import AdminKey, Ctx

router = APIRouter(prefix="/api/v1/keys", tags=["keys"], route_class=OffLoopJSONRoute)


class KeyCreate(BaseModel):
    """A new key: a name saying what it is for, and its scopes."""

    name: str = Field(examples=["ci-predictions"])
    scopes: list[str] = Field(examples=[["predict"]], description="Any of read, predict, write, admin")


class KeyPublic(BaseModel):
    """A key as listed: never its secret."""

    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyPublic):
    """A new key, with its secret shown this one time."""

    key: str


def _public(row: auth.ApiKey) -> KeyPublic:
    return KeyPublic(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=list(row.scopes),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=KeyCreated)
def create_key(body: KeyCreate, ctx: Ctx, _: AdminKey) -> KeyCreated:
    """Create a key; its secret is in this answer only."""
    with ctx.uow() as session:
        row, secret = auth.create_key(session=session, name=body.name, scopes=body.scopes)
        return KeyCreated(**_public(row).model_dump(), key=secret)


@router.get("", response_model=list[KeyPublic])
def list_keys(ctx: Ctx, _: AdminKey) -> list[KeyPublic]:
    """Every key (prefix and scopes only)."""
    with ctx.uow() as session:
        return [_public(r) for r in auth.list_keys(session=session)]


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_key(key_id: str, ctx: Ctx, _: AdminKey) -> Response:
    """Revoke a key at once."""
    with ctx.uow() as session:
        auth.revoke_key(session=session, key_id=key_id)
    ctx.verifier.forget()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
