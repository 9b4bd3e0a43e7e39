"""The dashboard app (mounted at ``/ui``): sign-in, the overview, and each part's pages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp

from modelyard.auth import KeyVerifier
from modelyard.errors import ModelyardError
from modelyard.web import catalog, geo, inferrers, jobs, pipelines, registry, runs, topics
from modelyard.web.charts import finished_lines
from modelyard.web.client import ApiProblem
from modelyard.web.render import (
    HERE,
    Acting,
    CsrfRejected,
    SignedIn,
    SignInRequired,
    api,
    current_viewer,
    page,
)
from modelyard.web.session import COOKIE, COOKIE_MAX_AGE
from modelyard.web.snapshots import Snapshots, api_reader, kept_snapshot

router = APIRouter()
STALE_FORM = "the form is stale or came from another site: reload the page"


def _safe_next(target: str | None) -> str:
    """Only a path inside the dashboard (never another site) after signing in."""
    return target if target and target.startswith("/ui") and not target.startswith("//") else "/ui/"


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None, reason: str | None = None) -> Response:
    """The sign-in form."""
    return page(request, "login.html", None, next=_safe_next(next), reason=reason)


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request, key: Annotated[str, Form()], next: Annotated[str | None, Form()] = None
) -> Response:
    """Check the key (it needs the read scope) and keep it in an HttpOnly, SameSite=Strict cookie."""
    verifier: KeyVerifier = request.app.state.verifier
    try:
        await verifier.authorize(f"Bearer {key.strip()}", None, "read")
    except ModelyardError as exc:
        return page(request, "login.html", None, status=401, next=_safe_next(next), reason=exc.detail)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        key.strip(),
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/ui",
    )
    return response


@router.post("/logout")
async def logout(_: Acting) -> Response:
    """Forget the key: the cookie is cleared."""
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


async def _overview(request: Request, viewer: Any) -> dict[str, Any]:
    async with api(request, viewer) as my:
        queues, history, running, failed, pipes = await asyncio.gather(
            my.get("/api/v1/queues"),
            my.get("/api/v1/queues/history"),
            my.get("/api/v1/jobs", state=["running", "queued"], limit=20),
            my.get("/api/v1/jobs", state=["failed"], limit=5),
            my.get("/api/v1/pipelines", limit=20),
        )
    snapshots = await asyncio.gather(*(kept_snapshot(request, viewer, p["name"]) for p in pipes["items"]))
    return {
        "queues": queues,
        "running": running,
        "failed": failed,
        "pipelines": list(zip(pipes["items"], snapshots, strict=True)),
        "sparks": finished_lines(history),
    }


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, viewer: SignedIn) -> Response:
    """What runs now: queue depths and throughput, workers, running jobs, recent failures, pipelines."""
    return page(request, "overview.html", viewer, **await _overview(request, viewer))


@router.get("/overview/live", response_class=HTMLResponse)
async def overview_live(request: Request, viewer: SignedIn) -> Response:
    """The overview's body alone, drawn again when ``/ui/overview/stream`` says something changed."""
    return page(request, "_overview.html", viewer, **await _overview(request, viewer))


# what moves the overview: jobs, their chunks and pipeline stages starting, progressing, ending, dying
OVERVIEW_TOPICS = "jobs.,pipelines."


@router.get("/overview/stream")
async def overview_stream(request: Request, viewer: SignedIn) -> StreamingResponse:
    """Server-sent ``changed`` events (data: the topic), one for each event of the API's log stream
    (``GET /api/v1/log/stream``) about jobs, pipelines and queues: the overview redraws on them."""
    async with api(request, viewer) as my:
        _, body = await my.stream("/api/v1/log/stream", topics=OVERVIEW_TOPICS)
    return StreamingResponse(
        changes(body), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


async def changes(body: AsyncGenerator[bytes]) -> AsyncIterator[bytes]:
    """Each event of a server-sent event stream as a ``changed`` event with its name as data (a page
    can listen to one name, whatever the topics), and its comment lines (keep-alives) as they are. The
    API's stream is closed with this one (the browser went away)."""
    pending = b""
    async with contextlib.aclosing(body):
        async for chunk in body:
            pending = (pending + chunk).replace(b"\r\n", b"\n")  # a CR LF may be cut in two
            *blocks, pending = pending.split(b"\n\n")
            for block in blocks:
                names = [line[6:].strip() for line in block.split(b"\n") if line.startswith(b"event:")]
                if names:
                    yield b"event: changed\ndata: " + names[0] + b"\n\n"
                elif block.startswith(b":"):
                    yield block + b"\n\n"


def create_ui(api_app: ASGIApp, verifier: KeyVerifier) -> FastAPI:
    """The dashboard as an ASGI app to mount at ``/ui``; it calls ``api_app`` for everything it shows."""
    ui = FastAPI(title="modelyard dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    ui.state.api_app = api_app
    ui.state.verifier = verifier
    ui.state.snapshots = Snapshots(api_reader(api_app))
    ui.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    async def sign_in(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        target = f"/ui/login?next={quote(request.url.path)}"
        if exc.reason:
            target += f"&reason={quote(exc.reason)}"
        if request.headers.get("hx-request"):  # htmx follows a header, not a 303, for a whole-page move
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    async def problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiProblem)
        viewer = None
        with contextlib.suppress(SignInRequired):
            viewer = await current_viewer(request)
        return page(request, "error.html", viewer, status=exc.status, problem=exc)

    async def csrf(request: Request, exc: Exception) -> Response:
        return page(
            request,
            "error.html",
            None,
            status=403,
            problem=ApiProblem(403, {"detail": STALE_FORM}),
        )

    ui.add_exception_handler(SignInRequired, sign_in)
    ui.add_exception_handler(ApiProblem, problem)
    ui.add_exception_handler(CsrfRejected, csrf)
    ui.include_router(router)
    ui.include_router(registry.router)
    ui.include_router(jobs.router)
    ui.include_router(pipelines.router)
    ui.include_router(inferrers.router)
    ui.include_router(catalog.router)
    ui.include_router(topics.router)
    ui.include_router(geo.router)
    ui.include_router(runs.router)
    return ui
