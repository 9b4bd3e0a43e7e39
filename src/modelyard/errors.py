"""Domain errors, raised anywhere, and the one builder of their wire form (``problem``): problem+json
(RFC 9457), or the V2 inference protocol's ``{"error": ...}``. ``app.py``, the inference fast path
and the WebSocket stream only wrap what it builds.

Every error carries an HTTP ``status``, a stable machine ``code`` (the last part of the
problem ``type`` URI), a human ``detail`` and, where one input is to blame, the offending
``field``. Nothing here imports FastAPI.

    ModelyardError                      500 internal
    ├── BadRequest                      400 bad-request
    │   ├── InvalidInput                400 invalid-input       (shape, dtype, missing tensor)
    │   ├── InvalidModelFile            422 invalid-model-file  (not ONNX, truncated, unknown op)
    │   ├── UndecodableInput            422 undecodable-input   (raw data that is not the declared type)
    │   ├── UrlRefused                  400 url-refused         (scheme, or a private address not allowed)
    │   └── InvalidQuery                400 invalid-query       (a catalog search naming an unknown field…)
    ├── ValidationFailed                422 validation-failed   (several problems, listed)
    │   └── QualityCheckFailed          422 quality-check-failed (a sample under a spec's QC thresholds)
    ├── Unauthorized                    401 unauthorized
    ├── Forbidden                       403 forbidden
    ├── NotFound                        404 not-found
    │   ├── ModelNotFound               404 model-not-found
    │   ├── VersionNotFound             404 version-not-found
    │   ├── JobNotFound                 404 job-not-found
    │   ├── PipelineNotFound            404 pipeline-not-found
    │   ├── EventNotFound               404 event-not-found
    │   ├── StageRunNotFound            404 stage-run-not-found
    │   ├── CollectionNotFound          404 collection-not-found
    │   ├── RecordNotFound              404 record-not-found
    │   ├── SubscriptionNotFound        404 subscription-not-found
    │   └── DeliveryNotFound            404 delivery-not-found
    │   ├── AoiNotFound                 404 aoi-not-found
    │   ├── SceneNotFound               404 scene-not-found
    │   └── RunNotFound                 404 run-not-found       (a geo run)
    ├── Conflict                        409 conflict
    │   ├── AlreadyExists               409 already-exists
    │   ├── OutputArchived              409 output-archived     (restore the event first)
    │   ├── WrongModelKind              409 wrong-model-kind    (predicting on a command model…)
    │   └── TokenUsed                   409 token-used          (a run token already reported)
    ├── Gone                            410 gone
    │   └── TokenExpired                410 token-expired       (a run token past its expiry)
    ├── MethodNotAllowed                405 method-not-allowed
    ├── PayloadTooLarge                 413 payload-too-large
    ├── UnsupportedMediaType            415 unsupported-media-type
    ├── FetchFailed                     502 fetch-failed        (raw data could not be fetched)
    └── Unavailable                     503 unavailable
        └── ModelRunFailed              503 model-run-failed    (out of memory, a crashed session: retry)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

PROBLEM_JSON = "application/problem+json"
INTERNAL_DETAIL = "internal error; see the server log"
MAX_LISTED_PROBLEMS = 100  # of one validation failure; all are counted


class ModelyardError(Exception):
    """Base of every error modelyard raises on purpose."""

    status: int = 500
    code: str = "internal"
    title: str = "Internal error"

    def __init__(self, detail: str, *, field: str | None = None, extra: dict[str, Any] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra or {}

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled whole (``field``, ``extra`` and the rest), so an error raised in a worker process is the
        same error where it is raised again."""
        return (_restore, (type(self), self.detail, self.__dict__))

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        """The RFC 9457 body of this error."""
        body: dict[str, Any] = {
            "type": f"https://modelyard.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if self.field is not None:
            body["field"] = self.field
        if instance is not None:
            body["instance"] = instance
        body.update(self.extra)
        return body


def _restore(cls: type[ModelyardError], detail: str, state: dict[str, Any]) -> ModelyardError:
    err = cls.__new__(cls)
    Exception.__init__(err, detail)
    err.__dict__.update(state)
    return err


class BadRequest(ModelyardError):
    """The request cannot be understood as sent."""

    status, code, title = 400, "bad-request", "Bad request"


class InvalidInput(BadRequest):
    """Inputs do not match what the model expects (name, dtype, shape)."""

    code, title = "invalid-input", "Invalid input"


class InvalidModelFile(BadRequest):
    """An uploaded model file is not a runnable ONNX model."""

    status, code, title = 422, "invalid-model-file", "Invalid model file"


class UndecodableInput(BadRequest):
    """Raw data cannot be decoded as what a stage reads (an image that is not one, a truncated file)."""

    status, code, title = 422, "undecodable-input", "Undecodable input"


class UrlRefused(BadRequest):
    """A URL is not fetched: not http(s), or its host resolves to a loopback/private/link-local address."""

    code, title = "url-refused", "URL refused"


class InvalidQuery(BadRequest):
    """A catalog search breaks a rule: an unknown field, a value of the wrong type for its field, a vector
    of the wrong dimension, k over the cap, a malformed cursor, an unknown colour. ``field`` names where."""

    code, title = "invalid-query", "Invalid query"


class ValidationFailed(ModelyardError):
    """A document (pipeline spec, batch file) has one or more problems, all listed in ``errors``."""

    status, code, title = 422, "validation-failed", "Validation failed"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]], field: str | None = None):
        super().__init__(detail, field=field, extra={"errors": errors})
        self.errors = errors

    @classmethod
    def of_validation(cls, found: Sequence[Mapping[str, Any]], *, under: str = "") -> ValidationFailed:
        """The one wire form of a pydantic validation failure (``exc.errors()``, from a request body, a
        job's parameters, anything), each field's location joined with dots under ``under``. A body can
        hold millions of bad values: the first ``MAX_LISTED_PROBLEMS`` are listed, all are counted, and
        ``field`` names the first."""
        listed = validation_problems(found[:MAX_LISTED_PROBLEMS], under=under)
        first = listed[0] if listed else {"field": under or None, "detail": "invalid request"}
        more = f" ({len(found)} problems, the first {len(listed)} listed)" if len(found) > len(listed) else ""
        return cls(f"{first['field']}: {first['detail']}{more}", errors=listed, field=first["field"])


