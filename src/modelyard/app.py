"""The composition root: ``create_app(settings)`` builds every part and wires the routes."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard import errors
from modelyard.access_log import AccessLog, AccessLogged
from modelyard.artifacts.api import router as artifacts_router
from modelyard.auth import KeyVerifier
from modelyard.catalog.ann import AnnConfig
from modelyard.catalog.api import router as catalog_router
from modelyard.catalog.caches import CatalogCaches
from modelyard.catalog.runner import Runner
from modelyard.context import AppContext, Lazy
from modelyard.db import Database
from modelyard.demo import register_demo
from modelyard.docs import install_docs
from modelyard.durable import Durable, open_dispatcher
from modelyard.fetch import new_client
from modelyard.geo.api import aois_router, scenes_router
from modelyard.geo.runs_api import predictions_router, runs_router, summaries_router
from modelyard.inferrers.api import router as inferrers_router
from modelyard.inferrers.images import ImageLimits
from modelyard.inferrers.prepare import Preparer
from modelyard.jobs.api import router as jobs_router
from modelyard.jobs.dead_letters_api import router as dead_letters_router
from modelyard.jobs.metrics import JobsCollector
from modelyard.keys_api import router as keys_router
from modelyard.limits import BodyLimitMiddleware
from modelyard.log_api import router as log_router
from modelyard.logs import setup_logging
from modelyard.metrics import Metrics
from modelyard.migrate import upgrade
from modelyard.notify.api import router as topics_router
from modelyard.ops.api import router as queues_router
from modelyard.ops.queues import QueueCollector
from modelyard.pipelines.api import events_router, pipelines_router
from modelyard.pipelines.stages import StageEnv
from modelyard.pipelines.stages.budget import ByteBudget
from modelyard.pipelines.stages.raw import RawCache
from modelyard.pipelines.watch import PipelineCollector
from modelyard.registry.api import router as registry_router
from modelyard.schedules.api import router as schedules_router
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
    db = Database(settings.resolved_database_url(), data_dir=settings.data_dir)
    upgrade(db.engine)
    storage = open_storage(
        settings.storage_url, data_dir=settings.data_dir, s3_endpoint_url=settings.s3_endpoint_url
    )
    metrics = Metrics()
    admin = settings.admin_key.get_secret_value() if settings.admin_key else None
    inference = InferenceService(
        sessions=db.sessions,
        storage=storage,
        cache_dir=settings.data_dir / "cache",
        metrics=metrics,
        max_models=settings.model_cache_size,
        max_bytes=settings.model_cache_bytes,
        threads=settings.inference_threads,
        intra_op_threads=settings.intra_op_threads,
        inline_us=settings.inline_inference_us,
        decode_processes=settings.predict_decode_processes,
    )
    return AppContext(
        settings=settings,
        db=db,
        storage=storage,
        metrics=metrics,
        verifier=KeyVerifier(db.sessions, admin),
        inference=inference,
        dispatcher=Lazy(lambda: open_dispatcher(db), lambda d: d.close()),
        reinfer=Lazy(Runner, lambda r: r.close()),
        http=Lazy(new_client, lambda c: c.close()),
        io_pool=Lazy(
            lambda: ThreadPoolExecutor(settings.pipeline_fetch_threads, thread_name_prefix="pipelines-io"),
            lambda p: p.shutdown(wait=False, cancel_futures=True),
        ),
        raw_cache=Lazy(lambda: RawCache(settings.pipeline_raw_cache_bytes)),
        stage_env=Lazy(
            lambda: StageEnv(
                inference=inference,
                images=ImageLimits.of(settings),
                image_budget=ByteBudget(settings.pipeline_worker_image_bytes),
                dask_scheduler=settings.analysis_dask_scheduler or None,
                analysis_workers=settings.analysis_workers,
            )
        ),
        preparer=Lazy(Preparer, lambda p: p.close()),
        catalog=Lazy(
            lambda: CatalogCaches(
                ann=AnnConfig(settings.data_dir / "catalog-ann", settings.catalog_ann_threshold)
            )
        ),
    )


def problem_response(exc: BaseException, path: str) -> Response:
    """The error as problem+json, or as the V2 protocol's ``{"error": ...}`` under ``/v2``."""
    answer = errors.problem(exc, path, v2=path.startswith("/v2"))
    return Response(
        answer.encode(), status_code=answer.status, media_type=answer.media_type, headers=answer.headers
    )


