"""Validating STAC items against the shipped schemas, fast.

Each schema is compiled once per process, on first use, by fastjsonschema into Python code (about 1 ms an
item for core + eo + projection, where a generic validator takes 10-18 ms). fastjsonschema stops at the
first error and says little inside ``oneOf``, so an item that fails is validated again by ``jsonschema``
(a validator per schema, cached, whose registry holds only the shipped files) to list every problem at
the deepest path that explains it. Valid items, nearly all of them, never pay for that.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
import referencing
from jsonschema.exceptions import ValidationError
from referencing.jsonschema import DRAFT7

SCHEMAS = Path(__file__).parent / "schemas"
CORE = {
    "1.0.0": "https://schemas.stacspec.org/v1.0.0/item-spec/json-schema/item.json",
    "1.1.0": "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json",
}
# the published v1.1.0 common.json says its $id is ".../commonjson"; item.json refers to it as common.json
ALIASES = {
    "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/commonjson": (
        "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/common.json"
    )
}
MAX_PROBLEMS = 20  # per item: past this many, the client has enough to fix
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class StacProblem:
    """One way a document breaks a rule: where (a JSON path, ``$`` the document), which rule, and why."""

    path: str
    rule: str
    detail: str

    def public(self) -> dict[str, str]:
        """The wire form, as listed in a 422's ``errors``."""
        return {"path": self.path, "rule": self.rule, "detail": self.detail}


@dataclass(slots=True)
class ItemCheck:
    """What checking one item found: its problems, and the extension schemas it declares that the
    package does not ship (reported, not fetched: the item is accepted without them)."""

    problems: list[StacProblem] = field(default_factory=list)
    unshipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the item is valid against every schema that was checked."""
        return not self.problems


def json_path(parts: Any, root: str = "$") -> str:
    """A JSON path (``$.properties['eo:bands'][0]``) from keys and indexes."""
    out = root
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(str(part)):
            out += f".{part}"
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def _url(uri: str) -> str:
    url = uri.split("#", 1)[0]
    return ALIASES.get(url, url)


@functools.cache
def _catalogue() -> dict[str, dict[str, Any]]:
    """Every shipped schema by its URL (its ``$id`` without the fragment)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(SCHEMAS.rglob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        found[_url(str(document["$id"]))] = document
    return found


def shipped() -> list[str]:
    """The URLs of the schemas the package carries."""
    return sorted(_catalogue())


def _load(uri: str) -> dict[str, Any]:
    url = _url(uri)
    document = _catalogue().get(url)
    if document is None:  # a shipped schema refers to one not shipped: a packaging bug, never a fetch
        raise LookupError(f"schema {url} is referenced but not shipped")
    return document


@functools.cache
def _fast(url: str) -> Callable[[Any], Any]:
    """The compiled validator of a shipped schema (defaults are never written into the item)."""
    return fastjsonschema.compile(_load(url), handlers={"https": _load, "http": _load}, use_default=False)


@functools.cache
def _registry() -> referencing.Registry[Any]:
    resources = [(url, DRAFT7.create_resource(doc)) for url, doc in _catalogue().items()]
    resources += [(alias, DRAFT7.create_resource(_catalogue()[url])) for alias, url in ALIASES.items()]
    return referencing.Registry().with_resources(resources)


@functools.cache
def _thorough(url: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_load(url), registry=_registry())


def _wrong_kind(error: ValidationError) -> bool:
    """Whether ``error`` says the document is another kind of thing (a Collection's ``type``)."""
    return error.validator in ("const", "enum") and list(error.absolute_path)[-1:] == ["type"]


def _leaves(error: ValidationError) -> list[ValidationError]:
    """The errors that explain ``error``: inside a ``oneOf``/``anyOf``, those of the branches meant for
    this kind of document that got deepest into it (the branch the author meant), recursively."""
    if not error.context:
        return [error]
    branches: dict[Any, list[ValidationError]] = {}
    for e in error.context:
        branches.setdefault(e.relative_schema_path[0], []).append(e)
    meant = [b for b in branches.values() if not any(_wrong_kind(e) for e in b)] or list(branches.values())
    context = [e for b in meant for e in b]
    deepest = max(len(e.absolute_path) for e in context)
    if deepest <= len(error.absolute_path) and len(meant) != 1:
        return [error]  # no branch got past this point: the alternatives themselves are the problem
    return [leaf for e in context if len(e.absolute_path) == deepest for leaf in _leaves(e)]


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _explain(url: str, item: Any, fast_error: fastjsonschema.JsonSchemaValueException) -> list[StacProblem]:
    problems: dict[tuple[str, str], StacProblem] = {}
    for error in _thorough(url).iter_errors(item):
        for leaf in _leaves(error):
            path = json_path(leaf.absolute_path)
            rule = str(leaf.validator) if leaf.validator is not None else "not-allowed"
            problems.setdefault((path, rule), StacProblem(path, rule, _short(leaf.message)))
        if len(problems) >= MAX_PROBLEMS:
            break
    if not problems:  # jsonschema does not check formats (date-time) unless asked: report what failed
        path = json_path((fast_error.path or [])[1:])
        problems[(path, "")] = StacProblem(path, str(fast_error.rule or "schema"), fast_error.message)
    return [StacProblem(p.path, p.rule, f"{p.detail} (schema {url})") for p in problems.values()]


def _check(url: str, item: Any) -> list[StacProblem]:
    try:
        _fast(url)(item)
    except fastjsonschema.JsonSchemaValueException as exc:
        return _explain(url, item, exc)
    return []


def check_item(item: Any) -> ItemCheck:
    """Check ``item`` against the STAC core item schema of its ``stac_version`` and the schema of each
    extension in its ``stac_extensions`` that the package ships."""
    result = ItemCheck()
    if not isinstance(item, dict):
        result.problems.append(StacProblem("$", "type", "a STAC item is a JSON object"))
        return result
    version = item.get("stac_version")
    core = CORE.get(version) if isinstance(version, str) else None
    if core is None:
        supported = ", ".join(CORE)
        result.problems.append(
            StacProblem("$.stac_version", "enum", f"stac_version {version!r} is not supported ({supported})")
        )
        return result
    result.problems += _check(core, item)
    extensions = item.get("stac_extensions")
    for url in extensions if isinstance(extensions, list) else []:
        if not isinstance(url, str):
            continue  # the core schema reported it
        if _url(url) not in _catalogue():
            result.unshipped.append(url)
            continue
        result.problems += _check(_url(url), item)
    del result.problems[MAX_PROBLEMS:]
    return result
