"""Geo: areas of interest, STAC imagery in, and the command-model runs a match starts.

How a scene flows: ``api`` (POST /api/v1/scenes) → ``scenes.post_scenes``: the body's items
(an Item, an ItemCollection, or a URL fetched through ``modelyard.fetch``) → ``stac.check_item`` (the
shipped schemas) → ``shapes.footprint`` and ``bands.normalise`` → one transaction: the scene row,
``spatial`` candidates, ``matching`` rules, ``runs.enqueue_runs`` (one queued run per model, AOI and
scene, announced as ``geo.run.queued`` on the event log); once that commits, a post that queued runs wakes
this process's ``geo.runs`` loop.

Modules:

- ``models`` — tables: ``aois``, ``scenes``, ``geo_runs``, ``geo_counters`` (the AOI revision).
- ``schemas`` — what crosses the wire (``AoiCreate``/``AoiUpdate``/``AoiPublic``, ``ScenesPosted``...).
- ``aois`` — the AOI service: CRUD and filters; every write bumps the AOI revision and keeps the spatial
  index in step, in its transaction.
- ``scenes`` — the scenes service: posts (all or nothing), listing.
- ``stac`` — validation against the STAC core, eo, projection and label schemas shipped in the package.
- ``bands`` — spectral bands and GSD normalised (eo v1.x and STAC 1.1 / eo v2; common-name table).
- ``shapes`` — footprints: checked, repaired where unambiguous, split at the antimeridian.
- ``spatial`` — the spatial index port: ``MemoryIndex`` (STRtree, keyed on the AOI revision) or
  ``PostgisIndex`` (``ST_Intersects`` over GiST), chosen once per database (``Capabilities.spatial``).
- ``matching`` — the rules, pure: intersects, GSD <= target resolution, every wavelength in a band.
- ``api`` — the routers (``/api/v1/aois``, ``/api/v1/scenes``).
- ``runs`` — ``enqueue_runs``: queued runs, once per (model, AOI, scene), announced on the event log;
  ``end_run``, reads, ``cancel_run``, ``retry_run``.
- ``execution`` — a run's attempts: ``start_run`` (a new single-use token, stored hashed, expiring at
  the command's timeout plus ``geo_run_token_grace_seconds``), ``execute`` (the command in
  ``modelyard.sandbox`` with the item's path as its last argument, ``MODELYARD_CALLBACK_URL``,
  ``MODELYARD_RUN_TOKEN`` and ``MODELYARD_RUN_ID`` in a scrubbed environment; stdout/stderr kept at
  ``geo/runs/{id}/``), ``finish_run``, ``sweep_lost``.
- ``run_models`` — tables ``geo_run_tokens`` (each run's current token hash) and ``geo_predictions``.
- ``dispatch`` — the ``geo.runs`` claimed queue; ``workflows`` — ``geo.run`` (one step: take, run,
  settle; a killed worker's run is recovered and run again, up to ``geo_run_max_attempts``) and the
  heartbeat sweep of runs whose workflow is gone.
- ``labels`` — pure checks of a reported label item and its GeoJSON; per-class counts, geodesic area.
- ``results`` — the callback (``report``: 401 wrong token, 409 used, 410 expired, 422 bad item; nothing
  stored unless all is accepted) and predictions as a STAC ItemCollection.
- ``summaries`` — per model and per AOI: runs by state, scenes seen and matched, area covered, classes
  and labelled area, per UTC day.
- ``runs_api`` — ``/api/v1/runs``, ``/api/v1/predictions``, ``/api/v1/models/{m}/summary``,
  ``/api/v1/aois/{id}/summary``.

Event-log topics (``durable.log``; subject: the model name; data always has ``model``, ``run_id``,
``model_version``, ``aoi_id``, ``scene_id``, ``state``, ``attempt``), each appended in the transaction of
the change:

- ``geo.run.queued`` — a match queued a run (or a failed one was retried: ``retry`` true).
- ``geo.run.started`` — a worker took the run for an attempt.
- ``geo.results.available`` — the run reported a label item: ``prediction_id``, ``uri`` (its GeoJSON in
  the artifact store), ``summary`` (``features``, ``area_m2``, ``classes``).
- ``geo.run.succeeded`` — its command exited 0 having reported.
- ``geo.run.failed`` — ``error``: non-zero exit (with the stderr tail), timeout, a limit, no report
  before exit, a model that is gone, or a worker that died on every attempt.
- ``geo.run.cancelled`` — cancelled through the API.
"""
