"""Settings, read from ``MODELYARD_*`` environment variables and an optional ``.env`` file.

Nothing builds a ``Settings`` at import time: ``create_app`` and the CLI do, so tests can pass
their own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

WEAK_ADMIN_KEYS = frozenset(
    {"admin", "admin-key", "changeme", "change-me", "dev-admin-key", "password", "secret", "test"}
)
"""Admin keys found in examples and tutorials: refused outside the demo whatever their length."""
MIN_ADMIN_KEY_LENGTH = 16


class Settings(BaseSettings):
    """Everything an operator can set. Each field maps to ``MODELYARD_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="MODELYARD_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("./data"), description="Folder for the SQLite file, artifacts and logs.")
    database_url: str = Field(
        "",
        description="SQLAlchemy URL of the metadata database; empty means SQLite at DATA_DIR/modelyard.db. "
        "PostgreSQL: postgresql+psycopg://user@host/db.",
    )
    storage_url: str = Field(
        "",
        description="Artifact store: empty or a path for a local folder (DATA_DIR/artifacts), s3://bucket/prefix.",
    )
    s3_endpoint_url: str | None = Field(
        None, description="Endpoint of an S3-compatible server (MinIO, moto...)."
    )
    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8000, description="Port the API listens on.")
    proxy_headers: bool = Field(False, description="Trust X-Forwarded-For/Proto from FORWARDED_ALLOW_IPS.")
    forwarded_allow_ips: str = Field(
        "127.0.0.1", description="Proxies whose X-Forwarded-* headers are trusted."
    )
    admin_key: SecretStr | None = Field(
        None,
        description="Bootstrap API key with the admin scope, accepted as long as it is set. Unset means "
        f"none; outside the demo a set key must have at least {MIN_ADMIN_KEY_LENGTH} characters and not be "
        "a well-known default (dev-admin-key, changeme, admin...).",
    )
    max_upload_bytes: int = Field(512 * 1024 * 1024, description="Largest model file accepted on upload.")
    max_model_materialised_bytes: int = Field(
        256 * 1024 * 1024,
        description="Most bytes of constants a model may compute from constants alone when loaded "
        "(ConstantOfShape, Expand, Tile... that constant folding materialises), beyond its file's own "
        "weights. An upload over it is refused (422) naming the node, so a tiny file cannot take gigabytes.",
    )
    max_request_bytes: int = Field(
        64 * 1024 * 1024,
        description="Largest prediction request body (REST predict, V2 infer): V2 binary tensors go up to "
        "it, and so does a compressed V2 body once decompressed; JSON in it is held to MAX_JSON_BODY_BYTES.",
    )
    max_json_body_bytes: int = Field(
        8 * 1024 * 1024,
        description="Largest JSON on every route (jobs with inline rows, events, keys..., and the JSON of "
        "predictions: REST bodies, V2 JSON tensors or a binary request's JSON header, WebSocket messages). "
        "Parsed JSON takes up to ~13x its size in memory, so this bounds what one request costs; a body over "
        "it is answered 413 as soon as it is known to be, before it is parsed.",
    )
    max_tensor_elements: int = Field(64 * 1024 * 1024, description="Most elements in one request's tensors.")
    max_inline_rows: int | None = Field(
        None,
        description="Most rows accepted inline in a batch job request (or a prediction that becomes a job); "
        "empty: as many as the request body size cap (`MODELYARD_MAX_JSON_BODY_BYTES`) allows. Inline rows "
        "are read as the body streams in, a window at a time, never parsed whole into memory.",
    )
    predict_async_rows: int = Field(
        10_000,
        description="A prediction over more rows than this (or sent with 'Prefer: respond-async') becomes a "
        "batch job and answers 202 Accepted with the job; 0 answers every prediction at once.",
    )
    max_batch_file_bytes: int = Field(2 * 1024**3, description="Largest batch input file accepted.")
    max_artifact_bytes: int = Field(
        2 * 1024**3, description="Largest file accepted by PUT /api/v1/artifacts/{key}."
    )
    upload_abandon_hours: float = Field(
        24.0,
        gt=0,
        description="A resumable upload in parts (``modelyard sync``) nobody touched for this long is "
        "removed with its parts by the workers' heartbeat sweep.",
    )
    model_cache_size: int = Field(8, description="Most model versions kept loaded at once (LRU).")
    model_cache_bytes: int = Field(
        2 * 1024**3, description="Most bytes of model files kept loaded at once (LRU, by file size)."
    )
    intra_op_threads: int = Field(1, description="onnxruntime intra-op threads per session.")
    inference_threads: int = Field(2, description="Threads that run inference off the event loop.")
    predict_decode_processes: int = Field(
        2,
        ge=0,
        description="Processes that decode JSON bodies over 128 KiB of predictions (REST predict, V2 infer) "
        "and jobs (POST /api/v1/jobs): parsing big JSON holds the interpreter, so in the server it would "
        "hold up every other request. Started at the first such body (~100 MB each); 0 decodes them in a "
        "thread of the server instead.",
    )
    inline_inference_us: float = Field(
        30.0,
        description="Runs of a model measured (moving average) under this many microseconds execute on the "
        "event loop: handing them to a thread costs ~60 us, more than the run. "
        "0 sends every run to the threads.",
    )
    log_level: str = Field("INFO", description="Log level of the JSON logs.")
    log_to_file: bool = Field(True, description="Also write JSON logs to DATA_DIR/logs (rotated).")
    access_log: bool = Field(
        True,
        description="Write one JSON line per HTTP request (request id, key name, method, route, status, "
        "duration) to DATA_DIR/logs/access.log (rotated); the benchmarks turn it off.",
    )
    worker: bool = Field(
        True, description="Run an in-process worker beside the API (serve --no-worker sets False)."
    )
    worker_switch_interval_ms: float = Field(
        1.0,
        gt=0,
        description="How long a worker process's busy thread holds the interpreter before another may "
        "run (Python's default is 5 ms). A worker's threads hand work to each other (dispatcher, workflow, "
        "step), and each hand-off waits up to this long behind a thread encoding or reading a chunk.",
    )
    worker_concurrency: int = Field(
        default_factory=lambda: max(2, os.cpu_count() or 2),
        description="Job chunks one worker runs at once (default: its CPU count; chunks are CPU-bound, and "
        "more at once than cores only slows each down).",
    )
    executor_id: str = Field(
        "", description="Durable executor id of this process; empty means host-pid based."
    )
    heartbeat_seconds: float = Field(2.0, description="How often a worker writes its heartbeat.")
    heartbeat_timeout_seconds: float = Field(10.0, description="Heartbeat age after which a worker is dead.")
    job_chunk_rows: int = Field(
        0, description="Rows per chunk of a batch job; 0 sizes chunks by job_chunk_bytes of model input."
    )
    job_chunk_seconds: float = Field(
        2.0,
        gt=0,
        description="When job_chunk_rows is 0, a model slow per row (measured on a probe batch, then on "
        "the chunks run) gets chunks of about this many seconds of work, and a job big enough gets at least "
        "one chunk per worker slot (worker_concurrency), so it spreads over every worker and core.",
    )
    job_chunk_bytes: int = Field(
        40 * 1024 * 1024,
        description="Model input per chunk when job_chunk_rows is 0 (e.g. 500,000 rows of 20 float32, "
        "the most a chunk takes).",
    )
    job_inline_input_bytes: int = Field(
        64 * 1024,
        description="Inline rows up to this size (as .npy) are kept in the job's row, not in a file.",
    )
    job_inline_output_bytes: int = Field(
        64 * 1024, description="Chunk outputs up to this size are kept in the chunk's row, not in a file."
    )
    job_max_attempts: int = Field(
        3, description="Attempts per job chunk before it lands in the dead-letter list."
    )
    job_retry_seconds: float = Field(
        1.0, description="Wait before the first retry of a failed chunk; doubles with every attempt."
    )
    job_queue_concurrency: int = Field(
        4, description="Batches of queued jobs (planning, single-chunk jobs) one worker runs at once."
    )
    job_claim_batch: int = Field(
        32, description="Most queued jobs one worker claims into one batch (one durable workflow)."
    )
    job_poll_seconds: float = Field(0.05, description="How often an idle worker looks for queued jobs.")
    job_claim_timeout_seconds: float = Field(
        30.0, description="Claimed jobs whose batch never started are queued again after this long."
    )
    job_row_errors_kept: int = Field(
        100, description="Malformed rows listed per chunk with their row number (all of them are counted)."
    )
    fetch_timeout_seconds: float = Field(30.0, description="Timeout for fetching raw data over HTTP.")
    fetch_max_bytes: int = Field(
        256 * 1024 * 1024,
        description="Largest raw data fetched for one event or inferrer URL, and largest image uploaded to "
        "an inferrer.",
    )
    allow_private_urls: bool = Field(False, description="Let user URLs reach loopback/private addresses.")
    max_image_pixels: int = Field(
        100_000_000,
        gt=0,
        description="Most pixels of an image any route or stage decodes (inferrers, pipeline stages); a "
        "bigger one is refused from its header, undecoded.",
    )
    max_image_decoded_bytes: int = Field(
        320 * 1024 * 1024,
        gt=0,
        description="Most memory decoding one image (and making it RGB) may take, read from its header "
        "before decoding; a bigger one is refused undecoded.",
    )
    pipeline_worker_image_bytes: int = Field(
        1024 * 1024 * 1024,
        gt=0,
        description="Most memory of decoded images one worker holds at once over all the stage batches it "
        "runs: a batch decodes its images in groups within it (one image at a time always runs).",
    )
    pipeline_batch_size: int = Field(
        64, description="Default events per stage batch (a stage spec's batch_size overrides it)."
    )
    pipeline_stage_concurrency: int = Field(
        4, description="Default batches of one stage running at once over all workers (spec: concurrency)."
    )
    pipeline_worker_batches: int = Field(8, description="Stage batches one worker runs at once.")
    pipeline_poll_seconds: float = Field(
        0.05, description="How often an idle worker looks for ready stage runs."
    )
    pipeline_claim_timeout_seconds: float = Field(
        30.0, description="Claimed stage runs whose batch never started are queued again after this long."
    )
    pipeline_inline_bytes: int = Field(
        4096, description="JSON stage outputs up to this size are also kept inline in the stage run row."
    )
    pipeline_max_events_per_request: int = Field(
        10_000, description="Most events accepted by one bulk submission."
    )
    pipeline_fetch_threads: int = Field(8, description="Raw data fetches one raw batch runs in parallel.")
    pipeline_raw_cache_bytes: int = Field(
        64 * 1024 * 1024,
        description="Raw data kept in memory per worker, shared by the stages it runs. Raw data of type "
        "bytes or image in a file or artifact larger than this is hashed by chunks when fetched, not read "
        "whole; stages that read files get its path.",
    )
    analysis_dask_scheduler: str = Field(
        "",
        description="Address of a Dask distributed scheduler (tcp://host:8786) the tissue image stages run "
        "their segmentation tiles on; empty: threads of the worker (``analysis_workers``).",
    )
    analysis_workers: int = Field(
        1,
        ge=1,
        description="Tiles of one image a tissue stage processes at once (threads, or in flight "
        "on the Dask scheduler).",
    )
    event_log_retention_hours: float = Field(
        72.0,
        gt=0,
        description="Events are kept in the event log (replayable, e.g. by SSE Last-Event-ID) "
        "this many hours; workers trim older ones on their heartbeat.",
    )
    event_log_max_rows: int = Field(
        1_000_000, gt=0, description="Most events kept in the event log; workers trim the oldest past it."
    )
    event_log_poll_seconds: float = Field(
        0.5,
        gt=0,
        description="How often an event stream re-reads the event log for events written by another "
        "process (this process's own events wake it at once).",
    )
    event_log_gap_seconds: float = Field(
        5.0,
        gt=0,
        description="PostgreSQL: how long an event stream waits for a missing event id (a transaction "
        "still committing) before going past it (a rolled-back transaction leaves a gap for good).",
    )
    pipeline_spec_max_bytes: int = Field(
        128 * 1024, description="Largest pipeline spec document (YAML or JSON)."
    )
    pipeline_spec_max_nodes: int = Field(
        10_000, description="Most values (mappings, lists, scalars) in one pipeline spec document."
    )
    pipeline_spec_max_depth: int = Field(32, description="Deepest nesting of mappings and lists in a spec.")
    notify_max_attempts: int = Field(
        8, ge=1, description="Attempts to send one notification before it is dead-lettered."
    )
    notify_retry_seconds: float = Field(
        1.0, gt=0, description="Wait before a notification's first retry; doubles with every attempt."
    )
    notify_retry_max_seconds: float = Field(
        3600.0, gt=0, description="Longest wait between two attempts to send a notification."
    )
    notify_timeout_seconds: float = Field(
        10.0, gt=0, description="How long one webhook call (or NATS/MQTT publish) may take."
    )
    notify_concurrency: int = Field(8, ge=1, description="Notifications one worker sends at once.")
    notify_poll_seconds: float = Field(
        0.1,
        gt=0,
        description="How often an idle worker looks for notifications to send and for new events to fan "
        "out to subscribers (while the log grows with other events, at most this often too).",
    )
    notify_claim_timeout_seconds: float = Field(
        60.0, description="Claimed notifications whose workflow never started are queued again after this."
    )
    notify_max_subscriptions: int = Field(100, ge=1, description="Most subscriptions of one model's topic.")
    notify_delivery_retention_hours: float = Field(
        168.0,
        gt=0,
        description="Delivered and dead notifications stay in their subscription's delivery log this long; "
        "workers delete older ones on their heartbeat.",
    )
    notify_nats_url: str = Field(
        "", description="NATS server for nats subscriptions (nats://host:4222); empty: none accepted."
    )
    notify_mqtt_url: str = Field(
        "",
        description="MQTT broker for mqtt subscriptions (mqtt://[user:password@]host:1883, mqtts:// for "
        "TLS); empty: none accepted.",
    )
    catalog_ann_threshold: int = Field(
        20_000,
        ge=1,
        description="A catalog vector field (one collection, field and version) with at least this many "
        "vectors also gets an ANN index (HNSW, persisted in DATA_DIR/catalog-ann) for fast approximate "
        "search; below it every query is exact.",
    )
    geo_item_collection_max: int = Field(
        1000,
        gt=0,
        description="Most STAC items in one ItemCollection posted to /api/v1/scenes (more is a 413).",
    )
    geo_spatial_index: Literal["auto", "memory", "postgis"] = Field(
        "auto",
        description="How AOIs are matched spatially: memory (an in-process STRtree, kept in step with the "
        "AOI table), postgis (ST_Intersects over a GiST index; PostgreSQL with PostGIS), or auto (postgis "
        "where the extension can be created, else memory). Every process of a deployment uses the same.",
    )
    run_callback_base_url: str | None = Field(
        None,
        description="Base URL a command model's run calls back on (its MODELYARD_CALLBACK_URL is this plus "
        "/api/v1/runs/{id}/results); http://HOST:PORT when unset.",
    )
    geo_run_slots: int = Field(2, gt=0, description="Geo runs (commands) one worker runs at once.")
    geo_run_poll_seconds: float = Field(0.5, gt=0, description="How often an idle worker looks for geo runs.")
    geo_run_claim_timeout_seconds: float = Field(
        30.0, gt=0, description="Age after which a geo run's claim whose workflow is not running is freed."
    )
    geo_run_max_attempts: int = Field(
        2, gt=0, description="Attempts of a geo run whose worker died mid-run before it is failed."
    )
    geo_run_token_grace_seconds: float = Field(
        300.0,
        ge=0,
        description="How long past its command's timeout a run's callback token is still accepted.",
    )
    geo_result_max_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="Largest label item or GeoJSON asset a run may report."
    )
    demo: bool = Field(
        False,
        description="Register a small demo model on start if the registry is empty, and accept a short or "
        "well-known admin key (make run's dev-admin-key).",
    )

    @model_validator(mode="after")
    def _refuse_weak_admin_key(self) -> Self:
        """Outside the demo, an admin key anyone could guess is a configuration error, not a default."""
        if self.admin_key is None or self.demo:
            return self
        key = self.admin_key.get_secret_value()
        if not key.strip():
            raise ValueError("MODELYARD_ADMIN_KEY is set but empty; unset it, or set a random key")
        if key.strip().lower() in WEAK_ADMIN_KEYS:
            raise ValueError(
                "MODELYARD_ADMIN_KEY is a well-known default; set a random key "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))'), or run the demo (--demo)"
            )
        if len(key) < MIN_ADMIN_KEY_LENGTH:
            raise ValueError(
                f"MODELYARD_ADMIN_KEY has {len(key)} characters; use at least {MIN_ADMIN_KEY_LENGTH} "
                "(a random key), or run the demo (--demo)"
            )
        return self

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to the SQLite file in the data dir (see ``db.database_url``)."""
        from modelyard.db import database_url

        return database_url(self)
