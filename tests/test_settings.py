"""Settings refuse an admin key anyone could guess, unless the demo is on."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from modelyard.cli import app
from modelyard.settings import Settings

STRONG = "k3Vq-2xN8pWd0LrT6yHs"


def _settings(**values: object) -> Settings:
    return Settings(**values, _env_file=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("dev-admin-key", "well-known default"),
        ("changeme", "well-known default"),
        ("Admin", "well-known default"),
        ("short-but-random", None),  # 16 characters: the shortest accepted
        ("s3cr3t-15-chars", "at least 16"),
    ],
)
def test_admin_key_that_is_empty_default_or_short_is_refused(key: str, reason: str | None) -> None:
    if reason is None:
        assert _settings(admin_key=key).admin_key is not None
        return
    with pytest.raises(ValidationError, match=reason):
        _settings(admin_key=key)


@pytest.mark.parametrize("key", ["dev-admin-key", "changeme", "tour-admin-key"])
def test_demo_accepts_a_well_known_or_short_admin_key(key: str) -> None:
    assert _settings(admin_key=key, demo=True).admin_key is not None


def test_unset_or_random_admin_key_is_accepted() -> None:
    assert _settings().admin_key is None
    assert _settings(admin_key=STRONG).admin_key is not None


def test_serve_refuses_to_start_with_a_default_admin_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")  # no .env file from the working directory
    result = CliRunner().invoke(app, ["serve"], env={"MODELYARD_ADMIN_KEY": "changeme"})
    assert result.exit_code == 2
    assert "MODELYARD_ADMIN_KEY is a well-known default" in result.output
