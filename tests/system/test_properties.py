"""Properties (issue 9 item 6): routing, the input schemas, and submit/retry/crash/restart.

Hypothesis draws the cases; each property is checked against an independent
brute-force answer or a model, never against the code under test itself.

- Routing, over the 888-grid demo layer: a point in the layer maps to exactly one
  grid, the one brute force finds (on a shared edge or vertex: the lowest code, as
  app/grids/index.py documents); the same point gives the same answer every time
  and from an index built in another order; a point outside goes to the nearest
  grid within `nearest_grid_m`, or nowhere.
- The marshmallow schemas of the API and intake: any JSON value in any field loads
  cleanly or raises ValidationError, nothing else; NaN, infinities and huge numbers
  are refused.
- A state machine submits tips with Idempotency-Keys, retries them (same payload:
  the same reference; changed payload: 422), crashes between the photo write and
  the commit, restarts (new engine) and sweeps orphans; after every step there is
  one tip per acknowledged key, every photo row has its files, and after a sweep
  no file lacks a row.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import random
import uuid
from pathlib import Path

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)
from marshmallow import Schema, ValidationError
from PIL import Image
from shapely.geometry import shape
from sqlalchemy import func, select

from app.config import Settings
from app.db import Base, make_engine, make_session_factory, unit_of_work
from app.grids.demo_layer import EAST, NORTH, SOUTH, WEST, build_demo_layer
from app.grids.index import METRES_PER_DEGREE, GridIndex
from app.reports.errors import IdempotencyKeyReused
from app.reports.models import Photo, Tip
from app.reports.services import Upload, submit_tip
from app.reports.storage import LocalMediaStore
from app.reports.sweeper import referenced_keys, sweep_orphans
from tests.system import tally

NEAREST_M = 300.0  # Settings.nearest_grid_m
PROPERTY = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


def _count(n: int = 1) -> None:
    tally.add("property examples run", n)


# --- routing ---------------------------------------------------------------------------------


@functools.cache
def _grids() -> tuple[list[str], np.ndarray]:
    """The demo layer's grid codes and polygons (WGS-84), sorted by code."""
    features = [f for f in build_demo_layer()["features"] if f["properties"]["level"] == "grid"]
    features.sort(key=lambda f: f["properties"]["code"])
    codes = [f["properties"]["code"] for f in features]
    geoms = np.array([shape(f["geometry"]) for f in features], dtype=object)
    return codes, geoms


@functools.cache
def _index(shuffle_seed: int | None = None) -> GridIndex:
    codes, geoms = _grids()
    items = [(n + 1, code, geom) for n, (code, geom) in enumerate(zip(codes, geoms, strict=True))]
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(items)
    return GridIndex.build(items)


def _holding(x: float, y: float) -> list[str]:
    """Brute force: the codes of every grid whose closed polygon holds the point."""
    codes, geoms = _grids()
    hits = shapely.intersects(geoms, shapely.Point(x, y))
    return [codes[i] for i in np.flatnonzero(hits)]


def _metres_to(x: float, y: float) -> np.ndarray:
    """Brute force: metres from the point to every grid (local equirectangular projection)."""
    _, geoms = _grids()
    scale = np.array([math.cos(math.radians(y)) * METRES_PER_DEGREE, METRES_PER_DEGREE])
    local = shapely.transform(geoms, lambda c: (c - (x, y)) * scale)
    return shapely.distance(local, shapely.Point(0.0, 0.0))


inside_layer = st.tuples(
    st.floats(WEST, EAST, allow_nan=False), st.floats(SOUTH, NORTH, allow_nan=False)
)


@st.composite
def on_a_boundary(draw) -> tuple[float, float]:
    """A vertex of some grid, or a point along one of its edges (mostly shared ones)."""
    codes, geoms = _grids()
    ring = np.asarray(geoms[draw(st.integers(0, len(codes) - 1))].exterior.coords)
    k = draw(st.integers(0, len(ring) - 2))
    t = draw(st.sampled_from([0.0, 0.5]) | st.floats(0, 1))
    x, y = ring[k] + t * (ring[k + 1] - ring[k])
    return float(x), float(y)


