"""Engine, session factory and the declarative base shared by every feature package."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import DateTime, Engine, MetaData, create_engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from app.db_sqlite import configure_sqlite, sqlite_connect_args

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    """Return the current time as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator):
    """Store naive UTC, hand back aware UTC, so SQLite and PostgreSQL behave the same."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    """Declarative base: one MetaData with a naming convention, so migrations name things."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime()}  # noqa: RUF012 (SQLAlchemy reads it)


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 5) -> Engine:
    """Create the engine with the per-backend settings ARCHITECTURE.md requires.

    The pool is per process: size it to one worker's threads (Settings.db_pool_size),
    so workers × (pool_size + max_overflow) stays under PostgreSQL's max_connections.
    """
    if url.startswith("sqlite"):
        database = make_url(url).database
        kwargs: dict = {"connect_args": sqlite_connect_args(database)}
        if not database or database == ":memory:":
            kwargs["poolclass"] = StaticPool
        engine = create_engine(url, hide_parameters=True, **kwargs)
        configure_sqlite(engine)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # hide_parameters: SQL errors must not copy tip text or coordinates into logs.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=10,
        hide_parameters=True,
    )


def read_only(engine: Engine) -> Engine:
    """Return the engine with deferred SQLite transactions, for requests that only read."""
    return engine.execution_options(sqlite_begin="DEFERRED")


def has_writer_lock(engine: Engine) -> bool:
    """True for a SQLite file: its write transactions queue for one lock (app/db_sqlite.py)."""
    return engine.dialect.name == "sqlite" and not isinstance(engine.pool, StaticPool)


@functools.cache
def _autocommit_twin(engine: Engine) -> Engine:
    """The engine's twin (same pool) whose SQLite connections read without a BEGIN."""
    return engine.execution_options(sqlite_begin="NONE")


@contextmanager
def reads_before_write(session: Session) -> Iterator[Session]:
    """Give the reads that precede a session's first write a session that takes no lock.

    The write session of a SQLite file begins with BEGIN IMMEDIATE: reading through it
    (a token, a ban, reference data on a cache miss) would hold the one writer lock every
    worker queues for while the request reads, decodes, routes and writes its photo
    files. Those reads go through a session of its own instead, each statement in
    autocommit (its own snapshot; WAL readers take no lock), connected at its first
    query if any. Elsewhere (PostgreSQL, an in-memory database, a session already in its
    transaction) they use the session itself. What the reader loads is detached when the
    block ends: keep ids and plain values, not objects.
    """
    engine = session.get_bind()
    if session.in_transaction() or not has_writer_lock(engine):
        yield session
        return
    with Session(bind=_autocommit_twin(engine)) as reader:
        yield reader


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return the session factory; objects stay usable after commit for building responses."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Run a block in one transaction: commit when it ends cleanly, roll back otherwise."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@functools.cache
def _insert_ignoring_conflicts(table, dialect_name: str):
    """Build (once per table and dialect) INSERT ... ON CONFLICT DO NOTHING RETURNING id."""
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).on_conflict_do_nothing().returning(table.c.id)


def insert_unless_exists(conn, table, values: dict) -> int | None:
    """Insert a row unless a unique key is taken: the new id, or None if a row won.

    No savepoint is needed: on PostgreSQL a concurrent insert of the same key
    waits for the other transaction and then does nothing; SQLite writers are serial.
    """
    return conn.execute(_insert_ignoring_conflicts(table, conn.dialect.name), values).scalar()
