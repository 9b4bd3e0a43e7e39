"""``modelyard jobs …``: batch predictions submitted, followed with a progress bar, listed and downloaded."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TimeRemainingColumn
from rich.table import Column, Table

from modelyard.cli.common import EXIT_REFUSED, KeyOpt, UrlOpt, call, check_stream, connect, console, err
from modelyard.client import Client

app = typer.Typer(help="Batch prediction jobs.", no_args_is_help=True)


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
            check_stream(client, resp)
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


def _upload_chunks(path: Path, size: int = 1024 * 1024) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(size):
            yield chunk


@app.command("submit")
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
    with connect(url, api_key) as client:
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
    _finish(job)


@app.command("watch")
def jobs_watch(job_id: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Follow a job with a live progress bar until it finishes."""
    with connect(url, api_key) as client:
        job = _follow(client, job_id)
    _finish(job)


@app.command("list")
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
    page = call("GET", "/api/v1/jobs", url, api_key, params=params)
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


@app.command("cancel")
def jobs_cancel(job_id: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Cancel a queued or running job."""
    console.print(_job_line(call("POST", f"/api/v1/jobs/{job_id}/cancel", url, api_key)))


@app.command("retry")
def jobs_retry(job_id: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Run again the chunks of a failed or cancelled job that did not succeed."""
    console.print(_job_line(call("POST", f"/api/v1/jobs/{job_id}/retry", url, api_key)))


@app.command("rm")
def jobs_rm(job_id: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Delete a job and its outputs."""
    call("DELETE", f"/api/v1/jobs/{job_id}", url, api_key)
    console.print(f"deleted job {job_id}")


@app.command("results")
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
            connect(url, api_key) as client,
            client.http.stream(
                "GET", f"/api/v1/jobs/{job_id}/results", params={"format": fmt} if fmt else {}
            ) as resp,
        ):
            check_stream(client, resp)
            with tmp.open("wb") as f:
                for chunk in resp.iter_bytes():
                    f.write(chunk)
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)  # only still there if the download failed
    console.print(f"wrote {output} ({output.stat().st_size} bytes)")
