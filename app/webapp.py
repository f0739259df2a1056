"""Wiring of the web app: config, per-request session, blueprints, error pages."""

from __future__ import annotations

import logging

from flask import Flask, g
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import Settings
from app.db import make_engine, make_session_factory, read_only
from app.db_errors import database_unavailable, unavailable_response
from app.db_ids import DatabaseIdConverter
from app.faults import fault_point
from app.ratelimit import make_limiter
from app.reports.photos import configure_decode_slots
from app.reports.storage import make_media_store

log = logging.getLogger("tipline.web")

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Services:
    """What views reach through `current_app.extensions['tipline']`."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine = make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        self.sessions = make_session_factory(self.engine)
        self.read_sessions = make_session_factory(read_only(self.engine))
        self.store = make_media_store(settings)
        self.limiter = make_limiter(settings.redis_url, prefix=settings.redis_prefix)


def configure(app: Flask, settings: Settings) -> None:
    """Apply settings and register everything the app serves."""
    from app.admin import register_admin
    from app.api import register_api
    from app.api.errors import register_error_handlers
    from app.api.health import bp as health_bp
    from app.bot.webhook import bp as telegram_bp
    from app.open311.views import bp as open311_bp
    from app.security_headers import register_security_headers
    from app.web import register_web

    app.config.update(
        SECRET_KEY=settings.secret_key,
        TESTING=settings.testing,
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        # Text fields; photos stream to temp files. Werkzeug also applies this to each raw
        # 64 KiB read plus its unparsed tail, so it must stay well above 64 KiB or
        # ordinary photos are refused with 413 at random.
        MAX_FORM_MEMORY_SIZE=256 * 1024,
        JSON_SORT_KEYS=False,
    )
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    if settings.proxy_hops:
        # Behind a load balancer the peer is the proxy: take the client from the hops it
        # appended, so each reporter and each sign-in source has its own rate limit.
        n = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=0)
    services = Services(settings)
    app.extensions["tipline"] = services
    configure_decode_slots(settings.decode_slots)

    app.url_map.converters["int"] = DatabaseIdConverter  # before any route is added
    app.teardown_appcontext(_close_session)
    # Registered before the commit hook so it runs after it (hooks run in reverse):
    # even the 503 that a failed commit turns into carries the headers.
    register_security_headers(app, settings)
    app.after_request(_commit_session)
    app.register_blueprint(health_bp)
    app.register_blueprint(telegram_bp)
    register_api(app)
    register_admin(app)
    register_web(app)
    app.register_blueprint(open311_bp)
    register_error_handlers(app)


def services() -> Services:
    """Return the app's Services."""
    from flask import current_app

    return current_app.extensions["tipline"]


def db():
    """Return this request's session: write transactions for writes, deferred for reads."""
    from flask import request

    if "db" not in g:
        svc = services()
        factory = svc.read_sessions if request.method in READ_METHODS else svc.sessions
        g.db = factory()
    return g.db


def _commit_session(response):
    """Commit before the response leaves, so nothing is acknowledged that is not stored."""
    session = g.pop("db", None)
    if session is None:
        return response
    try:
        if response.status_code < 400:
            session.commit()
            fault_point("request_committed")  # tests/system: stored, not yet answered
        else:
            session.rollback()
    except Exception as exc:
        if database_unavailable(exc):
            # A passing condition with its own 503, not a bug to trace (app/db_errors.py).
            log.warning("commit failed, database unavailable: %s", type(exc).__name__)
        else:
            log.exception("commit failed")
        # Nothing was stored, so nothing is acknowledged. Rendered before the rollback
        # expires the objects an error page shows (the admin's signed-in user).
        response = unavailable_response()
        session.rollback()
        return response
    finally:
        session.close()
    return response


def _close_session(_exc) -> None:
    """Roll back and release whatever a failed request left open."""
    session = g.pop("db", None)
    if session is not None:
        session.rollback()
        session.close()
