"""What every ``modelyard`` command shares: the consoles, the ``--url``/``--api-key`` options, the exit
codes, and one way to call the server and turn its refusals into an exit code.

Exit codes: 0 ok, 1 the server refused (4xx/5xx), 2 bad usage, 3 server unreachable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from modelyard.client import ApiError, Client
from modelyard.errors import validation_problems

if TYPE_CHECKING:
    from modelyard.settings import Settings

console = Console()
err = Console(stderr=True)

UrlOpt = Annotated[str | None, typer.Option("--url", envvar="MODELYARD_URL", help="Server URL")]
KeyOpt = Annotated[str | None, typer.Option("--api-key", envvar="MODELYARD_API_KEY", help="API key")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Cancel pending and running events first")]
EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3
LISTED = 50  # problems of a refusal printed
TIMEOUT = 60.0  # seconds a request may take (longer for uploads and imagery: ``timeout=``)


def problem_line(problem: dict[str, Any]) -> str:
    """One listed problem of a refusal, located the way its kind says: an ingest's line, a JSON path and
    the rule it broke, or a field."""
    detail = problem.get("detail")
    if "line" in problem:
        return f"  line {problem['line']}: {problem.get('field') or '-'}: {detail}"
    if "path" in problem:
        return f"  {problem['path']} ({problem.get('rule')}): {detail}"
    return f"  {problem.get('field') or '(document)'}: {detail}"


def fail(exc: Exception) -> typer.Exit:
    """Print a refusal (with its listed problems, the first ``LISTED``) or an unreachable server; the exit
    to raise."""
    if isinstance(exc, ApiError):
        err.print(f"[red]error[/red] {exc}")
        problems = exc.problem.get("errors") or []
        for problem in problems[:LISTED]:
            err.print(problem_line(problem), markup=False, highlight=False)
        if len(problems) > LISTED:
            err.print(f"  ... and {len(problems) - LISTED} more")
        return typer.Exit(EXIT_REFUSED)
    err.print(f"[red]cannot reach the server[/red]: {exc}")
    return typer.Exit(EXIT_UNREACHABLE)


@contextmanager
def connect(url: str | None, api_key: str | None, *, timeout: float = TIMEOUT) -> Iterator[Client]:
    """A client of the server; a refusal or a connection error inside the block exits the command."""
    try:
        with Client(url, api_key=api_key, timeout=timeout) as client:
            yield client
    except (ApiError, httpx.HTTPError) as exc:
        raise fail(exc) from exc


def call(
    method: str, path: str, url: str | None, api_key: str | None, *, timeout: float = TIMEOUT, **kwargs: Any
) -> Any:
    """One request to the server; its decoded answer, or the command exits."""
    with connect(url, api_key, timeout=timeout) as client:
        return client.request(method, path, **kwargs)


def check_stream(client: Client, resp: httpx.Response) -> None:
    """Raise the server's refusal of a streamed request (read in full first) as an ``ApiError``."""
    if resp.status_code >= 400:
        resp.read()
        client._decode(resp)


def kv(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` options as a dict; values that parse as JSON are decoded."""
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


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment (and ``overrides``); a refused setting exits with usage error."""
    from pydantic import ValidationError

    from modelyard.settings import Settings

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        for problem in validation_problems(exc.errors()):
            where = problem["field"]
            detail = problem["detail"].removeprefix("Value error, ")
            err.print(f"[red]invalid setting[/red] {where + ': ' if where else ''}{detail}")
        raise typer.Exit(EXIT_USAGE) from exc


def transfer_progress() -> Progress:
    """The progress bar of an upload (bytes sent, speed) on stderr, gone when the transfer ends."""
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
    )
