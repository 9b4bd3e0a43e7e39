"""``modelyard catalog …``: drive a server's catalog (bulk ingest with a progress bar, search)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import httpx
import typer

from modelyard.cli.common import (
    EXIT_REFUSED,
    EXIT_USAGE,
    KeyOpt,
    UrlOpt,
    console,
    err,
    fail,
    transfer_progress,
)
from modelyard.client import ApiError, Client

app = typer.Typer(help="The catalog: collections of records and what models inferred about them.")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def _fail(exc: Exception) -> typer.Exit:
    """``common.fail``, with an ingest's refused lines listed by line number (the first 20)."""
    if isinstance(exc, ApiError) and any("line" in p for p in exc.problem.get("errors") or []):
        err.print(f"[red]error[/red] {exc}")
        for problem in (exc.problem.get("errors") or [])[:20]:
            err.print(f"  line {problem.get('line')}: {problem.get('field') or '-'}: {problem.get('detail')}")
        return typer.Exit(EXIT_REFUSED)
    return fail(exc)


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
    try:
        with (
            Client(url, api_key=api_key, timeout=600.0) as client,
            transfer_progress() as progress,
        ):
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
    except (ApiError, httpx.HTTPError) as exc:
        raise _fail(exc) from None
    console.print(
        f"{report['lines']} lines: {report['created']} created, {report['updated']} updated, "
        f"{report['unchanged']} unchanged, {report['rejected']} rejected; {report['events']} events"
    )
    for error in report["errors"][:50]:
        err.print(f"  line {error['line']}: {error['field'] or '-'}: {error['detail']}")
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
    try:
        with Client(url, api_key=api_key) as client:
            result = client.request("POST", f"/api/v1/collections/{collection}/search", json=body)
    except (ApiError, httpx.HTTPError) as exc:
        raise _fail(exc) from None
    console.print_json(data=result)
