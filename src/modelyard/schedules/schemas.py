"""Schedules and job types on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from modelyard.registry.schemas import NAME_PATTERN


class ScheduleCreate(BaseModel):
    """A cron schedule that submits a registered job type with fixed parameters once per slot."""

    name: str = Field(pattern=NAME_PATTERN, examples=["nightly-churn"])
    cron: str = Field(
        description="Cron expression, 5 fields (minute precision) or 6 (leading seconds field).",
        examples=["0 2 * * *"],
    )
    job_type: str = Field("batch_predict", examples=["batch_predict"])
    params: dict[str, Any] = Field(
        default_factory=dict,
        examples=[{"model": "churn", "uri": "batches/customers.parquet", "options": {"on_error": "skip"}}],
    )
    timezone: str | None = Field(None, description="IANA time zone of the cron expression (UTC if empty).")


class SchedulePublic(BaseModel):
    """A schedule and when it fires."""

    name: str
    cron: str
    job_type: str
    params: dict[str, Any]
    timezone: str | None
    paused: bool
    last_fired_at: datetime | None
    next_fire_at: datetime | None


class ScheduleList(BaseModel):
    """Every schedule."""

    items: list[SchedulePublic]


class JobTypePublic(BaseModel):
    """A job type schedules can submit, with the JSON schema of its parameters."""

    name: str
    description: str
    params_schema: dict[str, Any]
