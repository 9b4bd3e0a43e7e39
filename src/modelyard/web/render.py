"""What every dashboard page shares: templates and their filters, the signed-in viewer, CSRF checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from modelyard.auth import KeyVerifier
from modelyard.errors import ModelyardError
from modelyard.web.client import Api
from modelyard.web.session import COOKIE, Viewer, csrf_ok

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
PAGE_SIZE = 50
# What a page shows for a missing time, size or duration.
NONE = "\N{EN DASH}"
# Lists of numbers longer than this are shown by their first few in a page.
LONG_LIST, SHOWN_OF_LIST = 16, 8


class SignInRequired(Exception):
    """No valid key in the cookie: the page sends the browser to the sign-in form."""

    def __init__(self, reason: str = ""):
        super().__init__(reason)
        self.reason = reason


class CsrfRejected(Exception):
    """A form that acts came without the viewer's CSRF token."""


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        at = value
    else:
        try:
            at = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def ago(value: Any) -> str:
    """'12 s ago', '3 min ago', '2 h ago', or the date for older times."""
    at = _parse_time(value)
    if at is None:
        return NONE
    seconds = (datetime.now(UTC) - at).total_seconds()
    if seconds < 0:
        return "in " + duration(-seconds)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return at.strftime("%Y-%m-%d %H:%M")


def when(value: Any) -> str:
    """An absolute UTC time, to the second."""
    at = _parse_time(value)
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else NONE


def duration(seconds: Any) -> str:
    """Seconds as '850 ms', '12.3 s', '4 min 10 s', '2 h 5 min'."""
    if seconds is None:
        return NONE
    s = float(seconds)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


def size(n: Any) -> str:
    """Bytes as B, KiB, MiB or GiB."""
    if n is None:
        return NONE
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _shorten(value: Any) -> Any:
    """Long lists of numbers (embeddings, histograms) cut to their first few, saying how many there are."""
    if isinstance(value, dict):
        return {k: _shorten(v) for k, v in value.items()}
    if isinstance(value, list):
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        if numbers and len(value) > LONG_LIST:
            said = f"... {len(value)} numbers, min {min(value):.4g}, max {max(value):.4g}"
            return [*value[:SHOWN_OF_LIST], said]
        return [_shorten(v) for v in value]
    return value


def pretty(value: Any) -> str:
    """JSON, indented, for a <pre> (long lists of numbers shortened)."""
    return json.dumps(_shorten(value), indent=2, ensure_ascii=False, default=str)


templates.env.filters.update(ago=ago, when=when, duration=duration, size=size, pretty=pretty)


async def current_viewer(request: Request) -> Viewer:
    """The viewer whose key is in the cookie (read scope at least), or ``SignInRequired``."""
    key = request.cookies.get(COOKIE)
    if not key:
        raise SignInRequired()
    verifier: KeyVerifier = request.app.state.verifier
    try:
        scopes = await verifier.authorize(f"Bearer {key}", None, "read")
    except ModelyardError as exc:
        raise SignInRequired(exc.detail) from exc
    return Viewer(key, scopes)


SignedIn = Annotated[Viewer, Depends(current_viewer)]
"""Route parameter alias: the signed-in viewer (sign-in page otherwise)."""


async def acting_viewer(request: Request) -> Viewer:
    """The viewer of a form that acts: signed in, and the form (or ``X-CSRF-Token``) carries their token."""
    viewer = await current_viewer(request)
    token = request.headers.get("x-csrf-token")
    if token is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        token = (await request.form()).get("csrf")  # type: ignore[assignment]
    if not csrf_ok(viewer.key, token):
        raise CsrfRejected()
    return viewer


Acting = Annotated[Viewer, Depends(acting_viewer)]
"""Route parameter alias: the viewer of a CSRF-checked form."""


async def script_viewer(request: Request) -> Viewer:
    """The viewer of a request a page script sends with its token in ``X-CSRF-Token`` (the body is left
    unread, so it can be streamed on)."""
    viewer = await current_viewer(request)
    if not csrf_ok(viewer.key, request.headers.get("x-csrf-token")):
        raise CsrfRejected()
    return viewer


Scripted = Annotated[Viewer, Depends(script_viewer)]
"""Route parameter alias: the viewer of a CSRF-checked script request with a body to stream."""


def api(request: Request, viewer: Viewer) -> Api:
    """An API caller acting as ``viewer`` (use as ``async with``)."""
    return Api(request.app.state.api_app, viewer.key)


def page(
    request: Request, template: str, viewer: Viewer | None, status: int = 200, **values: Any
) -> HTMLResponse:
    """Render ``template`` with the viewer, the current path and ``values``."""
    return templates.TemplateResponse(
        request, template, {"viewer": viewer, "path": request.url.path, **values}, status_code=status
    )
