"""Reading the fields of a spec: a problem collector with typed readers (numbers, data types, scheduling
limits, retry policies), which stage kinds use for their own fields too. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelyard.pipelines.spec import TYPES, Limits, Retry

Problem = dict[str, str]


class Checker:
    """Collects problems while reading a document."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, where: str, detail: str) -> None:
        """Note a problem of the field at path ``where`` (``stages.a.params.top_k``)."""
        self.problems.append({"field": where, "detail": detail})

    def integer(self, value: Any, where: str, low: int, high: int) -> int | None:
        """``value`` if an integer in ``low..high``, else a problem and None."""
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return value
        self.add(where, f"must be an integer {low}..{high}")
        return None

    def number(self, value: Any, where: str, low: float, high: float) -> float | None:
        """``value`` as a float if a number in ``low..high``, else a problem and None."""
        if isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high:
            return float(value)
        self.add(where, f"must be a number {low:g}..{high:g}")
        return None

    def type_name(self, value: Any, where: str, default: str) -> str:
        """A data type (``default`` when absent); an unknown one is a problem and ``any``."""
        if value is None:
            return default
        if value in TYPES:
            return str(value)
        self.add(where, f"unknown data type {value!r} (one of {', '.join(TYPES)})")
        return "any"

    def limits(self, doc: Mapping[str, Any], where: str, base: Limits) -> Limits:
        concurrency, batch_size = base.concurrency, base.batch_size
        retry, timeout = base.retry, base.timeout_seconds
        if "concurrency" in doc:
            concurrency = self.integer(doc["concurrency"], f"{where}.concurrency", 1, 256) or concurrency
        if "batch_size" in doc:
            batch_size = self.integer(doc["batch_size"], f"{where}.batch_size", 1, 1000) or batch_size
        if "timeout_seconds" in doc and doc["timeout_seconds"] is not None:
            timeout = self.number(doc["timeout_seconds"], f"{where}.timeout_seconds", 0.001, 86400)
        if "retry" in doc:
            retry = self.retry(doc["retry"], f"{where}.retry", base.retry)
        return Limits(concurrency, batch_size, retry, timeout)

    def retry(self, doc: Any, where: str, base: Retry) -> Retry:
        if not isinstance(doc, Mapping):
            self.add(where, "must be a mapping of max_attempts, backoff_seconds")
            return base
        for key in doc:
            if key not in ("max_attempts", "backoff_seconds"):
                self.add(f"{where}.{key}", "unknown field (known: max_attempts, backoff_seconds)")
        attempts, backoff = base.max_attempts, base.backoff_seconds
        if "max_attempts" in doc:
            attempts = self.integer(doc["max_attempts"], f"{where}.max_attempts", 1, 20) or attempts
        if "backoff_seconds" in doc:
            found = self.number(doc["backoff_seconds"], f"{where}.backoff_seconds", 0, 3600)
            backoff = backoff if found is None else found
        return Retry(attempts, backoff)
