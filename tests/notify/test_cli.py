"""The ``modelyard topics`` commands against a live server with its worker and a local receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from modelyard.app import create_app
from modelyard.cli import app
from modelyard.context import AppContext
from modelyard.registry import service as registry
from modelyard.registry.schemas import ModelCreate
from modelyard.settings import Settings
from tests.conftest import ADMIN_KEY, LiveServer
from tests.notify.conftest import Receiver, emit, eventually, sqlite_only

pytestmark = sqlite_only
runner = CliRunner()


@pytest.fixture
def live(notify_settings: Settings) -> Iterator[tuple[dict[str, str], AppContext]]:
    application = create_app(notify_settings.model_copy(update={"worker": True}))
    with LiveServer(application) as server:
        env = {"MODELYARD_URL": server.url, "MODELYARD_API_KEY": ADMIN_KEY}
        with application.state.ctx.uow() as session:
            registry.create_model(session=session, data=ModelCreate(name="roofs"))
        yield env, application.state.ctx


def test_subscribe_list_deliveries_rotate_and_unsubscribe(
    live: tuple[dict[str, str], AppContext], receiver: Receiver
) -> None:
    env, ctx = live
    made = runner.invoke(
        app, ["topics", "subscribe", "roofs", "--webhook", receiver.url, "-e", "run.failed"], env=env
    )
    assert made.exit_code == 0, made.output
    sub_id = made.stdout.split()[0]
    assert "secret whsec_" in made.stdout
    emit(ctx, "geo.run.queued", "roofs", run_id="r1")  # filtered out
    failed = emit(ctx, "geo.run.failed", "roofs", run_id="r1")
    eventually(lambda: len(receiver.received()) == 1)

    def delivered() -> list[dict[str, object]] | None:
        out = runner.invoke(app, ["topics", "deliveries", "roofs", sub_id, "--json"], env=env)
        items: list[dict[str, object]] = json.loads(out.stdout)["items"]
        return items if items and items[0]["state"] == "delivered" else None

    [row] = eventually(delivered)
    assert (row["event_id"], row["event_type"], row["response_code"]) == (failed, "run.failed", 200)
    listed = runner.invoke(app, ["topics", "subscriptions", "roofs", "--json"], env=env)
    assert json.loads(listed.stdout)["items"][0]["deliveries"] == {"delivered": 1}
    rotated = runner.invoke(app, ["topics", "rotate-secret", "roofs", sub_id], env=env)
    assert rotated.exit_code == 0 and "secret whsec_" in rotated.stdout
    assert runner.invoke(app, ["topics", "unsubscribe", "roofs", sub_id], env=env).exit_code == 0
    gone = runner.invoke(app, ["topics", "deliveries", "roofs", sub_id], env=env)
    assert gone.exit_code == 1 and "has no subscription" in gone.output
    usage = runner.invoke(app, ["topics", "subscribe", "roofs", "--nats", "a", "--mqtt", "b"], env=env)
    assert usage.exit_code == 2
    shown = runner.invoke(app, ["topics", "show", "roofs"], env=env)
    assert shown.exit_code == 0 and "0 subscription(s)" in shown.stdout
