"""``modelyard topics …``: a model's topic, its subscriptions (webhook, NATS, MQTT), their delivery logs,
and its events as they happen."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from modelyard.cli.common import EXIT_USAGE, KeyOpt, UrlOpt, call, check_stream, connect, console, err

app = typer.Typer(
    help="Notifications: every model has a topic; subscribe webhooks, NATS subjects or MQTT topics to it.",
    no_args_is_help=True,
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the JSON answer")]


def _subs(model: str) -> str:
    return f"/api/v1/topics/{model}/subscriptions"


@app.command("show")
def topics_show(model: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Show a model's topic: its event types and how many subscriptions it has."""
    topic = call("GET", f"/api/v1/topics/{model}", url, api_key)
    console.print(f"[bold]{topic['name']}[/bold]  {topic['subscriptions']} subscription(s)")
    console.print("events: " + ", ".join(topic["events"]))


@app.command("subscribe")
def topics_subscribe(
    model: str,
    webhook: Annotated[str | None, typer.Option("--webhook", help="POST each event to this URL")] = None,
    nats: Annotated[
        str | None, typer.Option("--nats", help="Publish each event on this NATS subject")
    ] = None,
    mqtt: Annotated[str | None, typer.Option("--mqtt", help="Publish each event on this MQTT topic")] = None,
    event: Annotated[
        list[str] | None, typer.Option("--event", "-e", help="Only this event type (repeat); all by default")
    ] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Subscribe to a model's topic; a webhook's signing secret is printed once: store it."""
    given = [(k, v) for k, v in (("webhook", webhook), ("nats", nats), ("mqtt", mqtt)) if v]
    if len(given) != 1:
        err.print("[red]give exactly one of --webhook URL, --nats SUBJECT, --mqtt TOPIC[/red]")
        raise typer.Exit(EXIT_USAGE)
    kind, where = given[0]
    field = {"webhook": "url", "nats": "subject", "mqtt": "topic"}[kind]
    sub = call("POST", _subs(model), url, api_key, json={"kind": kind, field: where, "events": event or []})
    if as_json:
        print(json.dumps(sub))
        return
    console.print(f"{sub['id']}  {kind} {where}")
    if sub.get("secret"):
        console.print(f"secret {sub['secret']}  (shown once: verify X-Modelyard-Signature with it)")


@app.command("subscriptions")
def topics_subscriptions(
    model: str, url: UrlOpt = None, api_key: KeyOpt = None, as_json: JsonOpt = False
) -> None:
    """List a topic's subscriptions with their deliveries by state."""
    listed = call("GET", _subs(model), url, api_key)
    if as_json:
        print(json.dumps(listed))
        return
    table = Table("id", "kind", "to", "events", "delivered", "pending", "dead")
    for s in listed["items"]:
        counts = s["deliveries"]
        table.add_row(
            s["id"],
            s["kind"],
            s["url"] or s["subject"] or s["topic"],
            ",".join(s["events"]) or "all",
            str(counts.get("delivered", 0)),
            str(counts.get("pending", 0) + counts.get("sending", 0)),
            str(counts.get("dead", 0)),
        )
    console.print(table)


@app.command("unsubscribe")
def topics_unsubscribe(model: str, subscription_id: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Delete a subscription (and its delivery log): nothing more is sent to it."""
    call("DELETE", f"{_subs(model)}/{subscription_id}", url, api_key)
    console.print(f"unsubscribed {subscription_id}")


@app.command("rotate-secret")
def topics_rotate_secret(
    model: str, subscription_id: str, url: UrlOpt = None, api_key: KeyOpt = None
) -> None:
    """Give a webhook a new signing secret (printed once); the old one stops signing at once."""
    rotated = call("POST", f"{_subs(model)}/{subscription_id}:rotate-secret", url, api_key)
    console.print(f"secret {rotated['secret']}  (shown once)")


@app.command("deliveries")
def topics_deliveries(
    model: str,
    subscription_id: str,
    state: Annotated[str | None, typer.Option("--state", help="pending, sending, delivered or dead")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A subscription's delivery log, newest event first."""
    params: dict[str, Any] = {"state": state} if state else {}
    listed = call("GET", f"{_subs(model)}/{subscription_id}/deliveries", url, api_key, params=params)
    if as_json:
        print(json.dumps(listed))
        return
    table = Table("id", "event", "type", "state", "attempts", "code", "error")
    for d in listed["items"]:
        code = str(d["response_code"]) if d["response_code"] is not None else ""
        table.add_row(
            d["id"],
            str(d["event_id"]),
            d["event_type"],
            d["state"],
            str(d["attempts"]),
            code,
            d["error"] or "",
        )
    console.print(table)


@app.command("resend")
def topics_resend(
    model: str, subscription_id: str, delivery_id: str, url: UrlOpt = None, api_key: KeyOpt = None
) -> None:
    """Send a dead delivery again."""
    call("POST", f"{_subs(model)}/{subscription_id}/deliveries/{delivery_id}:resend", url, api_key)
    console.print(f"queued {delivery_id} again")


@app.command("events")
def topics_events(model: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Print the topic's events as they happen, one JSON line each (Ctrl-C stops)."""
    with (
        connect(url, api_key) as client,
        client.http.stream("GET", f"/api/v1/topics/{model}/events", timeout=None) as resp,
    ):
        check_stream(client, resp)
        for line in resp.iter_lines():
            if line.startswith("data:"):
                sys.stdout.write(line[5:].strip() + "\n")
                sys.stdout.flush()
