"""Every ```sh and ```python block of the README, run as pasted against a real ``modelyard serve --demo``
(with its worker), in order, from a fresh folder: what a new user copies must work.

The only changes made to a block are the ones a reader's machine makes for them: the server listens
on a free port instead of 8000, and ``.venv/bin/`` is the environment running the tests. Blocks that
cannot run here are listed in ``SKIPPED`` with the reason, lines that never end (an endless event
stream) in ``ENDLESS``, and blocks that are not code (an example answer) in ``NOT_CODE``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.serve import modelyard_serve

README = Path(__file__).parents[2] / "README.md"
BIN = Path(sys.executable).parent
KEY = "dev-admin-key"
SKIPPED = {
    "make run": "the two commands: this test is part of `make test`, and starts the server `make run` starts",
    "modelyard serve --no-worker &": "scale-out needs PostgreSQL and S3-compatible hosts (tests/crash covers it)",
    "hooks.example.com": "needs a public webhook receiver and a NATS server (tests/notify covers them)",
}
ENDLESS = {
    "/queues/stream": "an endless event stream (the README says Ctrl-C)",
    "/log/stream": "an endless event stream (the README says Ctrl-C)",
    "/topics/demo-iris/events": "an endless event stream (the README says Ctrl-C)",
}
BLOCK = re.compile(r"^```(sh|python)\n(.*?)^```", re.S | re.M)
ANY_BLOCK = re.compile(r"^```(\S*)\n.*?^```", re.S | re.M)
NOT_CODE = {"json": "an example of what the server answers (an error body), not something to run"}


def readme_blocks() -> list[tuple[int, str, str]]:
    """(line, language, code) of every sh and python block, in order."""
    text = README.read_text()
    return [(text[: m.start()].count("\n") + 1, m.group(1), m.group(2)) for m in BLOCK.finditer(text)]


def _skip_reason(code: str) -> str | None:
    return next((why for marker, why in SKIPPED.items() if marker in code), None)


def _localise(code: str, port: int) -> str:
    code = code.replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace(".venv/bin/", f"{BIN}/")
    lines = [line for line in code.splitlines() if not any(marker in line for marker in ENDLESS)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[tuple[int, dict[str, str]]]:
    env = {
        **os.environ,
        "MODELYARD_DATABASE_URL": database_url,
        "MODELYARD_ADMIN_KEY": KEY,
        "MODELYARD_JOB_RETRY_SECONDS": "0.1",
    }
    env.pop("MODELYARD_DATA_DIR", None)  # the README's paths are in ./data, the default
    with modelyard_serve(env, tmp_path / "server.log", cwd=tmp_path) as (url, _):
        yield int(url.rsplit(":", 1)[1]), {**env, "PATH": f"{BIN}:{env.get('PATH', '')}"}


def test_readme_lists_what_it_skips_and_has_blocks_to_run() -> None:
    blocks = readme_blocks()
    skipped = [line for line, _, code in blocks if _skip_reason(code)]
    assert len(skipped) == len(SKIPPED)
    assert sum(1 for _, lang, _ in blocks if lang == "python") >= 3
    assert sum(1 for _, lang, code in blocks if lang == "sh" and not _skip_reason(code)) >= 6


def test_every_fenced_block_is_a_snippet_this_test_runs_or_is_not_code() -> None:
    """A block in another language (``bash``, ``console``, none) would be skipped without a word."""
    languages = [m.group(1) for m in ANY_BLOCK.finditer(README.read_text())]
    assert [lang for lang in languages if lang not in ("sh", "python", *NOT_CODE)] == []
    assert len(readme_blocks()) == sum(1 for lang in languages if lang in ("sh", "python"))


def catalog_answers_as_the_readme_says(port: int, wine: Path) -> None:
    """The catalog tour's searches find what its comments say (its blocks ran already: the collection
    holds their records and inferences)."""
    base = f"http://127.0.0.1:{port}/api/v1/collections/pictures"
    headers = {"Authorization": f"Bearer {KEY}"}

    def ids(resp: httpx.Response) -> list[str]:
        assert resp.status_code == 200, resp.text
        return [h["record"]["id"] for h in resp.json()["hits"]]

    def search(query: dict[str, Any]) -> list[str]:
        return ids(httpx.post(f"{base}/search", json={**query, "inferred": []}, headers=headers))

    text = {"text": "poppy", "filter": {"field": "attributes.year", "op": "lt", "value": 1900}}
    assert search(text) == ["red"]
    assert search({"colour": {"colours": {"#c81e5a": 1.0}, "k": 3}}) == ["red", "wine", "blue"]
    assert search({"vector": {"field": "palette.embedding", "record": "wine", "k": 2}}) == ["red", "blue"]
    query = json.dumps({"vector": {"field": "palette.embedding", "k": 2}, "inferred": []})
    files = {"file": ("wine.png", wine.read_bytes())}
    by_image = httpx.post(f"{base}/search:upload", files=files, data={"query": query}, headers=headers)
    assert ids(by_image) == ["wine", "red"]


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_readme_snippet_runs_as_pasted(server: tuple[int, dict[str, str]], tmp_path: Path) -> None:
    port, env = server
    shell: list[str] = ["set -euo pipefail"]
    python: list[tuple[int, str]] = []
    for line, lang, code in readme_blocks():
        if _skip_reason(code):
            continue
        if lang == "sh":  # one shell, as a reader pastes the blocks one after another
            shell += [f"echo '>>> README.md:{line}' >&2", _localise(code, port)]
        else:
            python.append((line, _localise(code, port)))
    ran = subprocess.run(
        ["bash", "-c", "\n".join(shell)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert ran.returncode == 0, f"{ran.stderr[-3000:]}\n--- stdout ---\n{ran.stdout[-2000:]}"
    assert "modelyard_predictions_total" in ran.stdout
    assert (tmp_path / "predictions.parquet").stat().st_size > 0
    catalog_answers_as_the_readme_says(port, tmp_path / "data" / "incoming" / "wine.png")
    for line, code in python:
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"README.md:{line}\n{done.stderr[-3000:]}"
        assert done.stdout.strip(), f"README.md:{line} printed nothing"
