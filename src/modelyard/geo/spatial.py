"""The spatial index of active AOIs: which AOIs a footprint may touch, and which it does.

Two implementations of one port, chosen once per database (``Database.capabilities.spatial``):

- ``MemoryIndex`` (the embedded default, and PostgreSQL without PostGIS): a shapely STRtree over the
  active AOIs' prepared shapes, held in this process and rebuilt when the ``aois`` counter in
  ``geo_counters`` moved (every AOI write bumps it in its transaction, so every process sees a change
  on its next query). On SQLite the counter is read only when the database may have changed since it
  was last read on that connection: when another connection (of any process) committed meanwhile
  (``db.commits_mark``), or this process bumped it; otherwise nothing an AOI write commits can have
  happened, and the read is skipped. On PostgreSQL it is one primary-key read per query.
- ``PostgisIndex`` (scale-out): ``ST_Intersects`` over a GiST index of ``geo_aoi_shapes``, a table
  kept in step with ``aois`` in the AOI write's transaction. It is made on first use (with
  ``CREATE EXTENSION postgis``) rather than by a migration: its geometry column is PostGIS's type, which
  SQLite has not, and keeping it out of the migrations keeps autogenerate's comparison exact. A table
  made on a database that has AOIs is filled from them at once.

Every process of one deployment uses the same setting (``geo_spatial_index``), so the shapes table is
written wherever it is read.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from modelyard import db
from modelyard.geo.models import Aoi, GeoCounter
from modelyard.geo.shapes import from_geojson

log = logging.getLogger(__name__)
AOIS = "aois"  # the geo_counters row bumped by every AOI write
SHAPES = "geo_aoi_shapes"
MARKS = 64  # connections whose last mark an index keeps (a pool's, and then some)


class _Writes:
    """AOI writes begun in this process (committed or not): a commit does not move its own connection's
    commits mark, so the index learns of this process's writes here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def add(self) -> None:
        with self._lock:
            self.count += 1


_writes = _Writes()


@dataclass(frozen=True, slots=True)
class AoiEntry:
    """What matching needs of an active AOI."""

    id: int
    name: str
    model: str
    target_resolution: float
    wavelengths: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Candidate:
    """An active AOI whose bbox overlaps a footprint's, and whether their geometries intersect."""

    aoi: AoiEntry
    intersects: bool


class SpatialIndex(Protocol):
    """The port: candidates for a footprint, and AOI writes kept in step."""

    name: str

    def candidates(self, session: Session, shape: BaseGeometry) -> list[Candidate]:
        """Active AOIs whose bbox overlaps ``shape``'s, each with whether it intersects ``shape``."""
        ...

    def changed(self, session: Session, aoi_id: int, geometry: dict[str, Any] | None) -> None:
        """An AOI was written (``geometry``) or deleted (None) in ``session``'s transaction."""
        ...


def bump(session: Session) -> None:
    """Mark the AOIs changed, in ``session``'s transaction (call once per AOI write)."""
    _writes.add()
    done = session.execute(
        update(GeoCounter).where(GeoCounter.name == AOIS).values(value=GeoCounter.value + 1)
    )
    if getattr(done, "rowcount", 0) == 0:
        db.insert_new(session, GeoCounter.__table__, [{"name": AOIS, "value": 0}])
        session.execute(update(GeoCounter).where(GeoCounter.name == AOIS).values(value=GeoCounter.value + 1))


# built once: read at every match, where building the statement cost more than running it
_REVISION = select(GeoCounter.value).where(GeoCounter.name == AOIS)


def revision(session: Session) -> int:
    """The AOIs' revision: how many AOI writes there have been."""
    return session.scalar(_REVISION) or 0


def _entry(row: Any) -> AoiEntry:
    return AoiEntry(
        row.id, row.name, row.model, float(row.target_resolution), tuple(map(float, row.wavelengths))
    )


class MemoryIndex:
    """A shapely STRtree over the active AOIs, rebuilt when their revision moves."""

    name = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._revision = -1
        self._tree: shapely.STRtree | None = None
        self._entries: list[AoiEntry] = []
        self._shapes: Any = np.empty(0, dtype=object)
        # per connection serial: (commits mark, this process's AOI writes) when the revision was read
        self._marks: dict[int, tuple[int, int]] = {}

    def _current(self, session: Session) -> tuple[shapely.STRtree | None, list[AoiEntry], Any]:
        writes = _writes.count  # before the mark: this process's writes begun later move it again
        mark = db.commits_mark(session)
        with self._lock:
            if mark is not None and self._marks.get(mark[0]) == (mark[1], writes):
                return self._tree, self._entries, self._shapes
        seen = revision(session)  # read before the rows: a change committed meanwhile bumps it again
        with self._lock:
            if seen == self._revision:
                self._remember(mark, writes)
                return self._tree, self._entries, self._shapes
        rows = session.execute(
            select(Aoi.id, Aoi.name, Aoi.model, Aoi.target_resolution, Aoi.wavelengths, Aoi.geometry)
            .where(Aoi.active.is_(True))
            .order_by(Aoi.id)
        ).all()
        entries = [_entry(r) for r in rows]
        shapes = np.empty(len(rows), dtype=object)  # an array: candidates are tested in one call
        shapes[:] = [from_geojson(r.geometry) for r in rows]
        shapely.prepare(shapes)
        tree = shapely.STRtree(shapes) if len(shapes) else None
        with self._lock:
            self._revision, self._tree, self._entries, self._shapes = seen, tree, entries, shapes
            self._marks.clear()
            self._remember(mark, writes)
        return tree, entries, shapes

    def _remember(self, mark: tuple[int, int] | None, writes: int) -> None:
        """The revision read on ``mark``'s connection is the index's (called holding the lock)."""
        if mark is None:
            return
        if len(self._marks) >= MARKS:  # connections come and go (a pool's overflow): forget them all
            self._marks.clear()
        self._marks[mark[0]] = (mark[1], writes)

    def candidates(self, session: Session, shape: BaseGeometry) -> list[Candidate]:
        """Active AOIs whose bbox overlaps ``shape``'s, each with whether it intersects ``shape``."""
        tree, entries, shapes = self._current(session)
        if tree is None:
            return []
        near = np.sort(tree.query(shape))
        hits = shapely.intersects(shapes[near], shape)
        return [Candidate(entries[i], bool(hit)) for i, hit in zip(near.tolist(), hits.tolist(), strict=True)]

    def changed(self, session: Session, aoi_id: int, geometry: dict[str, Any] | None) -> None:
        """Nothing to do: the revision bumped by the write makes every process rebuild."""


