"""Geo: areas of interest, STAC imagery in, and the command-model runs a match starts.

How a scene flows: ``api`` (POST /api/v1/scenes) → ``scenes.post_scenes``: the body's items
(an Item, an ItemCollection, or a URL fetched through ``modelyard.fetch``) → ``stac.check_item`` (the
shipped schemas) → ``shapes.footprint`` and ``bands.normalise`` → one transaction: the scene row,
``spatial`` candidates, ``matching`` rules, ``runs.enqueue_runs`` (one queued run per model, AOI and
scene, announced as ``geo.run.queued`` on the event log).

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
- ``runs`` — ``enqueue_runs``: queued runs, once per (model, AOI, scene), announced on the event log.
- ``api`` — the routers (``/api/v1/aois``, ``/api/v1/scenes``).
"""
