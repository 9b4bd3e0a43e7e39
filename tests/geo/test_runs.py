"""Queued runs: once per (model, AOI, scene), each new one announced on the event log."""

from __future__ import annotations

from sqlalchemy import func, select

from modelyard import db
from modelyard.durable import log
from modelyard.geo.models import Aoi, GeoRun, Scene
from modelyard.geo.runs import enqueue_runs
from modelyard.migrate import upgrade

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}


def test_enqueue_runs_is_idempotent_and_logs_each_new_run_once(database_url: str) -> None:
    engine = db.make_engine(database_url)
    upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    try:
        with db.unit_of_work(sessions) as session:
            box = {"min_lon": 0.0, "min_lat": 0.0, "max_lon": 1.0, "max_lat": 1.0}
            aoi = Aoi(name="a", geometry=SQUARE, target_resolution=10.0, model="m", **box)
            scene = Scene(stac_id="s1", item={}, geometry=SQUARE, **box)
            session.add_all([aoi, scene])
            session.flush()
            first = enqueue_runs(session, [("m", aoi.id, scene.id), ("n", aoi.id, scene.id)])
        with db.unit_of_work(sessions) as session:
            again = enqueue_runs(session, [("n", aoi.id, scene.id), ("m", aoi.id, scene.id)])
            runs = session.scalar(select(func.count()).select_from(GeoRun))
            events = log.read(session, prefixes=["geo.run."])
    finally:
        engine.dispose()
    assert [new for _, new in first] == [True, True]
    assert again == [(first[1][0], False), (first[0][0], False)]
    assert runs == 2
    assert [(e.topic, e.subject, e.data["run_id"]) for e in events] == [
        ("geo.run.queued", "m", first[0][0]),
        ("geo.run.queued", "n", first[1][0]),
    ]
    assert events[0].data == {"run_id": first[0][0], "model": "m", "aoi_id": aoi.id, "scene_id": scene.id}
