"""Pipelines: named, versioned DAGs of stages that events (one raw data location each) flow through."""