def validation_problems(found: Sequence[Mapping[str, Any]], *, under: str = "") -> list[dict[str, Any]]:
    """Pydantic's errors (``exc.errors()``) as ``{"field", "detail"}`` items, each location joined with dots
    under ``under``: the one reading of them, for problems, ingest line errors and the CLI alike."""
    head = [under] if under else []
    return [
        {"field": ".".join([*head, *map(str, e.get("loc", ()))]), "detail": e.get("msg", "")} for e in found
    ]


class QualityCheckFailed(ValidationFailed):
    """A sample's quality checks (cells found, area, coverage, saturation, focus) broke a threshold of
    its spec; ``errors`` names each threshold and the value measured."""

    code, title = "quality-check-failed", "Quality check failed"


class Unauthorized(ModelyardError):
    """No API key, or one that is unknown or revoked."""

    status, code, title = 401, "unauthorized", "Unauthorized"


class Forbidden(ModelyardError):
    """The API key lacks the scope this operation needs."""

    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(ModelyardError):
    """The addressed resource does not exist."""

    status, code, title = 404, "not-found", "Not found"


class ModelNotFound(NotFound):
    """No model of that name."""

    code, title = "model-not-found", "Model not found"

    def __init__(self, name: str):
        super().__init__(f"model {name!r} does not exist", field="name")
        self.name = name


class VersionNotFound(NotFound):
    """The model exists but not that version."""

    code, title = "version-not-found", "Version not found"

    def __init__(self, name: str, version: int | str):
        super().__init__(f"model {name!r} has no version {version}", field="version")
        self.name, self.version = name, version


class JobNotFound(NotFound):
    """No job with that id."""

    code, title = "job-not-found", "Job not found"

    def __init__(self, job_id: str):
        super().__init__(f"job {job_id!r} does not exist", field="id")


class PipelineNotFound(NotFound):
    """No pipeline of that name."""

    code, title = "pipeline-not-found", "Pipeline not found"

    def __init__(self, name: str):
        super().__init__(f"pipeline {name!r} does not exist", field="name")


class EventNotFound(NotFound):
    """No event with that id."""

    code, title = "event-not-found", "Event not found"

    def __init__(self, event_id: str):
        super().__init__(f"event {event_id!r} does not exist", field="id")


class StageRunNotFound(NotFound):
    """The event exists but has no run of that stage."""

    code, title = "stage-run-not-found", "Stage run not found"

    def __init__(self, event_id: str, stage: str):
        super().__init__(f"event {event_id!r} has no stage {stage!r}", field="stage")


class CollectionNotFound(NotFound):
    """No catalog collection of that name."""

    code, title = "collection-not-found", "Collection not found"

    def __init__(self, name: str):
        super().__init__(f"collection {name!r} does not exist", field="collection")


class RecordNotFound(NotFound):
    """The collection exists but has no record with that id."""

    code, title = "record-not-found", "Record not found"

    def __init__(self, collection: str, record_id: str):
        super().__init__(f"collection {collection!r} has no record {record_id!r}", field="id")