@PROPERTY
@given(point=inside_layer)
def test_every_point_in_the_layer_maps_to_exactly_the_grid_that_holds_it(point):
    _count()
    x, y = point
    holding = _holding(x, y)
    assert holding, "the demo layer covers its box with no gaps"
    hit = _index().locate(x, y, nearest_m=NEAREST_M)
    assert hit is not None and hit.code == min(holding)
    assert hit.reason == ("inside" if len(holding) == 1 else "edge")
    assert hit.distance_m == 0.0


@PROPERTY
@given(point=on_a_boundary())
def test_points_on_shared_edges_go_to_the_lowest_code_every_time(point):
    _count()
    x, y = point
    holding = _holding(x, y)
    answers = {_index().locate(x, y).code for _ in range(3)}
    answers |= {_index(seed).locate(x, y).code for seed in (1, 2)}  # other build orders
    answers.add(str(_grid_code(_index().locate_many([x], [y])[0])))
    assert answers == {min(holding)}, (holding, answers)


def _grid_code(grid_id: int) -> str:
    return _grids()[0][grid_id - 1]


outside_layer = st.one_of(
    st.tuples(
        st.floats(WEST - 0.05, WEST, exclude_max=True), st.floats(SOUTH - 0.05, NORTH + 0.05)
    ),
    st.tuples(
        st.floats(EAST, EAST + 0.05, exclude_min=True), st.floats(SOUTH - 0.05, NORTH + 0.05)
    ),
    st.tuples(st.floats(WEST, EAST), st.floats(NORTH, NORTH + 0.05, exclude_min=True)),
    st.tuples(st.floats(WEST, EAST), st.floats(SOUTH - 0.05, SOUTH, exclude_max=True)),
)


@PROPERTY
@given(point=outside_layer)
def test_points_outside_go_to_the_nearest_grid_within_reach_or_nowhere(point):
    _count()
    x, y = point
    assert _holding(x, y) == []
    metres = _metres_to(x, y)
    closest = float(metres.min())
    hit = _index().locate(x, y, nearest_m=NEAREST_M)
    if closest > NEAREST_M + 0.01:
        assert hit is None
    elif closest < NEAREST_M - 0.01:
        assert hit is not None and hit.reason == "nearest"
        assert hit.distance_m == pytest.approx(closest, abs=0.01)
        tied = [c for c, m in zip(_grids()[0], metres, strict=True) if m <= closest + 1e-6]
        assert hit.code == min(tied)


@given(x=st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 181.0]), y=st.floats())
@settings(max_examples=30, deadline=None, database=None)
def test_impossible_coordinates_route_nowhere(x, y):
    _count()
    assert _index().locate(x, y) is None
    assert _index().locate(y, x) is None


# --- the input schemas -----------------------------------------------------------------------


