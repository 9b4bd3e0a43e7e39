"""``modelyard catalog …``: drive a server's catalog (bulk ingest with a progress bar, search)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress
from rich.table import Table

from modelyard.cli.common import (
    EXIT_REFUSED,
    EXIT_USAGE,
    LISTED,
    KeyOpt,
    UrlOpt,
    call,
    check_stream,
    connect,
    console,
    err,
    problem_line,
    transfer_progress,
)
from modelyard.client import Client

app = typer.Typer(help="The catalog: collections of records and what models inferred about them.")
POLL_SECONDS = 0.5  # how often `switch --wait` asks for progress
INGEST_TIMEOUT = 600.0  # seconds: a bulk ingest answers once every line is written
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@app.command("ingest")
def ingest(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL, CSV or Parquet file")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection to upsert into")],
    fmt: Annotated[
        str | None, typer.Option("--format", help="jsonl, csv or parquet (default: by file suffix)")
    ] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Upsert records from FILE, streamed to the server with a progress bar; prints what each line did
    and lists rejected lines (exit 1 when any line was rejected)."""
    fmt = fmt or SUFFIXES.get(file.suffix.lower())
    if fmt is None:
        err.print(f"cannot tell the format of {file.name}: pass --format jsonl|csv|parquet")
        raise typer.Exit(EXIT_USAGE)
    size = file.stat().st_size
    with connect(url, api_key, timeout=INGEST_TIMEOUT) as client, transfer_progress() as progress:
        task = progress.add_task(f"ingesting {file.name}", total=size)

        def body() -> Iterator[bytes]:
            with file.open("rb") as f:
                while chunk := f.read(256 * 1024):
                    progress.advance(task, len(chunk))
                    yield chunk

        report = client.request(
            "POST",
            f"/api/v1/collections/{collection}/records:bulk",
            params={"format": fmt},
            content=body(),
            headers={"Content-Type": "application/octet-stream"},
        )
    console.print(
        f"{report['lines']} lines: {report['created']} created, {report['updated']} updated, "
        f"{report['unchanged']} unchanged, {report['rejected']} rejected; {report['events']} events"
    )
    for error in report["errors"][:LISTED]:
        err.print(problem_line(error), markup=False, highlight=False)
    if report["rejected"]:
        raise typer.Exit(EXIT_REFUSED)


@app.command("search")
def search(
    collection: Annotated[str, typer.Argument(help="Collection to search")],
    query: Annotated[
        str, typer.Argument(help="The search as JSON (see POST /api/v1/collections/{c}/search)")
    ],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Run a search and print the result as JSON."""
    try:
        body = json.loads(query)
    except json.JSONDecodeError as exc:
        err.print(f"the query is not JSON: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    console.print_json(data=call("POST", f"/api/v1/collections/{collection}/search", url, api_key, json=body))


def _reinference_line(job: dict[str, Any]) -> str:
    text = (
        f"{job['id']}  {job['producer']} {job['from_version'] or '-'} -> {job['version']}  {job['state']}  "
        f"{job['done']}/{job['total']} records"
    )
    return text + (f"  {job['error']}" if job.get("error") else "")


def _watch(client: Client, collection: str, job: dict[str, Any]) -> dict[str, Any]:
    """Poll a re-inference with a progress bar until it stops."""
    path = f"/api/v1/collections/{collection}/reinferences/{job['id']}"
    with Progress(
        "{task.description}",
        BarColumn(),
        "{task.completed}/{task.total} records",
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(f"re-inferring {job['producer']} {job['version']}", total=job["total"])
        while job["state"] == "running":
            progress.update(task, completed=job["done"], total=job["total"])
            time.sleep(POLL_SECONDS)
            job = client.request("GET", path)
    return job


@app.command("switch")
def switch(
    collection: Annotated[str, typer.Argument(help="Collection")],
    producer: Annotated[str, typer.Argument(help="Producer: a model name, or an inferrer (palette…)")],
    version: Annotated[str, typer.Argument(help="The version to make current")],
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until current (or failed)")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Make VERSION of PRODUCER current for COLLECTION: every record is re-inferred in the background and
    search switches once all have it (exit 1 if it failed)."""
    with connect(url, api_key) as client:
        body = {"producer": producer, "version": version}
        job = client.request("POST", f"/api/v1/collections/{collection}/versions", json=body)
        if wait:
            job = _watch(client, collection, job)
    console.print(_reinference_line(job))
    if job["state"] in ("failed", "cancelled"):
        raise typer.Exit(EXIT_REFUSED)


@app.command("rollback")
def rollback(
    collection: Annotated[str, typer.Argument(help="Collection")],
    producer: Annotated[str, typer.Argument(help="Producer whose previous version becomes current")],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Make the previous version of PRODUCER current again (at once)."""
    row = call("POST", f"/api/v1/collections/{collection}/versions/{producer}/rollback", url, api_key)
    console.print(f"{row['producer']}: {row['current']} is current (was {row['previous']})")


@app.command("reinfer-status")
def reinfer_status(
    collection: Annotated[str, typer.Argument(help="Collection")],
    reinference: Annotated[str | None, typer.Argument(help="A re-inference id (default: all)")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Each producer's current version and latest re-inference, or one re-inference's progress."""
    if reinference is not None:
        job = call("GET", f"/api/v1/collections/{collection}/reinferences/{reinference}", url, api_key)
        console.print(_reinference_line(job))
        return
    table = Table("producer", "current", "previous", "latest re-inference")
    for row in call("GET", f"/api/v1/collections/{collection}/versions", url, api_key)["items"]:
        job = row["reinference"]
        latest = _reinference_line(job) if job else "-"
        table.add_row(row["producer"], row["current"], row["previous"] or "-", latest)
    console.print(table)


@app.command("reinfer-cancel")
def reinfer_cancel(
    collection: Annotated[str, typer.Argument(help="Collection")],
    reinference: Annotated[str, typer.Argument(help="The re-inference id")],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Cancel a running re-inference (the current version stays)."""
    path = f"/api/v1/collections/{collection}/reinferences/{reinference}/cancel"
    console.print(_reinference_line(call("POST", path, url, api_key)))


@app.command("export")
def export(
    collection: Annotated[str, typer.Argument(help="Collection")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write (.jsonl or .parquet)")],
    query: Annotated[str | None, typer.Option("--query", help="Export this search's hits (JSON)")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="jsonl or parquet (default: by suffix)")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Write every record of COLLECTION (or every hit of --query) with its inferences to OUTPUT, streamed."""
    fmt = fmt or {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}.get(output.suffix.lower())
    if fmt is None:
        err.print(f"cannot tell the format of {output.name}: pass --format jsonl|parquet")
        raise typer.Exit(EXIT_USAGE)
    body = None
    if query is not None:
        try:
            body = json.loads(query)
        except json.JSONDecodeError as exc:
            err.print(f"the query is not JSON: {exc}")
            raise typer.Exit(EXIT_USAGE) from None
    path = f"/api/v1/collections/{collection}/export"
    written = 0
    part = output.with_name(output.name + ".part")
    with (
        connect(url, api_key) as client,
        client.http.stream(
            "GET" if body is None else "POST", path, params={"format": fmt}, json=body, timeout=None
        ) as resp,
    ):
        check_stream(client, resp)
        with part.open("wb") as f:
            for chunk in resp.iter_bytes():
                written += f.write(chunk)
    part.replace(output)
    console.print(f"wrote {written} bytes to {output}")
