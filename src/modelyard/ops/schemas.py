"""What the queue page sends: queues, workers, dead letters."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class QueuePublic(BaseModel):
    """One durable work queue."""

    name: str
    length: int = Field(description="Items waiting.")
    running: int
    completed_last_hour: int
    failed_last_hour: int
    oldest_waiting_seconds: float | None
    throughput_per_second: float = Field(description="Items finished per second over the last 5 minutes.")


class WorkerPublic(BaseModel):
    """One worker process, its heartbeat, what it runs now, and whether its work was recovered."""

    executor_id: str
    host: str
    pid: int
    queues: list[str]
    state: str = Field(description="alive, stopped, recovering (heartbeat expired) or recovered.")
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_seconds: float
    current_work: list[str]
    recovered_by: str | None
    recovered_at: datetime | None
    recovered_workflows: int


class QueuesPublic(BaseModel):
    """The queue page: queues, workers, and how many dead letters wait."""

    queues: list[QueuePublic]
    workers: list[WorkerPublic]
    dead_letters: int


class QueueHistoryPublic(BaseModel):
    """How many items of one queue finished (succeeded or failed) in each step of the window, oldest
    first."""

    name: str
    finished: list[int] = Field(description="Items finished per step, oldest step first.")


class QueuesHistoryPublic(BaseModel):
    """Every queue's finished items per step over a recent window, read from the stored rows (so it
    covers work done by every process, before this one started too)."""

    since: datetime = Field(description="Start of the first step.")
    step_seconds: int
    queues: list[QueueHistoryPublic]
