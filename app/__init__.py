"""Tipline: a community-safety tip line. `create_app` builds the web app from Settings."""

from __future__ import annotations

from flask import Flask

from app.config import Settings, load_settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app: database, media store, API, health checks, error handling."""
    from app.native_memory import limit_native_reservations

    limit_native_reservations()  # before webapp imports numpy and the worker starts threads
    from app import webapp

    settings = settings or load_settings()
    app = Flask(__name__, instance_path=str(settings.instance_dir.resolve()))
    webapp.configure(app, settings)
    return app
