"""Backups proven by restoring them: `tipline db backup` under write load, `tipline db restore`.

Each case runs on SQLite and on PostgreSQL, where every database is a new one
made on the local server with CREATE DATABASE and dropped afterwards (pg_dump
takes a whole database, so a schema per test would not do). The backup is
taken while a thread keeps submitting and confirming tips; the restored
database must then hold exactly what was committed up to one moment: all of
the seed, a prefix of the thread's commits, whole tips with their photos and
points, at alembic head, with every cached balance equal to its ledger sum.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import uuid
from contextlib import closing
from pathlib import Path

import pytest
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import create_engine, func, make_url, select, text

from app.backup import pg_environment
from app.cli import Context, cli
from app.config import Settings
from app.db import make_engine, make_session_factory, unit_of_work
from app.people.services import create_reporter, create_staff_user
from app.reports.models import Photo, Tip
from app.reports.services import Upload, submit_tip
from app.reports.storage import LocalMediaStore
from app.reports.workflow import apply_action
from app.restore import known_revisions
from app.rewards.models import PointBalance, PointEntry
from app.rewards.services import balance_mismatches
from tests.conftest import NO_PG, PG_URL, _pg_psycopg
from tests.images import phone_jpeg
from tests.layers import centre_of, seed_small

KEY = "restore-test-key"
HEAD = known_revisions()[1]
WRITES_AROUND_BACKUP = 3  # writer commits seen before the backup starts and after it ends


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def new_database(request, tmp_path):
    """Return a maker of URLs of new, empty databases: SQLite files, or PostgreSQL databases."""
    if request.param == "sqlite":
        yield lambda name: f"sqlite:///{tmp_path / name}.db"
        return
    if not PG_URL:
        pytest.skip(NO_PG)
    admin = create_engine(_pg_psycopg(PG_URL), isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def make(name: str) -> str:
        database = f"t_{name}_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        made.append(database)
        return make_url(PG_URL).set(database=database).render_as_string(hide_password=False)

    yield make
    admin.dispose()
    drop_later(PG_URL, made)


# DROP DATABASE forces an immediate checkpoint (PostgreSQL 15), which takes tens of
# seconds on a busy shared server: the drops run after the test, in a process of their own.
_DROP = """
import sys
from sqlalchemy import create_engine, text
engine = create_engine(sys.argv[1], isolation_level="AUTOCOMMIT")
for name in sys.argv[2:]:
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    except Exception:  # one that will not go must not keep the others
        continue
