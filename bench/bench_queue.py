"""The triage queue's first page on PostgreSQL: the real service against the bare indexed query.

Run: .venv/bin/python bench/bench_queue.py [--tips 100000] [--runs 30] [--explain]

In a schema of its own (dropped at the end) on TEST_DATABASE_URL (default
postgresql://postgres@127.0.0.1:5432/test) it imports the demo city (888 grids),
writes N tips with COPY — spread over the grids (the centre busier), a year of
received times, realistic statuses (most closed) and priorities — and ANALYZEs.
Then, as a city supervisor and as a town supervisor, it times:

  service  app.staff.queue.queue_page(session, viewer, limit=50): a fresh session,
           the ORM query with its joins (category, grid, reporter, assignee), rows
           turned into QueueRow objects and the next-page cursor;
  bare     the same WHERE (open, in scope), ORDER BY and LIMIT on the tips table
           alone, through psycopg with no ORM: what the ix_tips_queue index costs.

Runs are interleaved; medians of --runs each. QUALITY.md: service ≤ 3× bare and ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from sqlalchemy import create_engine, select, text

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
from app.staff.queue import OPEN_STATUSES, queue_page
from app.staff.scope import viewer_for

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_RATIO = 3.0
TARGET_MS = 50.0
PAGE = 50
CENTRE = (40.6406, 122.5052)
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
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


def psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def ref_for(n: int) -> str:
    """A unique tip reference for row n (n < 32**6)."""
    digits = []
    for _ in range(6):
        n, d = divmod(n, 32)
        digits.append(CROCKFORD[d])
    return "T-" + "".join(reversed(digits))


def pick(shares, r: float) -> str:
    total = 0.0
    for value, share in shares:
        total += share
        if r < total:
            return value
    return shares[-1][0]


def fmt(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


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


def write_tips(url: str, n: int, grids, categories, version: int, *, rng: random.Random) -> float:
    """COPY n synthetic tips in; return the seconds it took."""
    now = datetime.now(UTC).replace(microsecond=0)
    # The centre is busier: weight grids by closeness to it.
    weights = [
        1.0
        / (
            0.02
            + abs((g.min_lat + g.max_lat) / 2 - CENTRE[0])
            + abs((g.min_lon + g.max_lon) / 2 - CENTRE[1])
        )
        for g in grids
    ]
    started = time.perf_counter()
    with psycopg.connect(psycopg_url(url)) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY tips ({', '.join(COLUMNS)}) FROM STDIN (FORMAT csv)") as copy:
            chosen = rng.choices(grids, weights=weights, k=n)
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            for i in range(n):
                status = pick(STATUSES, rng.random())
                is_open = status in OPEN_STATUSES
                # Open tips are recent (hours to days); closed ones spread over a year.
                age = timedelta(
                    minutes=rng.expovariate(1 / 600) if is_open else rng.uniform(0, 525_600)
                )
                received = now - age
                priority = pick(PRIORITY_SHARES, rng.random())
                ack_min, resolve_min = DEFAULT_TARGETS[priority]
                ack_due = received + timedelta(minutes=ack_min)
                acked = (
                    None
                    if status == "new"
                    else received + timedelta(minutes=rng.uniform(1, ack_min * 2))
                )
                g = None if rng.random() < NEEDS_LOCATION_SHARE else chosen[i]
                writer.writerow(
                    (
                        ref_for(i),
                        rng.choice(("telegram", "telegram", "web", "api")),
                        rng.choice(categories),
                        "bench tip",
                        fmt(received),
                        "" if g is None else rng.uniform(g.min_lat, g.max_lat),
                        "" if g is None else rng.uniform(g.min_lon, g.max_lon),
                        "none" if g is None else "device",
                        "" if g is None else g.id,
                        "no_location" if g is None else "inside",
                        "" if g is None else version,
                        '["needs_location"]' if g is None else "[]",
                        "" if g is None else g.path,
                        priority,
                        RANK[priority],
                        "[]",
                        status,
                        "t" if is_open else "f",
                        fmt(ack_due),
                        fmt(received + timedelta(minutes=resolve_min)),
                        fmt(acked),
                        "" if is_open else fmt(received + timedelta(hours=rng.uniform(1, 48))),
                        0,
                        fmt(ack_due) if status == "new" else "",
                        fmt(received),
                    )
                )
                if buffer.tell() > 1 << 20:
                    copy.write(buffer.getvalue())
                    buffer.seek(0)
                    buffer.truncate()
            copy.write(buffer.getvalue())
        conn.commit()
        conn.autocommit = True
        cur.execute("ANALYZE")
    return time.perf_counter() - started


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


def explain(url: str, session_factory, viewer, sql: str, params: list) -> None:
    """Print EXPLAIN ANALYZE of the service's statement and of the bare one."""
    from sqlalchemy.dialects import postgresql

    from app.staff.queue import QueueFilters, queue_query

    with session_factory() as s:
        stmt = queue_query(s, viewer, QueueFilters()).limit(PAGE + 1)
        compiled = stmt.compile(
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
        plan = s.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + str(compiled))).scalars().all()
    print("  service plan:\n    " + "\n    ".join(plan))
    with psycopg.connect(psycopg_url(url)) as conn:
        rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).fetchall()
    print("  bare plan:\n    " + "\n    ".join(r[0] for r in rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tips", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--explain", action="store_true", help="print the query plans")
    parser.add_argument("--keep", action="store_true", help="keep the schema (for poking at it)")
    args = parser.parse_args()
    if args.runs < 20:
        parser.error("--runs must be at least 20")

    base = os.environ.get("TEST_DATABASE_URL") or DEFAULT_URL
    schema = f"bench_queue_{uuid.uuid4().hex[:8]}"
    admin = create_engine(
        base.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    try:
        Base.metadata.create_all(engine)
        factory = make_session_factory(engine)
        staff, town, grids, categories = seed(factory)
        rng = random.Random(20261129)
        seconds = write_tips(url, args.tips, grids, categories, staff["version"], rng=rng)
        print(f"{args.tips:,} tips over {len(grids)} grids written and analysed in {seconds:.1f} s")
        with factory() as s:
            open_count = s.scalar(text("SELECT count(*) FROM tips WHERE is_open"))
            in_town = s.scalar(
                text("SELECT count(*) FROM tips WHERE is_open AND grid_path LIKE :p"),
                {"p": f"{CITY_CODE}/{town}/%"},
            )
        print(f"open: {open_count:,}; open in the town {town}: {in_town:,}")

        with psycopg.connect(psycopg_url(url)) as raw:
            results = {}
            for who in ("city", "town"):
                with factory() as s:
                    viewer = viewer_for(s, s.get(StaffUser, staff[who]))
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

                def with_session(viewer=viewer):
                    """The call with its own session: pool checkout, ping, BEGIN and ROLLBACK."""
                    started = time.perf_counter()
                    with factory() as s:
                        queue_page(s, viewer, limit=PAGE)
                    return (time.perf_counter() - started) * 1000

                def bare(sql=sql, params=params):
                    started = time.perf_counter()
                    rows = raw.execute(sql, params).fetchall()
                    elapsed = (time.perf_counter() - started) * 1000
                    assert len(rows) == PAGE + 1
                    return elapsed

                for _ in range(5):  # warm the caches, the pool and the prepared statements
                    service()
                    with_session()
                    bare()
                runs: dict[str, list[float]] = {"service": [], "session": [], "bare": []}
                for _ in range(args.runs):
                    runs["service"].append(service())
                    runs["session"].append(with_session())
                    runs["bare"].append(bare())
                med = {k: statistics.median(v) for k, v in runs.items()}
                low = {k: min(v) for k, v in runs.items()}
                s_med, b_med = med["service"], med["bare"]
                results[who] = (s_med, b_med)
                ok = s_med <= TARGET_MS and s_med <= TARGET_RATIO * b_med
                print(
                    f"{who:5s} supervisor, medians of {args.runs} (min): "
                    f"service {s_med:.2f} ms ({low['service']:.2f}), "
                    f"bare {b_med:.2f} ms ({low['bare']:.2f}), "
                    f"ratio {s_med / b_med:.1f}x; with its own session "
                    f"{med['session']:.2f} ms ({low['session']:.2f}) "
                    f"-> {'OK' if ok else 'MISSED'} (target <= {TARGET_RATIO:g}x and "
                    f"<= {TARGET_MS:g} ms)"
                )
                if args.explain or not ok:
                    explain(url, factory, viewer, sql, params)
        return (
            0 if all(s <= TARGET_MS and s <= TARGET_RATIO * b for s, b in results.values()) else 1
        )
    finally:
        engine.dispose()
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        else:
            print(f"schema kept: {schema}")
        admin.dispose()


if __name__ == "__main__":
    sys.exit(main())
