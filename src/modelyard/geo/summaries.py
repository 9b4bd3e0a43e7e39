"""What a model, or one AOI, saw and found over a time range: runs by state, scenes seen and matched,
the AOI area the matched scenes covered, labelled features per class and labelled area, in total and
per UTC day. Read from the runs, scenes and predictions of the range (bounded by it)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shapely.geometry import mapping
from shapely.ops import unary_union
from sqlalchemy import func, select

from modelyard.errors import AoiNotFound, BadRequest
from modelyard.geo.labels import area_m2
from modelyard.geo.models import Aoi, GeoRun, Scene
from modelyard.geo.run_models import GeoPrediction
from modelyard.geo.run_schemas import DayBucket, Summary
from modelyard.geo.shapes import from_geojson
from modelyard.registry import service as registry

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from modelyard.context import AppContext

DEFAULT_DAYS = 30
MAX_DAYS = 366


def time_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """The range asked for (UTC; default: the last 30 days), at most a year; 400 naming the bound."""
    end = _utc(end) if end is not None else datetime.now(UTC)
    start = _utc(start) if start is not None else end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        raise BadRequest("start must be before end", field="start")
    if end - start > timedelta(days=MAX_DAYS):
        raise BadRequest(f"the range is over {MAX_DAYS} days", field="end")
    return start, end


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _day(value: datetime) -> date:
    return _utc(value).date()


def _covered_m2(session: Session, aoi_ids: list[int], runs: list[GeoRun]) -> float:
    """The area of each AOI covered by the scenes matched to it, summed over the AOIs."""
    scenes_of: dict[int, set[int]] = defaultdict(set)
    for run in runs:
        scenes_of[run.aoi_id].add(run.scene_id)
    total = 0.0
    for aoi_id in aoi_ids:
        if not scenes_of[aoi_id]:
            continue
        aoi = session.get_one(Aoi, aoi_id)
        footprints = session.scalars(select(Scene.geometry).where(Scene.id.in_(scenes_of[aoi_id])))
        covered = unary_union([from_geojson(g) for g in footprints]).intersection(from_geojson(aoi.geometry))
        total += area_m2(dict(mapping(covered)))
    return total


def _summarise(
    session: Session,
    *,
    model: str | None,
    aoi: Aoi | None,
    aoi_ids: list[int],
    start: datetime,
    end: datetime,
) -> Summary:
    run_where: list[Any] = [GeoRun.created_at >= start, GeoRun.created_at < end]
    pred_where: list[Any] = [GeoPrediction.created_at >= start, GeoPrediction.created_at < end]
    scene_where: list[Any] = [Scene.created_at >= start, Scene.created_at < end]
    if aoi is not None:
        run_where.append(GeoRun.aoi_id == aoi.id)
        pred_where.append(GeoPrediction.aoi_id == aoi.id)
        scene_where += [
            Scene.max_lon >= aoi.min_lon,
            Scene.max_lat >= aoi.min_lat,
            Scene.min_lon <= aoi.max_lon,
            Scene.min_lat <= aoi.max_lat,
        ]
    else:
        run_where.append(GeoRun.model == model)
        pred_where.append(GeoPrediction.model == model)
    runs = list(session.scalars(select(GeoRun).where(*run_where)))
    predictions = list(session.scalars(select(GeoPrediction).where(*pred_where)))
    seen = session.scalar(select(func.count()).select_from(Scene).where(*scene_where)) or 0
    days: dict[date, dict[str, Any]] = {}
    day = start.date()
    while day <= (end - timedelta(microseconds=1)).date():
        days[day] = {"runs": Counter(), "scenes": set(), "predictions": 0, "area": 0.0, "classes": Counter()}
        day += timedelta(days=1)
    for run in runs:
        bucket = days[_day(run.created_at)]
        bucket["runs"][run.state] += 1
        bucket["scenes"].add(run.scene_id)
    classes: Counter[str] = Counter()
    labelled = 0.0
    for p in predictions:
        bucket = days[_day(p.created_at)]
        bucket["predictions"] += 1
        bucket["area"] += p.summary["area_m2"]
        for name, entry in p.summary["classes"].items():
            bucket["classes"][name] += int(entry["count"])
            classes[name] += int(entry["count"])
        labelled += p.summary["area_m2"]
    return Summary(
        model=model,
        aoi_id=aoi.id if aoi is not None else None,
        start=start,
        end=end,
        runs=dict(Counter(r.state for r in runs)),
        scenes_seen=seen,
        scenes_matched=len({r.scene_id for r in runs}),
        area_covered_m2=_covered_m2(session, aoi_ids, runs),
        predictions=len(predictions),
        classes=dict(classes),
        labelled_area_m2=labelled,
        days=[
            DayBucket(
                day=d,
                runs=dict(b["runs"]),
                scenes_matched=len(b["scenes"]),
                predictions=b["predictions"],
                labelled_area_m2=b["area"],
                classes=dict(b["classes"]),
            )
            for d, b in days.items()
        ],
    )


def model_summary(ctx: AppContext, name: str, start: datetime | None, end: datetime | None) -> Summary:
    """A model's summary over the range (404 if the model does not exist)."""
    first, last = time_range(start, end)
    with ctx.uow() as session:
        registry.get_model(session=session, name=name)
        aoi_ids = list(session.scalars(select(Aoi.id).where(Aoi.model == name)))
        return _summarise(session, model=name, aoi=None, aoi_ids=aoi_ids, start=first, end=last)


def aoi_summary(ctx: AppContext, aoi_id: int, start: datetime | None, end: datetime | None) -> Summary:
    """An AOI's summary over the range (404 if there is no such AOI)."""
    first, last = time_range(start, end)
    with ctx.uow() as session:
        aoi = session.get(Aoi, aoi_id)
        if aoi is None:
            raise AoiNotFound(aoi_id)
        return _summarise(session, model=aoi.model, aoi=aoi, aoi_ids=[aoi.id], start=first, end=last)
