"""The ``command`` stage kind: a command run once per event, its input in a temp file (``{input}``), its
output read from ``{output}`` or stdout, without the database's or artifact store's credentials in its
environment, and killed, with every process it started, past the stage's ``timeout_seconds`` (an hour if
unset).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from modelyard import sandbox
from modelyard.pipelines.spec import StageSpec
from modelyard.pipelines.spec.fields import Checker
from modelyard.pipelines.spec.kinds import KindConfig, Uses, register_stage_kind
from modelyard.pipelines.stages import (
    Item,
    Outcome,
    StageEnv,
    StageTimeout,
    outputs,
    side_by_side,
    single,
    timed,
)

# A command stage without ``timeout_seconds`` is still killed after an hour.
COMMAND_TIMEOUT_SECONDS = 3600.0


class CommandFailed(RuntimeError):
    """A command stage exited with a non-zero status."""


def _command_env(item: Item, spec: StageSpec) -> dict[str, str]:
    return sandbox.scrubbed_env(
        {
            "STAGE_PARAMS": orjson.dumps(spec.params).decode(),
            "EVENT_PARAMS": orjson.dumps(item.params).decode(),
            "EVENT_NAME": item.event,
            "EVENT_ID": item.event_id,
        }
    )


def _echo(stdout: bytes, stderr: bytes) -> None:
    """Print a command's output into the run's logs (stderr lines marked)."""
    print(stdout.decode(errors="replace"), end="")
    if stderr:
        lines = stderr.decode(errors="replace").splitlines(True)
        print("".join(f"[stderr] {line}" for line in lines), end="")


def _run_command(spec: StageSpec, item: Item) -> Any:
    value = single(item)
    limit = spec.limits.timeout_seconds or COMMAND_TIMEOUT_SECONDS
    with tempfile.TemporaryDirectory(prefix="modelyard-stage-") as tmp:
        encoded = outputs.encode(value, "bytes" if isinstance(value, bytes | bytearray) else "any")
        in_path = Path(tmp) / f"input.{encoded.ext}"
        in_path.write_bytes(encoded.data)
        out_path = Path(tmp) / "output"
        argv = [
            a.replace("{input}", str(in_path)).replace("{output}", str(out_path))
            for a in spec.config["command"]
        ]
        done = sandbox.run(argv, cwd=Path(tmp), env=_command_env(item, spec), timeout=limit)
        _echo(done.stdout, done.stderr)
        if done.limit_hit == "timeout":
            raise StageTimeout(
                f"stage {spec.name}: {argv[0]} ran past its timeout_seconds of {limit:g} s "
                "and was killed with the processes it started"
            )
        if not done.ok:
            raise CommandFailed(done.reason(argv[0]))
        data = out_path.read_bytes() if out_path.exists() else done.stdout
        return orjson.loads(data) if spec.produces == "json" else data


class CommandKind:
    """``type: command``: ``command`` is a list of arguments (or one string split on spaces) where
    ``{input}`` and ``{output}`` are file paths; ``input_type`` and ``output_type`` default to ``bytes``."""

    name = "command"
    fields = frozenset({"command", "input_type", "output_type"})

    def parse(self, doc: Mapping[str, Any], where: str, check: Checker) -> KindConfig:
        """The arguments and the declared types."""
        command = doc.get("command")
        if isinstance(command, str):
            command = command.split()
        if not isinstance(command, list) or not command or not all(isinstance(c, str) and c for c in command):
            check.add(f"{where}.command", "must be a non-empty list of arguments (or one string)")
        accepts = check.type_name(doc.get("input_type"), f"{where}.input_type", "bytes")
        produces = check.type_name(doc.get("output_type"), f"{where}.output_type", "bytes")
        return KindConfig({"command": command}, (accepts,), produces)

    def uses(self, spec: StageSpec) -> Uses:
        """Nothing the system can check: the command is found when it runs."""
        return Uses()

    def run_batch(self, spec: StageSpec, items: list[Item], env: StageEnv) -> tuple[list[Outcome], str]:
        """The command, once per event: input in a temp file (``{input}``), output from ``{output}`` or
        stdout; killed, with what it started, past the stage's ``timeout_seconds`` (an hour if unset). The
        events of a batch run side by side, up to the stage's ``concurrency`` commands at once."""
        outcomes = side_by_side(
            items, lambda item: timed(lambda: _run_command(spec, item)), spec.limits.concurrency, spec.name
        )
        return outcomes, ""


register_stage_kind(CommandKind())