def _install_error_handlers(app: FastAPI) -> None:
    async def domain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.ModelyardError)
        return problem_response(exc, request.url.path)

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        err = errors.ValidationFailed.of_validation(exc.errors())
        return problem_response(err, request.url.path)

    async def http(request: Request, exc: Exception) -> Response:
        # the framework's own answers: no route (404), a route without this method (405)
        assert isinstance(exc, StarletteHTTPException)
        err: errors.ModelyardError
        if exc.status_code == 404:
            err = errors.NotFound(f"no route {request.url.path!r}; the API is described at /docs")
        elif exc.status_code == 405:
            err = errors.MethodNotAllowed(f"{request.url.path!r} does not answer {request.method}")
        else:
            err = errors.ModelyardError(str(exc.detail))
            err.status, err.code, err.title = exc.status_code, "http-error", "HTTP error"
        response = problem_response(err, request.url.path)
        response.headers.update(exc.headers or {})
        return response

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem_response(exc, request.url.path)

    app.add_exception_handler(errors.ModelyardError, domain)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http)
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
    access: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.access is not None:
            await self.access(scope, receive, send)
        else:
            await self.dispatch(scope, receive, send)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The fast path for predictions, the framework for the rest."""
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
        if settings.worker:
            await run_in_threadpool(Durable(ctx).launch)
        log.info(
            "modelyard started",
            extra={"database": ctx.engine.url.render_as_string(), "worker": settings.worker},
        )
        try:
            yield
        finally:
            await run_in_threadpool(ctx.close)
            if access is not None:
                access.close()

    app = ModelyardAPI(
        title="modelyard",
        version="0.1.0",
        summary="Register, serve, batch and pipeline ONNX models.",
        description="Every write needs an API key with a scope (`Authorization: Bearer KEY` or `X-API-Key`). "
        'Errors are RFC 9457 problem+json; the V2 inference protocol under `/v2` answers `{"error": ...}`. '
        "JSON bodies are strict JSON on every route: NaN, Infinity and numbers beyond a double are refused "
        "(400), as is text holding a NUL character; every body has a size limit (413, see the settings).",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    _install_error_handlers(app)
    app.fast = InferFastPath(app.framework_call, ctx)  # records its own request metrics
    access = (
        AccessLog(settings.data_dir / "logs", on_drop=ctx.metrics.access_log_dropped.inc)
        if settings.access_log
        else None
    )
    if access is not None:  # outermost, so it sees the fast path's requests too
        app.access = AccessLogged(app.dispatch, access, ctx.verifier)
    install_docs(app)
    app.add_middleware(BodyLimitMiddleware, settings=settings)  # the fast path has its own
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
    app.include_router(dead_letters_router)
    app.include_router(schedules_router)
    app.include_router(pipelines_router)
    app.include_router(events_router)
    app.include_router(inferrers_router)
    app.include_router(aois_router)
    app.include_router(scenes_router)
    app.include_router(runs_router)
    app.include_router(predictions_router)
    app.include_router(summaries_router)
    app.include_router(artifacts_router)
    app.include_router(log_router)
    app.include_router(catalog_router)
    app.include_router(topics_router)
    app.mount("/ui", create_ui(app, ctx.verifier))

    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        """People who open the server's address land on the dashboard."""
        return RedirectResponse("/ui/", status_code=307)

    if not ctx.collectors:  # one set per registry, however many apps share the context
        for collector in (QueueCollector(ctx), JobsCollector(ctx), PipelineCollector(ctx)):
            ctx.metrics.registry.register(collector)
        ctx.collectors = True
    return app
