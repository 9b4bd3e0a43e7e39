"""The ``modelyard`` command: run the server and workers, and drive a server as a client.

One module per part (``models``, ``keys``, ``jobs``, ``schedules``, ``pipelines``, ``events``,
``artifacts``, ``catalog``, ``topics``, ``sync``, ``aois``, ``scenes``, ``runs``, and
``server`` for serve/worker/queues); ``common`` holds the options, exit codes and the one way to call
the server. Exit codes: 0 ok, 1 the server refused (4xx/5xx), 2 bad usage, 3 server unreachable.
"""

from __future__ import annotations

import typer

from modelyard.cli import (
    aois,
    artifacts,
    catalog,
    events,
    jobs,
    keys,
    models,
    pipelines,
    runs,
    scenes,
    schedules,
    server,
    sync,
    topics,
)

app = typer.Typer(help="modelyard: register, serve, batch and pipeline ONNX models.", no_args_is_help=True)
app.command()(server.serve)
app.command()(models.predict)
app.command()(server.worker)
app.command()(server.queues)
app.command()(sync.sync)
app.add_typer(models.app, name="models")
app.add_typer(keys.app, name="keys")
app.add_typer(jobs.app, name="jobs")
app.add_typer(pipelines.app, name="pipelines")
app.add_typer(events.app, name="events")
app.add_typer(schedules.app, name="schedules")
app.add_typer(artifacts.app, name="artifacts")
app.add_typer(catalog.app, name="catalog")
app.add_typer(topics.app, name="topics")
app.add_typer(aois.app, name="aois")
app.add_typer(scenes.app, name="scenes")
app.add_typer(runs.app, name="runs")


def main() -> None:
    """Entry point of the ``modelyard`` script."""
    app()
