"""The composition root: ``create_app(settings)`` builds every part and wires the routes."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard import errors
from modelyard.auth import KeyVerifier
from modelyard.catalog.api import router as catalog_router
from modelyard.context import AppContext
from modelyard.db import make_engine, make_sessionmaker
from modelyard.demo import register_demo
from modelyard.durable import Durable, close_clients
from modelyard.inferrers.api import router as inferrers_router
from modelyard.jobs.api import router as jobs_router
from modelyard.jobs.queues import QueueCollector
from modelyard.jobs.queues_api import router as queues_router
from modelyard.jobs.schedules_api import router as schedules_router
from modelyard.keys_api import router as keys_router
from modelyard.logs import setup_logging
from modelyard.metrics import Metrics
from modelyard.migrate import upgrade
from modelyard.pipelines.api import events_router, pipelines_router
from modelyard.pipelines.run.runner import close as close_pipelines
from modelyard.pipelines.watch import PipelineCollector
from modelyard.registry.api import router as registry_router
from modelyard.serving.api import router as serving_router
from modelyard.serving.fastpath import FAST_PREFIXES, InferFastPath
from modelyard.serving.service import InferenceService
from modelyard.serving.v2_api import router as v2_router
from modelyard.serving.ws import router as ws_router
from modelyard.settings import Settings
from modelyard.storage import open_storage
from modelyard.web import create_ui

log = logging.getLogger("modelyard.app")
PROBLEM = "application/problem+json"


def build_context(settings: Settings) -> AppContext:
    """Open the database (migrated), artifact store, metrics and services of one process."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url())
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    storage = open_storage(
        settings.storage_url, data_dir=settings.data_dir, s3_endpoint_url=settings.s3_endpoint_url
    )
    metrics = Metrics()
    admin = settings.admin_key.get_secret_value() if settings.admin_key else None
    inference = InferenceService(
        sessions=sessions,
        storage=storage,
        cache_dir=settings.data_dir / "cache",
        metrics=metrics,
        max_models=settings.model_cache_size,
        max_bytes=settings.model_cache_bytes,
        threads=settings.inference_threads,
        intra_op_threads=settings.intra_op_threads,
        inline_us=settings.inline_inference_us,
    )
    return AppContext(
        settings=settings,
        engine=engine,
        sessions=sessions,
        storage=storage,
        metrics=metrics,
        verifier=KeyVerifier(sessions, admin),
        inference=inference,
    )


def problem_response(exc: errors.ModelyardError, path: str) -> Response:
    """The error as problem+json, or as the V2 protocol's ``{"error": ...}`` under ``/v2``."""
    if path.startswith("/v2"):
        return Response(
            orjson.dumps({"error": exc.detail}), status_code=exc.status, media_type="application/json"
        )
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return Response(
        orjson.dumps(exc.to_problem(path)), status_code=exc.status, media_type=PROBLEM, headers=headers
    )


def _install_error_handlers(app: FastAPI) -> None:
    async def domain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.ModelyardError)
        return problem_response(exc, request.url.path)

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "detail": e.get("msg", "")}
            for e in exc.errors()
        ]
        first = problems[0] if problems else {"field": None, "detail": "invalid request"}
        err = errors.ValidationFailed(
            f"{first['field']}: {first['detail']}", errors=problems, field=first["field"]
        )
        return problem_response(err, request.url.path)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem_response(errors.ModelyardError("internal error; see the server log"), request.url.path)

    app.add_exception_handler(errors.ModelyardError, domain)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, unexpected)


class MetricsMiddleware:
    """Counts requests and times them per route template (pure ASGI: cheap on the hot path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.record_request(template, scope["method"], status, time.perf_counter() - start)


class ModelyardAPI(FastAPI):
    """FastAPI with the prediction fast path in front of the framework's own middleware stack."""

    fast: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.fast is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].startswith(FAST_PREFIXES)
        ):
            await self.fast(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def framework_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The plain FastAPI app, for requests the fast path passes on."""
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, context: AppContext | None = None) -> FastAPI:
    """The modelyard ASGI app for ``settings`` (read from the environment when not given)."""
    settings = settings or Settings()
    setup_logging(settings.log_level, settings.data_dir / "logs" if settings.log_to_file else None)
    ctx = context or build_context(settings)
    if settings.demo:
        register_demo(ctx)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        durable = Durable(ctx) if settings.worker else None
        if durable is not None:
            await run_in_threadpool(durable.launch)
        ctx.extras["durable"] = durable
        log.info(
            "modelyard started",
            extra={"database": ctx.engine.url.render_as_string(), "worker": settings.worker},
        )
        try:
            yield
        finally:
            if durable is not None:
                await run_in_threadpool(durable.shutdown)
            close_clients(ctx)
            close_pipelines(ctx)
            ctx.inference.close()

    app = ModelyardAPI(
        title="modelyard",
        version="0.1.0",
        summary="Register, serve, batch and pipeline ONNX models.",
        description="Every write needs an API key with a scope (`Authorization: Bearer KEY` or `X-API-Key`). "
        'Errors are RFC 9457 problem+json; the V2 inference protocol under `/v2` answers `{"error": ...}`.',
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    _install_error_handlers(app)
    app.fast = InferFastPath(app.framework_call, ctx)  # records its own request metrics
    app.add_middleware(
        MetricsMiddleware, metrics=ctx.metrics
    )  # added last, so outermost: it times everything

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> Response:
        """Readiness: the database answers."""
        try:
            with ctx.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            return problem_response(errors.Unavailable(f"database unreachable: {exc}"), "/readyz")
        return Response(orjson.dumps({"status": "ready"}), media_type="application/json")

    @app.get("/metrics", tags=["health"], response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics: requests per route, predictions per model, loaded models, batching, job
        queues and workers, pipeline stage runs and events by state, stage run times and raw data fetches."""
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")

    app.include_router(keys_router)
    app.include_router(registry_router)
    app.include_router(serving_router)
    app.include_router(ws_router)
    app.include_router(v2_router)
    app.include_router(jobs_router)
    app.include_router(queues_router)
    app.include_router(schedules_router)
    app.include_router(pipelines_router)
    app.include_router(events_router)
    app.include_router(inferrers_router)
    app.include_router(catalog_router)
    app.mount("/ui", create_ui(app, ctx.verifier))

    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        """People who open the server's address land on the dashboard."""
        return RedirectResponse("/ui/", status_code=307)

    if "queue_collector" not in ctx.extras:  # one per registry, however many apps share the context
        ctx.extras["queue_collector"] = QueueCollector(ctx)
        ctx.metrics.registry.register(ctx.extras["queue_collector"])
    if "pipeline_collector" not in ctx.extras:
        ctx.extras["pipeline_collector"] = PipelineCollector(ctx)
        ctx.metrics.registry.register(ctx.extras["pipeline_collector"])
    return app
