"""The triage queue's first page with 1,000,000 tips on PostgreSQL, against the bare indexed query.

Run: .venv/bin/python bench/bench_queue.py [--tips 1000000] [--runs 30] [--reload] [--drop]

It works in a dedicated database, tipline_bench_queue, on the server of
TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test): the
schema from the models, the demo city (888 grids), two supervisors, then N tips
written by one INSERT … SELECT over generate_series (no ORM objects) — spread
over the grids (the centre busier), a year of received times, realistic statuses
(most closed) and priorities — and ANALYZE. The database is KEPT for the next
run: a marker table records the tip count and a fingerprint of the schema, and a
later run with the same count and schema reuses it (seconds instead of a minute).
--reload rebuilds it, --drop drops it at the end.

Then, as a city supervisor and as a town supervisor, it times:

  service  app.staff.queue.queue_page(session, viewer, limit=50): the Core select
           of the queue's columns with the grid, reporter and assignee names as
           scalar subqueries (categories from a cached lookup), rows turned into
           QueueRow objects and the next-page cursor, on a session already in a
           transaction (as in a request);
  bare     the same WHERE (open, in scope), ORDER BY and LIMIT on the tips table
           alone, through psycopg with no ORM: what the ix_tips_queue index costs.

Runs are interleaved; medians of --runs each. QUALITY.md: service ≤ 3× bare and
≤ 50 ms. EXPLAIN (ANALYZE, BUFFERS) of both statements goes to
bench/results/queue_explain.txt.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

import app.models  # noqa: F401  (registers every table)
from app.db import Base, make_engine, make_session_factory
from app.grids.demo_layer import CITY_CODE, build_demo_layer
from app.grids.models import Grid
from app.grids.services import import_layer, route_point
from app.people.models import StaffUser
from app.people.services import create_staff_user
from app.reports.categories import seed_categories
from app.reports.clock import DEFAULT_TARGETS
from app.reports.models import Category
from app.staff.queue import OPEN_STATUSES, QueueFilters, queue_page, queue_query
from app.staff.scope import viewer_for
from bench.databases import create_database, database_url, drop_database, exists
from bench.report import PG_URL, RESULTS, absolute, compare, save

DATABASE = "tipline_bench_queue"
TARGET_RATIO = 3.0
TARGET_MS = 50.0
PAGE = 50
CENTRE = (40.6406, 122.5052)
# Share of tips by staff status (most of a year's tips are closed) and by priority.
STATUSES = (
    ("resolved", 0.70),
    ("rejected", 0.05),
    ("duplicate", 0.05),
    ("new", 0.05),
    ("acknowledged", 0.05),
    ("assigned", 0.05),
    ("in_progress", 0.05),
)
PRIORITY_SHARES = (("urgent", 0.05), ("high", 0.15), ("normal", 0.60), ("low", 0.20))
RANK = {"urgent": 0, "high": 1, "normal": 2, "low": 3}
NEEDS_LOCATION_SHARE = 0.01
COLUMNS = (
    "ref",
    "channel",
    "category_id",
    "description",
    "received_at",
    "latitude",
    "longitude",
    "location_source",
    "grid_id",
    "routing_reason",
    "layer_version",
    "flags",
    "grid_path",
    "priority",
    "priority_rank",
    "priority_reasons",
    "status",
    "is_open",
    "ack_due_at",
    "resolve_due_at",
    "acknowledged_at",
    "resolved_at",
    "escalation_level",
    "next_escalation_at",
    "updated_at",
)


def seed(session_factory) -> tuple[dict, str, list, list]:
    """Import the demo city, categories and two supervisors: ids, the town, grids, categories."""
    with session_factory() as s:
        seed_categories(s)
        result = import_layer(
            s, build_demo_layer(), crs="wgs84", replace=False, source_name="demo", synthetic=True
        )
        town = route_point(s, *CENTRE).path[1]["code"]
        city = create_staff_user(s, "bench-city", "supervisor", grids=[CITY_CODE])
        townie = create_staff_user(s, "bench-town", "supervisor", grids=[town])
        grids = s.execute(
            select(Grid.id, Grid.path, Grid.min_lat, Grid.max_lat, Grid.min_lon, Grid.max_lon)
            .where(Grid.layer_id == result.layer_id, Grid.level == "grid")
            .order_by(Grid.id)
        ).all()
        categories = list(s.scalars(select(Category.id)))
        s.commit()
        ids = {"city": city.id, "town": townie.id, "version": result.version}
        return ids, town, grids, categories


def _cumulative(shares) -> str:
    """CASE over one random draw picking a value by its share (shares add up to 1)."""
    parts, total = [], 0.0
    for value, share in shares[:-1]:
        total += share
        parts.append(f"WHEN {{r}} < {total:.4f} THEN '{value}'")
    return "CASE " + " ".join(parts) + f" ELSE '{shares[-1][0]}' END"


def write_tips(url: str, n: int, grids, categories, version: int) -> float:
    """INSERT … SELECT n synthetic tips over generate_series, then ANALYZE; the seconds taken."""
    # The centre is busier: weight grids by closeness to it; pick one by a cumulative bucket.
    weights = [
        1.0
        / (
            0.02
            + abs((g.min_lat + g.max_lat) / 2 - CENTRE[0])
            + abs((g.min_lon + g.max_lon) / 2 - CENTRE[1])
        )
        for g in grids
    ]
    total, lower = sum(weights), [0.0]
    for w in weights[:-1]:
        lower.append(lower[-1] + w / total)
    status = _cumulative(STATUSES).format(r="r_status")
    priority = _cumulative(PRIORITY_SHARES).format(r="r_prio")
    ack = " ".join(f"WHEN '{p}' THEN {a}" for p, (a, _) in DEFAULT_TARGETS.items())
    resolve = " ".join(f"WHEN '{p}' THEN {r}" for p, (_, r) in DEFAULT_TARGETS.items())
    rank = " ".join(f"WHEN '{p}' THEN {r}" for p, r in RANK.items())
    open_list = ", ".join(f"'{s}'" for s in OPEN_STATUSES)
    # Every literal above comes from this file or the code's own constants; n is bound.
    insert = f"""
    INSERT INTO tips ({", ".join(COLUMNS)})
    SELECT 'T-' || lpad(upper(to_hex(i)), 6, '0'),
           (ARRAY['telegram', 'telegram', 'web', 'api'])[1 + floor(r_chan * 4)::int],
           (%(categories)s::int[])[1 + floor(r_cat * %(n_categories)s)::int],
           'bench tip', received,
           CASE WHEN g.id IS NULL THEN NULL ELSE g.min_lat + r_lat * (g.max_lat - g.min_lat) END,
           CASE WHEN g.id IS NULL THEN NULL ELSE g.min_lon + r_lon * (g.max_lon - g.min_lon) END,
           CASE WHEN g.id IS NULL THEN 'none' ELSE 'device' END,
           g.id,
           CASE WHEN g.id IS NULL THEN 'no_location' ELSE 'inside' END,
           CASE WHEN g.id IS NULL THEN NULL ELSE %(version)s END,
           CASE WHEN g.id IS NULL THEN '["needs_location"]' ELSE '[]' END::json,
           g.path, priority, CASE priority {rank} END, '[]'::json, status, is_open,
           received + make_interval(mins => CASE priority {ack} END),
           received + make_interval(mins => CASE priority {resolve} END),
           CASE WHEN status = 'new' THEN NULL
                ELSE received + make_interval(
                    secs => 60 * (1 + r_ack * (2 * CASE priority {ack} END - 1))) END,
           CASE WHEN is_open THEN NULL
                ELSE received + make_interval(secs => 3600 * (1 + r_res * 47)) END,
           0,
           CASE WHEN status = 'new'
                THEN received + make_interval(mins => CASE priority {ack} END) END,
           received
    FROM (
        SELECT *, status IN ({open_list}) AS is_open,
               (now() AT TIME ZONE 'utc') - make_interval(secs => 60 * CASE
                   WHEN status IN ({open_list}) THEN -600 * ln(1 - r_age)
                   ELSE 525600 * r_age END) AS received
        FROM (
            SELECT i, {status} AS status, {priority} AS priority, r_chan, r_cat, r_lat, r_lon,
                   r_age, r_ack, r_res,
                   CASE WHEN r_loc < %(needs_location)s THEN NULL
                        ELSE width_bucket(r_grid, %(lower)s::float8[]) END AS k
            FROM (
                SELECT i, random() AS r_status, random() AS r_prio, random() AS r_chan,
                       random() AS r_cat, random() AS r_lat, random() AS r_lon,
                       random() AS r_age, random() AS r_ack, random() AS r_res,
                       random() AS r_loc, random() AS r_grid
                FROM generate_series(0, %(n)s - 1) AS i
            ) draws
        ) picked
    ) t
    LEFT JOIN bench_grid_pick g ON g.k = t.k
    ORDER BY i
    """  # noqa: S608
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        conn.execute("SELECT setseed(0.2026)")
        conn.execute(
            "CREATE TEMP TABLE bench_grid_pick (k int PRIMARY KEY, id int, path text, "
            "min_lat float8, max_lat float8, min_lon float8, max_lon float8)"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO bench_grid_pick VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    (k, g.id, g.path, g.min_lat, g.max_lat, g.min_lon, g.max_lon)
                    for k, g in enumerate(grids, start=1)
                ],
            )
            cur.execute(
                insert,
                {
                    "n": n,
                    "categories": categories,
                    "n_categories": len(categories),
                    "version": version,
                    "needs_location": NEEDS_LOCATION_SHARE,
                    "lower": lower,
                },
            )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE tips")
    return time.perf_counter() - started


def schema_fingerprint() -> str:
    """A hash of the tables and indexes the models make: a changed schema means a reload."""
    dialect = postgresql.dialect()
    parts = []
    for table in Base.metadata.sorted_tables:
        parts.append(str(CreateTable(table).compile(dialect=dialect)))
        parts += sorted(str(CreateIndex(i).compile(dialect=dialect)) for i in table.indexes)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def ready_database(base: str, n: int, reload: bool) -> tuple[str, dict]:
    """The loaded database's URL and marker: reused when it holds n tips of this schema."""
    url = database_url(DATABASE, base)
    fingerprint = schema_fingerprint()
    if exists(DATABASE, base) and not reload:
        with psycopg.connect(url) as conn:
            try:
                row = conn.execute(
                    "SELECT tips, fingerprint, city_id, town_id, town, load_seconds "
                    "FROM bench_marker"
                ).fetchone()
            except psycopg.errors.UndefinedTable:
                row = None
        if row and row[0] == n and row[1] == fingerprint:
            print(f"reusing {DATABASE}: {n:,} tips loaded earlier (marker table bench_marker)")
            keys = ("tips", "fingerprint", "city", "town", "town_code", "load_seconds")
            return url, dict(zip(keys, row, strict=True)) | {"reused": True}
    create_database(DATABASE, base)
    engine = make_engine(url)
    try:
        Base.metadata.create_all(engine)
        staff, town, grids, categories = seed(make_session_factory(engine))
    finally:
        engine.dispose()
    seconds = write_tips(url, n, grids, categories, staff["version"])
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE bench_marker (tips int, fingerprint text, city_id int, town_id int, "
            "town text, load_seconds float8, loaded_at timestamptz DEFAULT now())"
        )
        conn.execute(
            "INSERT INTO bench_marker VALUES (%s, %s, %s, %s, %s, %s)",
            [n, fingerprint, staff["city"], staff["town"], town, seconds],
        )
    print(f"{n:,} tips over {len(grids)} grids written and analysed in {seconds:.1f} s")
    marker = {"tips": n, "city": staff["city"], "town": staff["town"], "town_code": town}
    return url, marker | {"load_seconds": seconds, "reused": False}