class PostgisIndex:
    """``ST_Intersects`` over a GiST index of the AOIs' shapes, in PostGIS."""

    name = "postgis"

    @staticmethod
    def install(session: Session) -> None:
        """Create the extension, the shapes table and its index if missing, filling it from ``aois``."""
        session.execute(text("CREATE EXTENSION IF NOT EXISTS postgis"))
        exists = session.execute(text("SELECT to_regclass(:t)"), {"t": SHAPES}).scalar()
        if exists is not None:
            return
        session.execute(
            text(
                f"CREATE TABLE {SHAPES} (aoi_id BIGINT PRIMARY KEY REFERENCES aois(id) ON DELETE CASCADE, "
                "geom geometry(Geometry, 4326) NOT NULL)"
            )
        )
        session.execute(text(f"CREATE INDEX ix_{SHAPES}_geom ON {SHAPES} USING GIST (geom)"))
        session.execute(
            text(
                f"INSERT INTO {SHAPES} (aoi_id, geom) "
                "SELECT id, ST_SetSRID(ST_GeomFromGeoJSON(geometry::text), 4326) FROM aois"
            )
        )

    def candidates(self, session: Session, shape: BaseGeometry) -> list[Candidate]:
        """Active AOIs whose bbox overlaps ``shape``'s (the GiST index), each with ``ST_Intersects``."""
        rows = session.execute(
            text(
                "SELECT a.id, a.name, a.model, a.target_resolution, a.wavelengths, "
                "ST_Intersects(s.geom, q.g) AS hit "
                f"FROM (SELECT ST_GeomFromText(:wkt, 4326) AS g) q JOIN {SHAPES} s ON s.geom && q.g "
                "JOIN aois a ON a.id = s.aoi_id WHERE a.active ORDER BY a.id"
            ),
            {"wkt": shape.wkt},
        ).all()
        return [Candidate(_entry(r), bool(r.hit)) for r in rows]

    def changed(self, session: Session, aoi_id: int, geometry: dict[str, Any] | None) -> None:
        """Write (or drop) the AOI's shape in ``session``'s transaction."""
        if geometry is None:
            session.execute(text(f"DELETE FROM {SHAPES} WHERE aoi_id = :id"), {"id": aoi_id})
            return
        session.execute(
            text(
                f"INSERT INTO {SHAPES} (aoi_id, geom) VALUES (:id, ST_SetSRID(ST_GeomFromText(:wkt), 4326)) "
                "ON CONFLICT (aoi_id) DO UPDATE SET geom = EXCLUDED.geom"
            ),
            {"id": aoi_id, "wkt": from_geojson(geometry).wkt},
        )


_choosing = threading.Lock()


def index(database: db.Database, choice: str = "auto") -> SpatialIndex:
    """The spatial index of ``database``, chosen on first use: ``memory`` always in the embedded
    database; on PostgreSQL ``postgis`` when ``choice`` is ``postgis`` or ``auto`` and the extension can
    be made (``auto`` falls back to ``memory``, saying why), ``memory`` when asked for."""
    found = database.capabilities.spatial
    if found is None:
        with _choosing:
            if database.capabilities.spatial is None:
                database.capabilities.spatial = _choose(database, choice)
            found = database.capabilities.spatial
    assert isinstance(found, MemoryIndex | PostgisIndex)
    return found


def _choose(database: db.Database, choice: str) -> SpatialIndex:
    if database.embedded or choice == "memory":
        return MemoryIndex()
    try:
        for attempt in range(2):  # another process installing at the same moment fails one of the two
            try:
                with database.uow() as session:
                    PostgisIndex.install(session)
                break
            except Exception:
                if attempt:
                    raise
    except Exception as exc:
        if choice == "postgis":
            raise
        log.warning("PostGIS is not available (%s); AOIs are matched with an in-process index", exc)
        return MemoryIndex()
    return PostgisIndex()
