"""Cron schedules any part can use: a schedule starts a registered job type once per slot, whatever the
number of workers (``service``: job types and schedules; ``workflows``: what DBOS fires; ``api``:
``/api/v1/schedules``)."""