class SubscriptionNotFound(NotFound):
    """The model's topic has no subscription with that id."""

    code, title = "subscription-not-found", "Subscription not found"

    def __init__(self, model: str, subscription_id: str):
        super().__init__(f"topic {model!r} has no subscription {subscription_id!r}", field="id")


class DeliveryNotFound(NotFound):
    """The subscription has no delivery with that id."""

    code, title = "delivery-not-found", "Delivery not found"

    def __init__(self, subscription_id: str, delivery_id: str):
        super().__init__(
            f"subscription {subscription_id!r} has no delivery {delivery_id!r}", field="delivery_id"
        )


class AoiNotFound(NotFound):
    """No area of interest with that id."""

    code, title = "aoi-not-found", "AOI not found"

    def __init__(self, aoi_id: int):
        super().__init__(f"AOI {aoi_id} does not exist", field="id")


class SceneNotFound(NotFound):
    """No scene with that id."""

    code, title = "scene-not-found", "Scene not found"

    def __init__(self, scene_id: int):
        super().__init__(f"scene {scene_id} does not exist", field="id")


class RunNotFound(NotFound):
    """No geo run has that id."""

    code, title = "run-not-found", "Run not found"

    def __init__(self, run_id: int | str):
        super().__init__(f"run {run_id} not found", field="run_id")


class Conflict(ModelyardError):
    """The request conflicts with the current state of the resource."""

    status, code, title = 409, "conflict", "Conflict"


class AlreadyExists(Conflict):
    """A resource with that unique name already exists."""

    code, title = "already-exists", "Already exists"


class OutputArchived(Conflict):
    """A stage output was moved to the archive after its pipeline's TTL; restore the event to read it."""

    code, title = "output-archived", "Output archived"


class WrongModelKind(Conflict):
    """The model is not of the kind this needs: predicting on a command model, an ONNX file uploaded to
    a command model, a command spec to an ONNX model."""

    code, title = "wrong-model-kind", "Wrong model kind"

    def __init__(self, name: str, kind: str, wanted: str, doing: str):
        super().__init__(
            f"model {name!r} is of kind {kind!r}; {doing} needs a {wanted!r} model", field="model"
        )


class TokenUsed(Conflict):
    """A run's single-use token has already reported its results."""

    code, title = "token-used", "Token already used"


class Gone(ModelyardError):
    """The resource existed but is no longer available."""

    status, code, title = 410, "gone", "Gone"


class TokenExpired(Gone):
    """A run's token is past its expiry: the run is over, nothing more is accepted for it."""

    code, title = "token-expired", "Token expired"


class MethodNotAllowed(ModelyardError):
    """The route exists but does not answer this HTTP method (the ``Allow`` header lists those it does)."""

    status, code, title = 405, "method-not-allowed", "Method not allowed"


class PayloadTooLarge(ModelyardError):
    """An upload, tensor, batch or fetch exceeds its configured cap."""

    status, code, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(ModelyardError):
    """The body's content type is not one this endpoint reads."""

    status, code, title = 415, "unsupported-media-type", "Unsupported media type"


class FetchFailed(ModelyardError):
    """Raw data could not be fetched from where the client said it is."""

    status, code, title = 502, "fetch-failed", "Fetch failed"


class Unavailable(ModelyardError):
    """The service cannot take this work right now (not ready, shutting down)."""

    status, code, title = 503, "unavailable", "Unavailable"


class ModelRunFailed(Unavailable):
    """The model runtime failed for a reason of the system's, not the input's (out of memory, a crashed
    session): the same request may succeed later, and job chunks are retried."""

    status, code, title = 503, "model-run-failed", "Model run failed"


@dataclass(frozen=True, slots=True)
class Problem:
    """An error as it goes on the wire, whatever carries it (a response, the fast path, a WebSocket)."""

    status: int
    body: dict[str, Any]
    media_type: str
    headers: dict[str, str]

    def encode(self) -> bytes:
        """The body as JSON bytes."""
        return orjson.dumps(self.body)


def problem(exc: BaseException, instance: str | None = None, *, v2: bool = False) -> Problem:
    """The wire form of an error: problem+json (``WWW-Authenticate`` on 401), or ``{"error": detail}``
    for the V2 inference protocol. Anything but a ``ModelyardError`` is an internal error, answered
    without its detail (the caller logs it)."""
    err = exc if isinstance(exc, ModelyardError) else ModelyardError(INTERNAL_DETAIL)
    if v2:
        return Problem(err.status, {"error": err.detail}, "application/json", {})
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else {}
    return Problem(err.status, err.to_problem(instance), PROBLEM_JSON, headers)
