"""Geo: areas of interest, STAC imagery in, and the command-model runs a match starts.

Modules:

- ``models`` — tables: ``aois``, ``scenes``, ``geo_runs``, ``geo_counters`` (the AOI revision).
- ``runs`` — ``enqueue_runs``: queued runs, once per (model, AOI, scene), announced on the event log.
"""
