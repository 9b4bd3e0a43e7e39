"""``modelyard sync DIR --pipeline P``: move the files a scanner writes into DIR to the artifact store
(large ones in checksummed parts, resumable) and submit each as an event of pipeline P. ``--once`` makes
one pass; without it the folder is watched until Ctrl-C. A progress bar shows files and bytes.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from modelyard.cli.common import KeyOpt, UrlOpt, connect, console, transfer_progress
from modelyard.sync.folder import scan
from modelyard.sync.run import Report, Sync, sync_once, watch
from modelyard.sync.upload import DEFAULT_PART


def _print(report: Report) -> None:
    console.print(
        f"{len(report.stored)} stored, {len(report.skipped)} already there, "
        f"{len(report.submitted)} events submitted, {report.bytes_sent} bytes sent"
    )
    if report.unsettled:
        console.print(f"still being written (next run): {', '.join(report.unsettled)}")


def sync(
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Folder to move files from")],
    pipeline: Annotated[str, typer.Option("--pipeline", "-p", help="Pipeline whose events the files become")],
    once: Annotated[
        bool, typer.Option("--once", help="One pass, then exit (default: keep watching)")
    ] = False,
    prefix: Annotated[str, typer.Option("--prefix", help="Key prefix in the artifact store")] = "sync/",
    settle: Annotated[float, typer.Option("--settle", help="Seconds a file must stay unchanged")] = 2.0,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between scans (watching)")] = 2.0,
    part_mib: Annotated[int, typer.Option("--part-mib", min=1, max=64, help="Upload part size, MiB")] = (
        DEFAULT_PART // 2**20
    ),
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Store FOLDER's new or changed files and submit each as an event of PIPELINE."""
    with connect(url, api_key) as client, transfer_progress() as bar:
        task = bar.add_task("sync", total=None)

        def on_file(rel: str, i: int, n: int) -> None:
            bar.update(task, description=f"file {i}/{n} {rel}")

        job = Sync(client, folder, pipeline, prefix=prefix, part_size=part_mib * 2**20)
        job.on_file, job.on_bytes = on_file, lambda n: bar.advance(task, n)
        if once:
            bar.update(task, total=sum(s.size for s in scan(folder).values()))
            report = sync_once(job, settle)
            bar.stop()
            _print(report)
            return
        console.print(f"watching {folder} (Ctrl-C to stop)")
        with contextlib.suppress(KeyboardInterrupt):
            watch(job, settle, interval, on_report=lambda r: bar.console.print(_summary(r)))


def _summary(report: Report) -> str:
    return f"{len(report.stored)} stored, {len(report.submitted)} submitted: {', '.join(report.stored)}"