def bare_sql(viewer) -> tuple[str, list]:
    """The page's WHERE, ORDER BY and LIMIT on tips alone, as the service's filters build it."""
    where = ["is_open", "status = ANY(%s)"]
    params: list = [list(OPEN_STATUSES)]
    if not viewer.sees_all:
        parts = []
        for path in viewer.paths:
            parts.append("(grid_path = %s OR grid_path LIKE %s)")
            params += [path, path.replace("_", "\\_") + "/%"]
        if viewer.sees_unrouted:
            parts.append("grid_path IS NULL")
        where.append("(" + " OR ".join(parts) + ")")
    # Only placeholders are joined in; every value is bound.
    clause = " AND ".join(where)
    sql = f"SELECT * FROM tips WHERE {clause} ORDER BY priority_rank, ack_due_at NULLS LAST, id LIMIT %s"  # noqa: E501, S608
    return sql, [*params, PAGE + 1]


def explain(url: str, session_factory, viewer, sql: str, params: list) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the service's statement and of the bare one."""
    with session_factory() as s:
        stmt = queue_query(s, viewer, QueueFilters()).limit(PAGE + 1)
        compiled = stmt.compile(
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
        plan = s.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + str(compiled))).scalars().all()
    with psycopg.connect(url) as conn:
        rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).fetchall()
    return (
        "service (app.staff.queue.queue_query):\n  "
        + "\n  ".join(plan)
        + "\n\nbare:\n  "
        + sql
        + "\n  "
        + "\n  ".join(r[0] for r in rows)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tips", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--reload", action="store_true", help="rebuild the database")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    args = parser.parse_args()
    if args.runs < 20:
        parser.error("--runs must be at least 20")

    url, marker = ready_database(args.pg_url, args.tips, args.reload)
    engine = make_engine(url)
    rows, plans = [], []
    try:
        factory = make_session_factory(engine)
        with factory() as s:
            open_count = s.scalar(text("SELECT count(*) FROM tips WHERE is_open"))
        print(f"open tips: {open_count:,} of {args.tips:,}")
        with psycopg.connect(url) as raw:
            for who in ("city", "town"):
                with factory() as s:
                    viewer = viewer_for(s, s.get(StaffUser, marker[who]))
                sql, params = bare_sql(viewer)

                def service(viewer=viewer):
                    """The call alone, on a session already in a transaction (as in a request)."""
                    with factory() as s:
                        s.execute(text("SELECT 1"))
                        started = time.perf_counter()
                        page = queue_page(s, viewer, limit=PAGE)
                        elapsed = (time.perf_counter() - started) * 1000
                        assert len(page.rows) == PAGE
                    return elapsed

                def bare(sql=sql, params=params):
                    started = time.perf_counter()
                    found = raw.execute(sql, params).fetchall()
                    elapsed = (time.perf_counter() - started) * 1000
                    assert len(found) == PAGE + 1
                    return elapsed

                for _ in range(5):  # warm the caches, the pool and the prepared statements
                    service()
                    bare()
                runs: dict[str, list[float]] = {"service": [], "bare": []}
                for _ in range(args.runs):
                    runs["service"].append(service())
                    runs["bare"].append(bare())
                rows.append(
                    compare(
                        f"queue first page, {args.tips:,} tips, {who} supervisor",
                        statistics.median(runs["service"]),
                        statistics.median(runs["bare"]),
                        "ms",
                        "bare indexed SQL",
                        goal=("<=", TARGET_RATIO),
                        cap=TARGET_MS,
                        runs=runs,
                    )
                )
                plans.append(
                    f"=== {who} supervisor ===\n" + explain(url, factory, viewer, sql, params)
                )
    finally:
        engine.dispose()
        if args.drop:
            drop_database(DATABASE, args.pg_url)
    if marker["reused"] is False:
        rows.append(
            absolute(f"load {args.tips:,} tips (INSERT … SELECT)", marker["load_seconds"], "s")
        )
    (RESULTS / "queue_explain.txt").write_text("\n\n".join(plans) + "\n")
    save(
        "queue",
        f"4. Triage queue, first page of {PAGE}, {args.tips:,} tips on PostgreSQL "
        f"(medians of {args.runs}; database {'reused' if marker['reused'] else 'loaded'})",
        rows,
        settings=vars(args) | {"open_tips": open_count, "database": DATABASE},
        notes=["EXPLAIN (ANALYZE, BUFFERS) of both statements: bench/results/queue_explain.txt"],
    )
    return 0 if all(r.ok for r in rows if r.ok is not None) else 1


if __name__ == "__main__":
    sys.exit(main())
