"""``modelyard serve``, ``modelyard worker`` and ``modelyard queues``: run the server and its durable
workers, and look at their queues."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from modelyard.cli.common import KeyOpt, UrlOpt, call, console, err, load_settings


def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (MODELYARD_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (MODELYARD_PORT)")] = None,
    worker: Annotated[bool, typer.Option("--worker/--no-worker", help="Run an in-process worker")] = True,
    demo: Annotated[
        bool, typer.Option(help="Register a small demo model when the registry is empty")
    ] = False,
) -> None:
    """Run the API (and, unless --no-worker, an in-process worker)."""
    import uvicorn

    from modelyard.app import create_app

    # demo goes in before validation: it decides whether a short admin key is accepted
    settings = load_settings(**({"demo": True} if demo else {}))
    updates: dict[str, Any] = {"worker": worker and settings.worker}
    if host:
        updates["host"] = host
    if port:
        updates["port"] = port
    settings = settings.model_copy(update=updates)
    application = create_app(settings)
    base = f"http://{settings.host}:{settings.port}"
    typer.echo(
        f"modelyard on {base}: dashboard at {base}/ui, docs at {base}/docs (data in {settings.data_dir})",
        err=True,
    )
    uvicorn.run(
        application,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        loop="uvloop",
        http="httptools",
        access_log=False,
        server_header=False,
        # X-Forwarded-* are trusted only when an operator says a proxy is in front.
        proxy_headers=settings.proxy_headers,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


def worker(
    queues: Annotated[
        list[str] | None, typer.Option("--queues", "-q", help="Only these queues (repeat or comma-separate)")
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            help="Job chunks this worker runs at once (MODELYARD_WORKER_CONCURRENCY; default: its CPU "
            "count); each worker keeps its own"
        ),
    ] = None,
    executor_id: Annotated[
        str | None, typer.Option(help="Durable executor id (MODELYARD_EXECUTOR_ID); unique per process")
    ] = None,
) -> None:
    """Run durable workers only (no API), until SIGTERM or Ctrl-C. Start any number, on any host that
    reaches the same database and artifact store; a worker that dies has its work recovered by another."""
    import gc
    import signal
    import threading

    from modelyard.app import build_context
    from modelyard.durable import Durable
    from modelyard.logs import setup_logging

    settings = load_settings()
    if concurrency:
        settings = settings.model_copy(update={"worker_concurrency": concurrency})
    setup_logging(settings.log_level, settings.data_dir / "logs" if settings.log_to_file else None)
    ctx = build_context(settings)
    names = [n.strip() for q in queues or [] for n in q.split(",") if n.strip()] or None
    durable = Durable(ctx, executor_id=executor_id, queues=names)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    durable.launch()
    # what starting made lives as long as the worker: kept out of the collector's full passes, which
    # otherwise rescan it every few thousand records a re-inference step stores (a tenth of its time)
    gc.freeze()
    err.print(f"worker {durable.executor_id} running ({', '.join(names or ['all queues'])}); Ctrl-C stops it")
    stop.wait()
    ctx.close()


def queues(url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Show the durable queues, the workers and the dead-letter count."""
    page = call("GET", "/api/v1/queues", url, api_key)
    table = Table("queue", "waiting", "running", "done 1h", "failed 1h", "oldest wait s", "per s")
    for q in page["queues"]:
        oldest = q["oldest_waiting_seconds"]
        table.add_row(
            q["name"],
            str(q["length"]),
            str(q["running"]),
            str(q["completed_last_hour"]),
            str(q["failed_last_hour"]),
            f"{oldest:.1f}" if oldest is not None else "-",
            f"{q['throughput_per_second']:.2f}",
        )
    console.print(table)
    workers = Table("worker", "host", "pid", "state", "heartbeat s", "running", "recovered by")
    for w in page["workers"]:
        workers.add_row(
            w["executor_id"],
            w["host"],
            str(w["pid"]),
            w["state"],
            f"{w['heartbeat_age_seconds']:.1f}",
            str(len(w["current_work"])),
            w["recovered_by"] or "",
        )
    console.print(workers)
    console.print(f"dead letters: {page['dead_letters']}")