"""


def drop_later(url: str, names: list[str]) -> None:
    """Drop the databases in a detached process (the shell's `&`: nothing left to reap)."""
    if names:
        subprocess.run(
            [
                "/bin/sh",
                "-c",
                '"$0" -c "$@" >/dev/null 2>&1 &',
                sys.executable,
                _DROP,
                _pg_psycopg(url),
                *names,
            ],
            check=True,
            timeout=10,
        )


def invoke(url: str, *args: str, media: Path):
    """Run `tipline ...` against the database at url."""
    env = {"DATABASE_URL": url, "TIPLINE_SECRET_KEY": KEY, "TIPLINE_MEDIA_DIR": str(media)}
    return CliRunner().invoke(cli, list(args), obj=Context(), env=env)


def settings_for(url: str, tmp_path: Path) -> Settings:
    instance = tmp_path / "instance"
    instance.mkdir(exist_ok=True)
    return Settings(
        database_url=url,
        secret_key=KEY,
        media_dir=instance / "media",
        instance_dir=instance,
        testing=True,
    )


def submit(session, settings: Settings, reporter_id: int, n: int, photos: int = 0) -> str:
    """Submit tip number n (photos distinct by size) and return its reference."""
    lat, lon = centre_of(f"G{n % 4 + 1}")
    uploads = [Upload(phone_jpeg(300 + 8 * n + i, 220, gps=None), "p.jpg") for i in range(photos)]
    return submit_tip(
        session,
        settings,
        LocalMediaStore(settings.media_dir),
        fields={
            "category": "theft",
            "description": f"电瓶被盗 {n}",
            "latitude": lat,
            "longitude": lon,
        },
        uploads=uploads,
        channel="api",
        reporter_id=reporter_id,
    ).ref


def confirm(session, ref: str, boss: int) -> None:
    """Acknowledge and resolve a tip as confirmed: the workflow writes its points."""
    tip_id = session.scalar(select(Tip.id).where(Tip.ref == ref))
    apply_action(session, tip_id, actor_id=boss, action="acknowledge")
    apply_action(session, tip_id, actor_id=boss, action="resolve", outcome="confirmed")


def seed_live(url: str, settings: Settings, tmp_path: Path) -> dict:
    """Migrate and fill a database: tips with 0-2 photos each, half of them confirmed."""
    assert invoke(url, "db", "upgrade", media=settings.media_dir).exit_code == 0
    engine = make_engine(url)
    factory = make_session_factory(engine)
    seed_small(factory)
    with unit_of_work(factory) as s:
        reporters = [create_reporter(s, "taxi_driver").id for _ in range(3)]
        boss = create_staff_user(s, "boss", "admin").id
    for n in range(8):
        with unit_of_work(factory) as s:
            ref = submit(s, settings, reporters[n % 3], n, photos=n % 3)
            if n % 2 == 0:
                s.flush()
                confirm(s, ref, boss)
    engine.dispose()
    return {"reporters": reporters, "boss": boss}


class Writer(threading.Thread):
    """Submits a tip and then confirms it, again and again, each in its own transaction."""

    def __init__(self, url: str, settings: Settings, reporter_id: int, boss: int):
        super().__init__(daemon=True)
        self.url, self.settings, self.reporter_id, self.boss = url, settings, reporter_id, boss
        self.events: list[tuple[str, str]] = []  # ("tip" | "confirmed", ref), in commit order
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self._progress = threading.Condition()

    def run(self) -> None:
        engine = make_engine(self.url)
        factory = make_session_factory(engine)
        try:
            n = 100
            while not self.stop.is_set():
                n += 1
                with unit_of_work(factory) as s:
                    ref = submit(s, self.settings, self.reporter_id, n)
                self._record("tip", ref)
                with unit_of_work(factory) as s:
                    confirm(s, ref, self.boss)
                self._record("confirmed", ref)
        except BaseException as exc:  # re-raised by the test in its own thread
            self.error = exc
        finally:
            engine.dispose()
            with self._progress:
                self._progress.notify_all()

    def _record(self, kind: str, ref: str) -> None:
        with self._progress:
            self.events.append((kind, ref))
            self._progress.notify_all()

    def wait_for(self, count: int) -> None:
        """Block until `count` commits have happened (or the writer failed)."""
        with self._progress:
            self._progress.wait_for(lambda: len(self.events) >= count or self.error is not None)
        assert self.error is None, self.error


def snapshot(url: str) -> dict:
    """What a database holds that a restore must keep: tips, photos, ledger, revision."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            revision = MigrationContext.configure(conn).get_current_revision()
        with make_session_factory(engine)() as s:
            return {
                "revision": revision,
                "tips": dict(s.execute(select(Tip.ref, Tip.status)).all()),
                "photos": sorted(
                    s.execute(
                        select(Tip.ref, Photo.position, Photo.sha256, Photo.derivative_key).join(
                            Tip, Photo.tip_id == Tip.id
                        )
                    ).all()
                ),
                "entries": sorted(
                    s.execute(
                        select(
                            PointEntry.id, PointEntry.tip_ref, PointEntry.points, PointEntry.kind
                        )
                    ).all()
                ),
                "balances": dict(
                    s.execute(select(PointBalance.reporter_id, PointBalance.balance)).all()
                ),
                "mismatches": balance_mismatches(s),
            }
    finally:
        engine.dispose()


def count_tips(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(Tip))
    finally:
        engine.dispose()


def sqlite_checks(url: str) -> tuple[str, list]:
    with sqlite3.connect(make_url(url).database) as conn:
        return (
            conn.execute("PRAGMA integrity_check").fetchone()[0],
            conn.execute("PRAGMA foreign_key_check").fetchall(),
        )


def journal_mode(url: str) -> str:
    with closing(sqlite3.connect(make_url(url).database)) as conn:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]


def test_backup_under_writes_restores_a_consistent_snapshot(new_database, tmp_path):
    live = new_database("live")
    settings = settings_for(live, tmp_path)
    media = settings.media_dir
    people = seed_live(live, settings, tmp_path)
    before = snapshot(live)
    assert len(before["photos"]) > 0 and len(before["entries"]) > 0

    writer = Writer(live, settings, people["reporters"][0], people["boss"])
    writer.start()
    try:
        writer.wait_for(WRITES_AROUND_BACKUP)
        started_with = len(writer.events)
        dump = tmp_path / "live.backup"
        result = invoke(live, "db", "backup", str(dump), media=media)
        assert result.exit_code == 0, result.output
        ended_with = len(writer.events)
        writer.wait_for(ended_with + WRITES_AROUND_BACKUP)  # still writing after the backup
    finally:
        writer.stop.set()
        writer.join()
    assert writer.error is None, writer.error
    after = snapshot(live)

    target = new_database("restored")
    result = invoke(target, "db", "restore", str(dump), media=media)
    assert result.exit_code == 0, result.output
    restored = snapshot(target)

    # Whole: integrity checks, head revision, every cached balance equals its ledger sum.
    if target.startswith("sqlite"):
        assert sqlite_checks(target) == ("ok", [])
    assert restored["revision"] == HEAD
    assert restored["mismatches"] == []
    # Consistent: everything committed before the backup began, plus the writer's
    # commits up to one moment (a prefix of its sequence, none after the backup ended).
    writer_refs = {ref for _, ref in writer.events}
    seed_refs = set(before["tips"])
    assert seed_refs <= set(restored["tips"]) <= seed_refs | writer_refs
    assert {r: restored["tips"][r] for r in seed_refs} == before["tips"]
    prefix = [
        (kind, ref)
        for kind, ref in writer.events
        if ref in restored["tips"] and (kind == "tip" or restored["tips"][ref] == "resolved")
    ]
    assert prefix == writer.events[: len(prefix)]
    # At most one commit can be in flight (made, not yet recorded) when ended_with is read.
    assert started_with <= len(prefix) <= ended_with + 1
    # Rows equal the live database's for the restored tips: photos, ledger lines, balances.
    kept = set(restored["tips"])
    assert restored["photos"] == [p for p in after["photos"] if p[0] in kept]
    assert set(before["photos"]) <= set(restored["photos"])
    # Ledger lines come with the decision that wrote them, in the same transaction.
    resolved = {ref for ref, status in restored["tips"].items() if status == "resolved"}
    assert restored["entries"] == [e for e in after["entries"] if e[1] in resolved]
    assert restored["entries"] == after["entries"][: len(restored["entries"])]
    assert f"{len(kept)} tips" in result.output

    # The restored database takes new tips: ids and sequences came back with the rows.
    engine = make_engine(target)
    with unit_of_work(make_session_factory(engine)) as s:
        submit(s, settings, people["reporters"][1], 999, photos=1)
    engine.dispose()
    assert count_tips(target) == len(kept) + 1


def test_restore_over_tips_needs_yes_and_sole_access(new_database, tmp_path):
    live = new_database("live")
    settings = settings_for(live, tmp_path)
    media = settings.media_dir
    people = seed_live(live, settings, tmp_path)
    dump = tmp_path / "live.backup"
    assert invoke(live, "db", "backup", str(dump), media=media).exit_code == 0
    backed_up = snapshot(live)
    engine = make_engine(live)
    with unit_of_work(make_session_factory(engine)) as s:
        late = submit(s, settings, people["reporters"][0], 50)
    engine.dispose()
    holding = len(backed_up["tips"]) + 1

    refused = invoke(live, "db", "restore", str(dump), media=media)
    assert refused.exit_code == 2
    assert f"holds {holding} tips; add --yes" in refused.output
    assert "Traceback" not in refused.output
    assert late in snapshot(live)["tips"]
    if live.startswith("sqlite"):
        assert journal_mode(live) == "wal"  # the lock taken to look is given back as found

    if live.startswith("sqlite"):
        # Another process with the database open would go on writing to the replaced
        # file: refused even with --yes, and nothing changes.
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sqlite3, sys\n"
                "c = sqlite3.connect(sys.argv[1])\n"
                "c.execute('PRAGMA journal_mode=WAL'); c.execute('SELECT 1 FROM tips').fetchall()\n"
                "print('open', flush=True); sys.stdin.readline()",
                make_url(live).database,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout.readline().strip() == "open"
            busy = invoke(live, "db", "restore", "--yes", str(dump), media=media)
        finally:
            holder.communicate("\n", timeout=30)
        assert busy.exit_code == 2
        assert "open in another process" in busy.output
        assert late in snapshot(live)["tips"] and journal_mode(live) == "wal"
        assert list(tmp_path.glob(".*.part")) == []

    else:
        # A table the backup lacks (a newer release's) survives --clean: the restore says so.
        engine = make_engine(live)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE public.added_later (id integer)"))
        engine.dispose()

    done = invoke(live, "db", "restore", "--yes", str(dump), media=media)
    assert done.exit_code == 0, done.output
    assert f"{len(backed_up['tips'])} tips, replacing {holding}" in done.output
    if not live.startswith("sqlite"):
        assert "left as they were: public.added_later" in done.output
    restored = snapshot(live)
    assert late not in restored["tips"]
    assert restored == backed_up
    if live.startswith("sqlite"):
        assert sqlite_checks(live) == ("ok", [])
        assert list(tmp_path.glob(".*.part")) == []


def test_restore_refuses_missing_foreign_and_truncated_backups(new_database, tmp_path):
    target = new_database("target")
    settings = settings_for(target, tmp_path)
    media = settings.media_dir
    seed_live(target, settings, tmp_path)
    sqlite = target.startswith("sqlite")
    tips = count_tips(target)

    def refused(path: Path, *expected: str) -> None:
        # --yes throughout: each refusal is about the backup, not the tips in the target.
        result = invoke(target, "db", "restore", "--yes", str(path), media=media)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and result.exception is not None
        for words in expected:
            assert words in result.output
        assert count_tips(target) == tips
        assert list(tmp_path.glob(".*.part")) == []

    refused(tmp_path / "nope.backup", "does not exist")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("这不是备份\n", encoding="utf-8")
    refused(text_file, "notes.txt is not")
    # The other backend's backup.
    if sqlite:
        other = tmp_path / "other.dump"
        other.write_bytes(b"PGDMP" + bytes(200))
        refused(other, "not an SQLite database file")
    else:
        other = tmp_path / "other.db"
        with sqlite3.connect(other) as conn:
            conn.execute("CREATE TABLE tips (id integer)")
        refused(other, "not a pg_dump custom-format archive")

    # A real backup of a database that is not Tipline's.
    foreign = new_database("foreign")
    engine = make_engine(foreign)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE notes (id integer PRIMARY KEY, body text)"))
        conn.execute(text("INSERT INTO notes VALUES (1, 'x')"))
    engine.dispose()
    foreign_dump = tmp_path / "foreign.backup"
    assert invoke(foreign, "db", "backup", str(foreign_dump), media=media).exit_code == 0
    refused(foreign_dump, "foreign.backup is not a Tipline database")

    # A Tipline backup at a revision this release does not know (a newer release's).
    newer = new_database("newer")
    assert invoke(newer, "db", "upgrade", media=media).exit_code == 0
    engine = make_engine(newer)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffffffff'"))
    engine.dispose()
    newer_dump = tmp_path / "newer.backup"
    assert invoke(newer, "db", "backup", str(newer_dump), media=media).exit_code == 0
    refused(newer_dump, "revision ffffffff, which this release does not know")

    # A good backup, cut short. SQLite: the copy's checks read every page. PostgreSQL:
    # cut in half, the table of contents is unreadable; short of its last bytes,
    # pg_restore runs into the end inside its one transaction, which rolls back.
    good = tmp_path / "good.backup"
    assert invoke(target, "db", "backup", str(good), media=media).exit_code == 0
    data = good.read_bytes()
    cut = tmp_path / "cut.backup"
    for size, pg_says in (
        (len(data) // 2, "cut.backup cannot be read"),
        (len(data) - 64, "pg_restore failed; the database is unchanged"),
    ):
        cut.write_bytes(data[:size])
        if sqlite:
            refused(cut, "cut.backup is not a readable SQLite database")
        else:
            refused(cut, pg_says, "end of file")
    if not sqlite:
        # A server that does not answer: a clear error that does not repeat the password.
        away = "postgresql://postgres:s3cret@127.0.0.1:1/nodb"
        result = invoke(away, "db", "restore", str(good), media=media)
        assert result.exit_code == 2 and "cannot read the target database" in result.output
        assert "s3cret" not in result.output and "Traceback" not in result.output
    # The same backup whole goes in, over the tips it holds itself.
    result = invoke(target, "db", "restore", "--yes", str(good), media=media)
    assert result.exit_code == 0, result.output
    assert f"{tips} tips, replacing {tips}" in result.output
    assert count_tips(target) == tips


def test_postgresql_tools_get_the_password_in_their_environment():
    url = make_url("postgresql://tipline:s3cret@db.internal:6432/tipline?sslmode=require")
    env = pg_environment(url)
    assert env["PGPASSWORD"] == "s3cret" and env["PGSSLMODE"] == "require"
    assert (env["PGHOST"], env["PGPORT"], env["PGDATABASE"]) == ("db.internal", "6432", "tipline")
