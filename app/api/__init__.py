"""The JSON API under /api/v1, documented by flask-smorest at /api/v1/openapi.json."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from app.api.responses import ErrorSchema


class TiplineApi(Api):
    """flask-smorest's Api, documenting errors in the shape app/api/errors.py answers them."""

    ERROR_SCHEMA = ErrorSchema


def register_api(app: Flask) -> None:
    """Register the API blueprints and the OpenAPI document."""
    from app.api import grids, leaderboard, reporters, staff, tips

    app.config.update(
        API_TITLE="Tipline API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
    )
    api = TiplineApi(
        app,
        spec_kwargs={
            "info": {"description": "Community-safety tips: submit, follow up, and look up grids."}
        },
    )
    api.spec.components.security_scheme(
        "reporterToken",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "reporter device/API token (POST /api/v1/reporters)",
        },
    )
    api.spec.components.security_scheme(
        "staffToken",
        {"type": "http", "scheme": "bearer", "description": "staff token (tipline users token)"},
    )
    for module in (tips, reporters, grids, staff, leaderboard):
        api.register_blueprint(module.bp)
