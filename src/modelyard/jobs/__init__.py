"""Batch prediction jobs: durable, chunked, resumable; their two claimed queues (``dispatch``), their dead
letters, and the job types cron schedules can start (``scheduled``). The queue page lives in ``ops/``,
schedules in ``schedules/``."""
