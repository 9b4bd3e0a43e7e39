"""Prometheus metrics of one app instance (its own registry, so tests can build many apps)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    """Every metric modelyard exports at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        r = self.registry
        self.requests = Counter(
            "modelyard_http_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "modelyard_http_request_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "modelyard_predictions_total",
            "Prediction requests by model, version and transport.",
            ["model", "version", "transport"],
            registry=r,
        )
        self.prediction_errors = Counter(
            "modelyard_prediction_errors_total",
            "Failed prediction requests by model and error code.",
            ["model", "code"],
            registry=r,
        )
        self.inference = Histogram(
            "modelyard_inference_seconds",
            "Time in session.run per batch, by model.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.access_log_dropped = Counter(
            "modelyard_access_log_dropped_total",
            "Access log lines dropped because the writer could not keep up (its queue was full).",
            registry=r,
        )
        self.loaded_models = Gauge("modelyard_loaded_models", "Model versions loaded in memory.", registry=r)
        self.model_loads = Counter(
            "modelyard_model_loads_total", "Model loads by model.", ["model"], registry=r
        )
        self.batch_size = Histogram(
            "modelyard_batch_size",
            "Requests merged into one run by the dynamic batcher.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_delay = Histogram(
            "modelyard_batch_queue_delay_seconds",
            "Time a request waited in the batch queue.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

        # Observed by the worker that settles a stage run (``/metrics`` of a server with an in-process
        # worker); stage runs and events by state are read from the database at scrape time instead.
        self.stage_seconds = Histogram(
            "modelyard_pipeline_stage_run_seconds",
            "Time of stage runs settled by this process's worker, by pipeline, stage and outcome "
            "(done, cached, retry, failed).",
            ["pipeline", "stage", "outcome"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.raw_fetches = Counter(
            "modelyard_pipeline_raw_fetches_total",
            "Reads of events' raw data by this process's worker, by pipeline and result (fetched, failed).",
            ["pipeline", "result"],
            registry=r,
        )

    def record_request(self, template: str, method: str, status: int, seconds: float) -> None:
        """Count and time one HTTP request (label children cached: this runs on every request)."""
        key = (template, method, status)
        child = self._request_children.get(key)
        if child is None:
            child = (self.requests.labels(*key), self.latency.labels(template))
            self._request_children[key] = child
        child[0].inc()
        child[1].observe(seconds)

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)
