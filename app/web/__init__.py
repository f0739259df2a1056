"""The volunteers' mobile web form: /report, /status, the manifest and the service worker."""

from __future__ import annotations

from flask import Flask


def register_web(app: Flask) -> None:
    """Register the form's blueprint."""
    from app.web.views import bp

    app.register_blueprint(bp)
