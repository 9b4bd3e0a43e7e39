"""``modelyard keys …``: API keys, created in the database directly or through the API."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from modelyard.cli.common import EXIT_REFUSED, KeyOpt, UrlOpt, connect, err, load_settings

app = typer.Typer(help="Manage API keys.", no_args_is_help=True)


@app.command("create")
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

        settings = load_settings(admin_key=None)  # writing to the database needs no bootstrap key
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
        with connect(url, api_key) as client:
            secret = client.create_key(name, scope)["key"]
    sys.stdout.write(secret + "\n")