def _schemas() -> list[type[Schema]]:
    from app.api.grids import LookupArgs
    from app.api.leaderboard import LeaderboardArgs
    from app.api.reporters import MeArgs, RedeemSchema
    from app.api.staff import ActionBody, TipListArgs
    from app.reports.schemas import TipInputSchema

    return [
        TipInputSchema,
        RedeemSchema,
        MeArgs,
        LookupArgs,
        TipListArgs,
        ActionBody,
        LeaderboardArgs,
    ]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["", "nan", "inf", "-1e400", "1e400", "T-000000", "2026-Q4", "\x00"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


def _field_names(schema: Schema) -> list[str]:
    return [f.data_key or name for name, f in schema.fields.items()]


@PROPERTY
@given(data=st.data())
def test_any_json_in_any_field_loads_or_is_a_validation_error(data):
    _count()
    schema = data.draw(st.sampled_from(_schemas()))()
    names = [*_field_names(schema), "grid_id", "points", "status", "reporter_id"]
    payload = data.draw(st.dictionaries(st.sampled_from(names), json_values, max_size=6))
    with contextlib.suppress(ValidationError):
        schema.load(payload)


numeric_fields = [
    (schema, name, field)
    for schema in _schemas()
    for name, field in schema().fields.items()
    if type(field).__name__ in ("Float", "Integer", "Number", "Decimal")
]


@PROPERTY
@given(
    target=st.sampled_from(numeric_fields),
    value=st.sampled_from([math.nan, math.inf, -math.inf, "NaN", "Infinity", "-inf", "1e400"])
    | st.integers(min_value=2**31).map(lambda n: n * (-1 if n % 2 else 1))
    | st.floats(min_value=1e12, allow_infinity=False),
)
def test_nan_infinity_and_huge_numbers_are_refused(target, value):
    _count()
    schema_class, name, field = target
    schema = schema_class()
    payload = {(field.data_key or name): value}
    if schema_class.__name__ == "TipInputSchema":
        payload = {"category": "theft", "latitude": 40.6, "longitude": 122.5, **payload}
    if schema_class.__name__ == "LookupArgs":
        payload = {"lat": 40.6, "lon": 122.5, **payload}
    with pytest.raises(ValidationError) as refused:
        schema.load(payload)
    assert (field.data_key or name) in refused.value.messages


# --- submit / retry / crash / restart ----------------------------------------------------------


class Crash(BaseException):
    """Stands in for SIGKILL between the photo write and the commit."""


def _photo(seed: int) -> bytes:
    rng = random.Random(seed)
    im = Image.frombytes("RGB", (96, 72), bytes(rng.randrange(256) for _ in range(96 * 72 * 3)))
    buf = io.BytesIO()
    im.save(buf, "JPEG")
    return buf.getvalue()


PHOTOS = [_photo(seed) for seed in range(3)]  # a small pool: tips share photos (and files)
# What people type: any printable text (NUL and other controls are refused, tested above).
TEXT = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(
    str.strip
)
PHOTO_SETS = st.lists(st.integers(0, len(PHOTOS) - 1), max_size=2, unique=True).map(tuple)
SOME_PHOTOS = st.lists(st.integers(0, len(PHOTOS) - 1), min_size=1, max_size=2, unique=True).map(
    tuple
)


class IntakeMachine(RuleBasedStateMachine):
    """Submit, retry, crash, restart and sweep; the model is the set of acknowledged keys."""

    url: str = ""
    root: Path = Path()

    acknowledged = Bundle("acknowledged")
    crashed = Bundle("crashed")

    def __init__(self):
        super().__init__()
        self.run = uuid.uuid4().hex[:8]  # this example's tips, in a database shared by all
        self.settings = Settings(
            database_url=self.url,
            secret_key="property-secret",
            media_dir=self.root / "media",
            instance_dir=self.root,
            testing=True,
        )
        self.store = LocalMediaStore(self.settings.media_dir)
        self.engine = make_engine(self.url)
        self.factory = make_session_factory(self.engine)
        self.refs: dict[str, tuple[str, dict, tuple[int, ...]]] = {}  # key -> ref, fields, photos
        self.steps = 0

    def teardown(self):
        self.engine.dispose()
        _count(self.steps)

    def _fields(self, text: str) -> dict:
        return {"category": "traffic", "description": f"{self.run} {text}",
                "latitude": 40.635, "longitude": 122.495}  # fmt: skip

    def _submit(self, key: str, fields: dict, photos: tuple[int, ...], session):
        return submit_tip(
            session, self.settings, self.store, fields=fields, channel="api",
            uploads=[Upload(PHOTOS[p], "p.jpg") for p in photos], idempotency_key=key,
        )  # fmt: skip

    @rule(target=acknowledged, text=TEXT, photos=PHOTO_SETS)
    def submit(self, text, photos):
        self.steps += 1
        key, fields = str(uuid.uuid4()), self._fields(text)
        with unit_of_work(self.factory) as s:
            result = self._submit(key, fields, photos, s)
        assert result.status_code == 201 and not result.replayed
        self.refs[key] = (result.ref, fields, photos)
        return key

    @rule(key=acknowledged)
    def retry_same(self, key):
        self.steps += 1
        ref, fields, photos = self.refs[key]
        with unit_of_work(self.factory) as s:
            result = self._submit(key, fields, photos, s)
        assert (result.ref, result.replayed, result.status_code) == (ref, True, 201)

    @rule(key=acknowledged, extra=TEXT)
    def retry_changed(self, key, extra):
        self.steps += 1
        _, fields, photos = self.refs[key]
        changed = {**fields, "description": fields["description"] + extra}
        with pytest.raises(IdempotencyKeyReused) as refused, unit_of_work(self.factory) as s:
            self._submit(key, changed, photos, s)
        assert refused.value.status == 422

    @rule(target=crashed, text=TEXT, photos=SOME_PHOTOS)
    def crash(self, text, photos):
        """The process dies after the photos are written and before the commit."""
        self.steps += 1
        key, fields = str(uuid.uuid4()), self._fields(text)
        with pytest.raises(Crash), unit_of_work(self.factory) as s:
            self._submit(key, fields, photos, s)
            raise Crash
        self.refs[key] = ("", fields, photos)
        return key

    @rule(target=acknowledged, key=consumes(crashed))
    def retry_after_crash(self, key):
        """The client never heard back: it sends the same tip with the same key again."""
        self.steps += 1
        _, fields, photos = self.refs[key]
        with unit_of_work(self.factory) as s:
            result = self._submit(key, fields, photos, s)
        assert result.status_code == 201 and not result.replayed
        self.refs[key] = (result.ref, fields, photos)
        return key

    @rule()
    def restart(self):
        self.steps += 1
        self.engine.dispose()
        self.engine = make_engine(self.url)
        self.factory = make_session_factory(self.engine)
        self.store = LocalMediaStore(self.settings.media_dir)

    @rule()
    def sweep(self):
        self.steps += 1
        with unit_of_work(self.factory) as s:
            sweep_orphans(s, self.store, grace_seconds=0)
            keep = referenced_keys(s)
        assert {key for key, _ in self.store.iter_keys()} == keep

    @invariant()
    def one_tip_per_acknowledged_key(self):
        with self.factory() as s:
            stored = list(
                s.execute(
                    select(Tip.ref, func.count(Photo.id))
                    .outerjoin(Photo, Photo.tip_id == Tip.id)
                    .where(Tip.description.like(f"{self.run} %"))
                    .group_by(Tip.ref)
                )
            )
        expected = {ref: len(photos) for ref, _, photos in self.refs.values() if ref}
        assert dict(stored) == expected

    @invariant()
    def no_photo_row_without_its_files(self):
        with self.factory() as s:
            keep = referenced_keys(s)
        files = {key for key, _ in self.store.iter_keys()}
        assert keep <= files


def test_submit_retry_crash_restart_keeps_exactly_once(pg_schema_url, tmp_path):
    """On PostgreSQL (the production database), in-process so hundreds of steps take seconds."""
    import app.models  # noqa: F401
    from tests.layers import seed_small

    engine = make_engine(pg_schema_url)
    Base.metadata.create_all(engine)
    seed_small(make_session_factory(engine))
    engine.dispose()
    os.makedirs(tmp_path / "media", exist_ok=True)
    IntakeMachine.url, IntakeMachine.root = pg_schema_url, tmp_path
    run_state_machine_as_test(
        IntakeMachine,
        settings=settings(
            max_examples=20,
            stateful_step_count=20,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
