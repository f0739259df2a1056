"""Liveness and readiness checks for load balancers and `make run`."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Say the process is alive (no dependencies touched)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Say whether the database answers; 503 tells the balancer to send traffic elsewhere."""
    from app.webapp import services

    try:
        with services().engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:
        return jsonify(status="unavailable", database="down"), 503, {"Retry-After": "5"}
    return jsonify(status="ok", database="up")
