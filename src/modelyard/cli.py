"""The ``modelyard`` command: run the server and workers, and drive a server as a client.

Exit codes: 0 ok, 1 the server refused (4xx/5xx), 2 bad usage, 3 server unreachable.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Column, Table

from modelyard.catalog_cli import app as catalog_app
from modelyard.client import ApiError, Client

app = typer.Typer(help="modelyard: register, serve, batch and pipeline ONNX models.", no_args_is_help=True)
models_app = typer.Typer(help="Manage registered models.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
jobs_app = typer.Typer(help="Batch prediction jobs.", no_args_is_help=True)
pipelines_app = typer.Typer(help="Pipelines: DAGs of stages that events flow through.", no_args_is_help=True)
events_app = typer.Typer(
    help="Pipeline events: one run of a pipeline over one raw data location.", no_args_is_help=True
)
schedules_app = typer.Typer(help="Cron schedules of job types.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(jobs_app, name="jobs")
app.add_typer(pipelines_app, name="pipelines")
app.add_typer(events_app, name="events")
app.add_typer(schedules_app, name="schedules")
app.add_typer(catalog_app, name="catalog")
console = Console()
err = Console(stderr=True)

UrlOpt = Annotated[str | None, typer.Option("--url", envvar="MODELYARD_URL", help="Server URL")]
KeyOpt = Annotated[str | None, typer.Option("--api-key", envvar="MODELYARD_API_KEY", help="API key")]
EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3


def _client(url: str | None, api_key: str | None) -> Client:
    return Client(url, api_key=api_key)


def _fail(exc: Exception) -> typer.Exit:
    if isinstance(exc, ApiError):
        err.print(f"[red]error[/red] {exc}")
        for problem in exc.problem.get("errors") or []:
            err.print(f"  {problem.get('field') or '(document)'}: {problem.get('detail')}")
        return typer.Exit(EXIT_REFUSED)
    err.print(f"[red]cannot reach the server[/red]: {exc}")
    return typer.Exit(EXIT_UNREACHABLE)


def _kv(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            err.print(f"[red]--metadata expects key=value, got {pair!r}[/red]")
            raise typer.Exit(EXIT_USAGE)
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


@app.command()
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
    from modelyard.settings import Settings

    settings = Settings()
    updates: dict[str, Any] = {"worker": worker and settings.worker}
    if host:
        updates["host"] = host
    if port:
        updates["port"] = port
    if demo:
        updates["demo"] = True
    settings = settings.model_copy(update=updates)
    application = create_app(settings)
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


@models_app.command("push")
def models_push(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="ONNX file")],
    name: Annotated[str, typer.Option("--name", "-n", help="Model name")],
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", "-m", help="key=value (JSON values ok)")
    ] = None,
    description: Annotated[str, typer.Option(help="Description for a new model")] = "",
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Upload FILE as the next version of model NAME, with a progress bar."""
    meta = _kv(metadata or [])
    size = file.stat().st_size
    try:
        with (
            _client(url, api_key) as client,
            Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=err,
                transient=True,
            ) as progress,
        ):
            task = progress.add_task(f"uploading {file.name}", total=size)
            version = client.push_model(
                file,
                name=name,
                metadata=meta,
                description=description,
                progress=lambda n: progress.advance(task, n),
            )
    except (ApiError, httpx.HTTPError) as exc:
        raise _fail(exc) from exc
    console.print(
        f"pushed [bold]{name}[/bold] version {version['version']} (sha256 {version['sha256'][:12]})"
    )


