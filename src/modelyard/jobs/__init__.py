"""Batch prediction jobs: durable, chunked, resumable; plus queue monitoring and schedules."""
