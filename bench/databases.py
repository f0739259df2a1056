"""Dedicated PostgreSQL databases and schemas for benchmarks, created and dropped by them."""

from __future__ import annotations

import re
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from bench.report import PG_URL


def plain(url: str) -> str:
    """A libpq URL (psycopg) from a SQLAlchemy one."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


def database_url(name: str, base: str = PG_URL) -> str:
    """The same server and user, another database."""
    parts = urlsplit(plain(base))
    return urlunsplit(parts._replace(path=f"/{name}"))


def exists(name: str, base: str = PG_URL) -> bool:
    with psycopg.connect(plain(base), autocommit=True) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            is not None
        )


def create_database(name: str, base: str = PG_URL, *, extensions: tuple[str, ...] = ()) -> str:
    """CREATE DATABASE name (dropping a leftover of the same name) with extensions; its URL."""
    drop_database(name, base)
    with psycopg.connect(plain(base), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = database_url(name, base)
    with psycopg.connect(url, autocommit=True) as conn:
        for ext in extensions:
            conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(ext)))
    return url


def drop_database(name: str, base: str = PG_URL) -> None:
    with psycopg.connect(plain(base), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextmanager
def temporary_database(name: str, base: str = PG_URL, *, extensions: tuple[str, ...] = ()):
    """A database that exists for the block and is dropped after it, whatever happens."""
    url = create_database(name, base, extensions=extensions)
    try:
        yield url
    finally:
        drop_database(name, base)


@contextmanager
def temporary_schema(name: str, base: str = PG_URL):
    """A schema on the base database for the block; yields a URL that uses it first."""
    with psycopg.connect(plain(base), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(plain(base), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