@models_app.command("list")
def models_list(
    tag: Annotated[str | None, typer.Option(help="Only models with this tag")] = None,
    output_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List models."""
    try:
        with _client(url, api_key) as client:
            items = client.list_models(**({"tag": tag} if tag else {}))
    except (ApiError, httpx.HTTPError) as exc:
        raise _fail(exc) from exc
    if output_json:
        console.print_json(data=items)
        return
    table = Table("name", "latest", "versions", "tags", "description")
    for m in items:
        table.add_row(
            m["name"],
            str(m["latest_version"] or "-"),
            str(len(m["versions"])),
            ", ".join(m["tags"]),
            m["description"],
        )
    console.print(table)


@models_app.command("show")
def models_show(name: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Show a model, its metadata and the signature of each version."""
    try:
        with _client(url, api_key) as client:
            model = client.get_model(name)
    except (ApiError, httpx.HTTPError) as exc:
        raise _fail(exc) from exc
    console.print(f"[bold]{model['name']}[/bold]  {model['description']}")
    console.print_json(data=model["metadata"])
    table = Table("version", "size", "sha256", "inputs", "outputs")

    def fmt(specs: list[dict[str, Any]]) -> str:
        return "; ".join(f"{s['name']} {s['datatype']}{s['shape']}" for s in specs)

    for v in model["versions"]:
        sig = v["signature"]
        table.add_row(
            str(v["version"]), str(v["size"]), v["sha256"][:12], fmt(sig["inputs"]), fmt(sig["outputs"])
        )
    console.print(table)


@models_app.command("rm")
def models_rm(
    name: str,
    version: Annotated[str | None, typer.Option(help="Delete only this version")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Delete a model (or one version) and its files."""
    try:
        with _client(url, api_key) as client:
            client.delete_model(name, version)
    except (ApiError, httpx.HTTPError) as exc:
        raise _fail(exc) from exc
    console.print(f"deleted {name}" + (f" version {version}" if version else ""))


def load_input(path: Path) -> dict[str, Any]:
    """A predict body from .json (a body, or a list of rows), .csv (rows, header skipped) or .npy (rows)."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {"rows": data}
    if suffix == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        if rows and any(not _is_number(c) for c in rows[0]):
            rows = rows[1:]
        return {"rows": [[float(c) for c in r] for r in rows if r]}
    if suffix == ".npy":
        return {"rows": np.load(path, allow_pickle=False).tolist()}
    err.print(f"[red]--input must be .json, .csv or .npy, not {suffix or 'no suffix'}[/red]")
    raise typer.Exit(EXIT_USAGE)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@app.command()
def predict(
    name: str,
    input_file: Annotated[
        Path, typer.Option("--input", "-i", exists=True, dir_okay=False, help=".json, .csv or .npy")
    ],
    version: Annotated[str, typer.Option(help="Version number or latest")] = "latest",
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Predict with model NAME on the rows or inputs in a file; prints JSON."""
    body = load_input(input_file)
    try:
        with _client(url, api_key) as client:
            result = client.predict(name, inputs=body.get("inputs"), rows=body.get("rows"), version=version)
    except (ApiError, httpx.HTTPError) as exc:
        raise _fail(exc) from exc
    sys.stdout.write(json.dumps(result) + "\n")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", "-n", help="What the key is for")],
    scope: Annotated[list[str], typer.Option("--scope", "-s", help="read, predict, write or admin")],
    local: Annotated[
        bool, typer.Option(help="Write straight to the database of MODELYARD_DATA_DIR/DATABASE_URL")
    ] = True,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Create an API key and print its secret once (locally in the database, or --no-local via the API)."""
    if local:
        from modelyard.auth import create_key
        from modelyard.db import make_engine, make_sessionmaker, unit_of_work
        from modelyard.migrate import upgrade
        from modelyard.settings import Settings

        settings = Settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url())
        upgrade(engine)
        try:
            with unit_of_work(make_sessionmaker(engine)) as session:
                _, secret = create_key(session=session, name=name, scopes=scope)
        except Exception as exc:
            err.print(f"[red]error[/red] {exc}")
            raise typer.Exit(EXIT_REFUSED) from exc
    else:
        try:
            with _client(url, api_key) as client:
                secret = client.create_key(name, scope)["key"]
        except (ApiError, httpx.HTTPError) as exc:
            raise _fail(exc) from exc
    sys.stdout.write(secret + "\n")


@app.command()
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
    import signal
    import threading

    from modelyard.app import build_context
    from modelyard.durable import Durable, close_clients
    from modelyard.logs import setup_logging
    from modelyard.settings import Settings

    settings = Settings()
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
    err.print(f"worker {durable.executor_id} running ({', '.join(names or ['all queues'])}); Ctrl-C stops it")
    stop.wait()
    durable.shutdown()
    close_clients(ctx)
    ctx.inference.close()
    ctx.engine.dispose()


def _job_line(job: dict[str, Any]) -> str:
    p = job["progress"]
    total = p["total_rows"] if p["total_rows"] is not None else "?"
    text = f"{job['id']}  {job['state']}  {p['rows_done']}/{total} rows"
    if p["rows_failed"]:
        text += f", {p['rows_failed']} skipped"
    if job.get("error"):
        text += f"  [red]{job['error']['detail']}[/red]"
    return text


def _follow(client: Client, job_id: str) -> dict[str, Any]:
    """Show a live progress bar from the job's event stream; returns the job once it is final."""
    job: dict[str, Any] = client.request("GET", f"/api/v1/jobs/{job_id}")
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        "{task.completed}/{task.total} rows",
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(f"job {job_id[:8]} {job['state']}", total=None)
        with client.http.stream("GET", f"/api/v1/jobs/{job_id}/events", timeout=None) as resp:
            if resp.status_code >= 400:
                resp.read()
                client._decode(resp)
            for line in resp.iter_lines():
                if not line.startswith("data:"):
                    continue
                job = json.loads(line[5:])
                p = job["progress"]
                progress.update(
                    task,
                    description=f"job {job_id[:8]} {job['state']}",
                    total=p["total_rows"],
                    completed=p["rows_done"] + p["rows_failed"],
                )
    return job


def _finish(job: dict[str, Any]) -> None:
    console.print(_job_line(job))
    if job["state"] != "succeeded":
        raise typer.Exit(EXIT_REFUSED)


def _upload_chunks(path: Path, size: int = 1024 * 1024) -> Any:
    with path.open("rb") as f:
        while chunk := f.read(size):
            yield chunk


@jobs_app.command("submit")
def jobs_submit(
    model: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV, JSONL, Parquet or .npy")],
    version: Annotated[str, typer.Option(help="Version number or latest")] = "latest",
    on_error: Annotated[str, typer.Option(help="fail, or skip malformed rows")] = "fail",
    output_format: Annotated[str | None, typer.Option(help="parquet, csv or jsonl")] = None,
    input_format: Annotated[
        str | None, typer.Option("--format", help="Input format if the suffix does not say")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the job with a progress bar")] = True,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Submit FILE as a batch prediction with MODEL and follow it with a live progress bar."""
    params = {"model": model, "version": version, "on_error": on_error, "filename": file.name}
    params |= {k: v for k, v in {"output_format": output_format, "format": input_format}.items() if v}
    try:
        with _client(url, api_key) as client:
            job = client.request(
                "POST",
                "/api/v1/jobs/upload",
                params=params,
                content=_upload_chunks(file),
                headers={"Content-Type": "application/octet-stream"},
            )
            err.print(f"submitted job {job['id']}")
            if not wait:
                sys.stdout.write(job["id"] + "\n")
                return
            job = _follow(client, job["id"])
    except (ApiError, httpx.HTTPError) as exc:
        raise _fail(exc) from exc
    _finish(job)


@jobs_app.command("watch")
def jobs_watch(job_id: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Follow a job with a live progress bar until it finishes."""
    try:
        with _client(url, api_key) as client:
            job = _follow(client, job_id)
    except (ApiError, httpx.HTTPError) as exc:
        raise _fail(exc) from exc
    _finish(job)


@jobs_app.command("list")
def jobs_list(
    model: Annotated[str | None, typer.Option(help="Only jobs of this model")] = None,
    state: Annotated[list[str] | None, typer.Option(help="Only jobs in this state (repeat)")] = None,
    limit: Annotated[int, typer.Option(help="How many")] = 20,
    output_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List jobs, newest first."""
    params: dict[str, Any] = {"limit": limit, **({"model": model} if model else {})}
    if state:
        params["state"] = state
    try:
        with _client(url, api_key) as client:
            page = client.request("GET", "/api/v1/jobs", params=params)
    except (ApiError, httpx.HTTPError) as exc:
        raise _fail(exc) from exc
    if output_json:
        console.print_json(data=page)
        return
    table = Table("model", "state", "rows", "failed", "created")
    table.columns.insert(0, Column("id", no_wrap=True, min_width=32))  # ids are what the other commands take
    for j in page["items"]:
        p = j["progress"]
        rows = f"{p['rows_done']}/{p['total_rows'] if p['total_rows'] is not None else '?'}"
        created = j["created_at"][:19]
        table.add_row(
            j["id"], f"{j['model']}:{j['version']}", j["state"], rows, str(p["rows_failed"]), created
        )
    console.print(table)


def _job_action(method: str, path: str, url: str | None, api_key: str | None) -> Any:
    try:
        with _client(url, api_key) as client:
            return client.request(method, path)
    except (ApiError, httpx.HTTPError) as exc:
        raise _fail(exc) from exc


@jobs_app.command("cancel")
def jobs_cancel(job_id: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Cancel a queued or running job."""
    console.print(_job_line(_job_action("POST", f"/api/v1/jobs/{job_id}/cancel", url, api_key)))


@jobs_app.command("retry")
def jobs_retry(job_id: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Run again the chunks of a failed or cancelled job that did not succeed."""
    console.print(_job_line(_job_action("POST", f"/api/v1/jobs/{job_id}/retry", url, api_key)))


@jobs_app.command("rm")
def jobs_rm(job_id: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Delete a job and its outputs."""
    _job_action("DELETE", f"/api/v1/jobs/{job_id}", url, api_key)
    console.print(f"deleted job {job_id}")


@jobs_app.command("results")
def jobs_results(
    job_id: str,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="File to write; its suffix picks the format")
    ],
    results_format: Annotated[str | None, typer.Option("--format", help="parquet, csv or jsonl")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Download a succeeded job's results, streamed to a file."""
    fmt = results_format or {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl"}.get(
        output.suffix.lower()
    )
    tmp = output.with_name(output.name + ".part")
    try:
        with (
            _client(url, api_key) as client,
            client.http.stream(
                "GET", f"/api/v1/jobs/{job_id}/results", params={"format": fmt} if fmt else {}
            ) as resp,
        ):
            if resp.status_code >= 400:
                resp.read()
                client._decode(resp)
            with tmp.open("wb") as f:
                for chunk in resp.iter_bytes():
                    f.write(chunk)
        tmp.replace(output)
    except (ApiError, httpx.HTTPError) as exc:
        tmp.unlink(missing_ok=True)
        raise _fail(exc) from exc
    console.print(f"wrote {output} ({output.stat().st_size} bytes)")


@app.command()
def queues(url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Show the durable queues, the workers and the dead-letter count."""
    page = _job_action("GET", "/api/v1/queues", url, api_key)
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


@schedules_app.command("list")
def schedules_list(url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """List schedules."""
    page = _job_action("GET", "/api/v1/schedules", url, api_key)
    table = Table("name", "cron", "job type", "paused", "next fire", "params")
    for s in page["items"]:
        table.add_row(
            s["name"],
            s["cron"],
            s["job_type"],
            str(s["paused"]),
            str(s["next_fire_at"])[:19],
            json.dumps({k: v for k, v in s["params"].items() if v is not None}),
        )
    console.print(table)


@schedules_app.command("create")
def schedules_create(
    name: str,
    cron: Annotated[str, typer.Option(help="Cron expression, e.g. '0 2 * * *'")],
    job_type: Annotated[str, typer.Option(help="A registered job type")] = "batch_predict",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="key=value (JSON values ok)")
    ] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA time zone of the cron expression")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Create a schedule that submits JOB_TYPE with the given parameters once per cron slot."""
    body = {
        "name": name,
        "cron": cron,
        "job_type": job_type,
        "params": _kv(param or []),
        "timezone": timezone,
    }
    try:
        with _client(url, api_key) as client:
            found = client.request("POST", "/api/v1/schedules", json=body)
    except (ApiError, httpx.HTTPError) as exc:
        raise _fail(exc) from exc
    console.print(f"schedule {found['name']} next fires at {found['next_fire_at']}")


@schedules_app.command("rm")
def schedules_rm(name: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Delete a schedule."""
    _job_action("DELETE", f"/api/v1/schedules/{name}", url, api_key)
    console.print(f"deleted schedule {name}")


@schedules_app.command("pause")
def schedules_pause(name: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Pause a schedule."""
    _job_action("POST", f"/api/v1/schedules/{name}/pause", url, api_key)
    console.print(f"paused {name}")


@schedules_app.command("resume")
def schedules_resume(name: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Resume a paused schedule."""
    _job_action("POST", f"/api/v1/schedules/{name}/resume", url, api_key)
    console.print(f"resumed {name}")


def _call(method: str, path: str, url: str | None, api_key: str | None, **kwargs: Any) -> Any:
    try:
        with _client(url, api_key) as client:
            return client.request(method, path, **kwargs)
    except (ApiError, httpx.HTTPError) as exc:
        raise _fail(exc) from exc


def _read_events(path: Path) -> list[dict[str, Any]]:
    """Events from .jsonl (one object a line), .json (a list) or .csv (columns name, source)."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if suffix == ".json":
        data = json.loads(path.read_text())
        return list(data["events"] if isinstance(data, dict) else data)
    if suffix == ".csv":
        with path.open(newline="") as f:
            return [{"name": r["name"], "source": r["source"]} for r in csv.DictReader(f)]
    err.print(f"[red]--file must be .jsonl, .json or .csv, not {suffix or 'no suffix'}[/red]")
    raise typer.Exit(EXIT_USAGE)


@pipelines_app.command("apply")
def pipelines_apply(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Pipeline spec, YAML or JSON")],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Create a pipeline or a new version of it from FILE; every problem of the spec is listed."""
    found = _call(
        "POST",
        "/api/v1/pipelines",
        url,
        api_key,
        content=file.read_bytes(),
        headers={"Content-Type": "application/yaml"},
    )
    what = "applied" if found["changed"] else "unchanged:"
    console.print(
        f"{what} [bold]{found['name']}[/bold] version {found['version']} ({len(found['stages'])} stages)"
    )


@pipelines_app.command("list")
def pipelines_list(url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """List pipelines."""
    table = Table("name", "version", "stages", "archive after s", "description")
    for p in _call("GET", "/api/v1/pipelines", url, api_key)["items"]:
        ttl = p["archive_after_seconds"]
        table.add_row(
            p["name"],
            str(p["version"]),
            ", ".join(s["name"] for s in p["stages"]),
            str(ttl or "-"),
            p["description"],
        )
    console.print(table)


@pipelines_app.command("show")
def pipelines_show(name: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Show a pipeline's stages: type, inputs, data types and limits."""
    p = _call("GET", f"/api/v1/pipelines/{name}", url, api_key)
    console.print(
        f"[bold]{p['name']}[/bold] version {p['version']}, raw data: {p['raw_type']}  {p['description']}"
    )
    table = Table("stage", "type", "inputs", "reads", "makes", "concurrency", "batch", "attempts")
    for s in p["stages"]:
        table.add_row(
            s["name"],
            s["type"],
            ", ".join(s["inputs"]),
            s["accepts"],
            s["produces"],
            str(s["concurrency"]),
            str(s["batch_size"]),
            str(s["max_attempts"]),
        )
    console.print(table)


@pipelines_app.command("submit")
def pipelines_submit(
    pipeline: str,
    name: Annotated[str | None, typer.Option(help="Event name (unique per pipeline)")] = None,
    source: Annotated[str | None, typer.Option(help="Data-dir path, artifact://key or http(s) URL")] = None,
    file: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Events: .jsonl, .json, .csv")
    ] = None,
    stage: Annotated[
        list[str] | None, typer.Option("--stage", "-s", help="Only these stages (and their inputs)")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="key=value (JSON values ok)")
    ] = None,
    chunk: Annotated[int, typer.Option(help="Events per request")] = 1000,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Submit one event (--name, --source) or many (--file), in chunks, with a progress bar."""
    if file is not None:
        events = _read_events(file)
    elif name and source:
        events = [{"name": name, "source": source}]
    else:
        err.print("[red]give --name and --source, or --file[/red]")
        raise typer.Exit(EXIT_USAGE)
    extra: dict[str, Any] = {"params": _kv(param or [])} if param else {}
    if stage:
        extra["stages"] = stage
    created = existing = 0
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        "{task.completed}/{task.total}",
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(f"submitting to {pipeline}", total=len(events))
        for i in range(0, len(events), chunk):
            part = [{**extra, **e} for e in events[i : i + chunk]]
            got = _call("POST", f"/api/v1/pipelines/{pipeline}/events", url, api_key, json={"events": part})
            created, existing = created + got["created"], existing + got["existing"]
            progress.advance(task, len(part))
    console.print(f"{created} events submitted, {existing} already existed")


ForceOpt = Annotated[bool, typer.Option("--force", help="Cancel pending and running events first")]


@pipelines_app.command("rm")
def pipelines_rm(name: str, force: ForceOpt = False, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Delete a pipeline with its events, stage runs and stored outputs (refused while events are
    pending or running, unless --force)."""
    try:
        with _client(url, api_key) as client:
            client.delete_pipeline(name, force=force)
    except (ApiError, httpx.HTTPError) as exc:
        raise _fail(exc) from exc
    console.print(f"deleted pipeline {name}")


@pipelines_app.command("events")
def pipelines_events(
    pipeline: str,
    state: Annotated[str | None, typer.Option(help="pending, running, complete, failed or cancelled")] = None,
    limit: Annotated[int, typer.Option(help="How many (newest first)")] = 50,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List a pipeline's events with their state and the stage each is at."""
    params: dict[str, Any] = {"limit": limit, **({"state": state} if state else {})}
    page = _call("GET", f"/api/v1/pipelines/{pipeline}/events", url, api_key, params=params)
    table = Table("id", "name", "state", "at stage", "error")
    for e in page["items"]:
        table.add_row(e["id"], e["name"], e["state"], e["stage"] or "-", e["error"] or "")
    console.print(table)
    console.print(f"{page['total']} events")


def _queue_table(snap: dict[str, Any]) -> Table:
    table = Table(
        "stage",
        "pending",
        "ready",
        "running",
        "done",
        "failed",
        "skipped",
        "oldest wait s",
        "per s",
        title=f"{snap['pipeline']}: " + ", ".join(f"{k} {v}" for k, v in snap["events"].items()),
    )
    for s in snap["stages"]:
        oldest = s["oldest_ready_seconds"]
        table.add_row(
            s["stage"],
            *(str(s[k]) for k in ("pending", "ready", "running", "done", "failed", "skipped")),
            f"{oldest:.1f}" if oldest is not None else "-",
            f"{s['throughput_per_s']:.2f}",
        )
    return table


@pipelines_app.command("queues")
def pipelines_queues(
    pipeline: str,
    watch: Annotated[bool, typer.Option(help="Keep updating (server-sent events) until Ctrl-C")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """The queue watcher: per stage waiting, running, done, failed, oldest wait and throughput."""
    if not watch:
        console.print(_queue_table(_call("GET", f"/api/v1/pipelines/{pipeline}/queues", url, api_key)))
        return
    from rich.live import Live

    try:
        with (
            _client(url, api_key) as client,
            Live(console=console) as live,
            client.http.stream("GET", f"/api/v1/pipelines/{pipeline}/queues/stream", timeout=None) as resp,
        ):
            if resp.status_code >= 400:
                resp.read()
                client._decode(resp)
            for line in resp.iter_lines():
                if line.startswith("data:"):
                    live.update(_queue_table(json.loads(line[5:])))
    except (ApiError, httpx.HTTPError) as exc:
        raise _fail(exc) from exc


@pipelines_app.command("errors")
def pipelines_errors(
    pipeline: str,
    stage: Annotated[str | None, typer.Option(help="Only this stage")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """The stage watcher: failures per stage grouped by error type, with example events."""
    params = {"stage": stage} if stage else {}
    report = _call("GET", f"/api/v1/pipelines/{pipeline}/errors", url, api_key, params=params)
    table = Table("stage", "error", "count", "example", "events")
    for g in report["groups"]:
        table.add_row(
            g["stage"], g["error_type"], str(g["count"]), (g["example"] or "")[:80], ", ".join(g["events"])
        )
    console.print(table)


@events_app.command("show")
def events_show(event_id: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Show an event and every stage run."""
    e = _call("GET", f"/api/v1/events/{event_id}", url, api_key)
    at = f" at {e['stage']}" if e["stage"] else ""
    console.print(
        f"[bold]{e['name']}[/bold] ({e['pipeline']} v{e['version']}) {e['state']}{at}  {e['source']}"
    )
    if e["error"]:
        console.print(f"[red]{e['error_stage']}: {e['error']['detail']}[/red]")
    table = Table("stage", "state", "attempts", "cached", "ms", "output", "error")
    for s in e["stages"]:
        out = s["output"]
        table.add_row(
            s["stage"],
            s["state"],
            str(s["attempts"]),
            "yes" if s["cached"] else "",
            f"{s['duration_ms']:.1f}" if s["duration_ms"] is not None else "-",
            f"{out['kind']} {out['size']} B" if out else "",
            (s["error"] or {}).get("detail") or "",
        )
    console.print(table)


@events_app.command("logs")
def events_logs(
    event_id: str,
    stage: Annotated[str, typer.Option("--stage", "-s", help="The stage whose logs to print")],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Print what a stage printed and logged for the event, and its traceback if it failed."""
    text = _call("GET", f"/api/v1/events/{event_id}/stages/{stage}/logs", url, api_key)
    sys.stdout.write((text or b"").decode() if isinstance(text, bytes) else str(text or ""))


@events_app.command("output")
def events_output(
    event_id: str,
    stage: Annotated[str, typer.Option("--stage", "-s", help="The stage whose output to fetch")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default stdout)")
    ] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Fetch a stage's output for the event (JSON, .npy, image or bytes)."""
    data = _call("GET", f"/api/v1/events/{event_id}/stages/{stage}/output", url, api_key)
    body = data if isinstance(data, bytes) else json.dumps(data).encode() + b"\n"
    if output is None:
        sys.stdout.buffer.write(body)
    else:
        output.write_bytes(body)
        console.print(f"wrote {output} ({len(body)} bytes)")


@events_app.command("rerun")
def events_rerun(
    event_id: str,
    stage: Annotated[str | None, typer.Option(help="Only this stage and what depends on it")] = None,
    force: Annotated[bool, typer.Option(help="Run it even if the cache has its output")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Run an event again (unchanged inputs come from the content-hash cache unless --force)."""
    e = _call("POST", f"/api/v1/events/{event_id}/rerun", url, api_key, json={"stage": stage, "force": force})
    console.print(f"{e['name']} {e['state']} (run {e['runs']})")


@events_app.command("cancel")
def events_cancel(event_id: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Cancel an event."""
    e = _call("POST", f"/api/v1/events/{event_id}/cancel", url, api_key)
    console.print(f"{e['name']} {e['state']}")


@events_app.command("rm")
def events_rm(event_id: str, force: ForceOpt = False, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Delete an event with its stage runs and stored outputs (refused while it is pending or running,
    unless --force)."""
    try:
        with _client(url, api_key) as client:
            client.delete_event(event_id, force=force)
    except (ApiError, httpx.HTTPError) as exc:
        raise _fail(exc) from exc
    console.print(f"deleted event {event_id}")


def main() -> None:
    """Entry point of the ``modelyard`` script."""
    app()
