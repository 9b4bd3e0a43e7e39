"""Operating the service: the queue page (every claimed queue and DBOS queue, every worker, dead
letters) at ``/api/v1/queues`` and as Prometheus gauges at ``/metrics``."""
