"""Tip submission and the reporter's own view of a tip."""

from __future__ import annotations

import json

from flask import jsonify, request
from flask_smorest import Blueprint
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, UnsupportedMediaType

from app.api.auth import current_reporter
from app.api.responses import CategorySchema, ReporterTipSchema
from app.db import reads_before_write
from app.reports.abuse import client_key_for
from app.reports.categories import list_categories
from app.reports.schemas import TipInputSchema, TipReceiptSchema
from app.reports.services import Upload, submit_tip, view_tip
from app.webapp import db, services

bp = Blueprint("tips", __name__, url_prefix="/api/v1", description="Tips and categories")

_MULTIPART_BODY = {
    "type": "object",
    "properties": {
        **{name: {"type": "string"} for name in TipInputSchema().fields},
        "photos": {"type": "array", "items": {"type": "string", "format": "binary"}},
    },
    "required": ["category"],
}


def read_tip_request(max_photo_bytes: int) -> tuple[dict, list[Upload]]:
    """Parse a JSON or multipart tip into fields and photo uploads, refusing other bodies."""
    mimetype = request.mimetype
    if mimetype == "application/json":
        try:
            data = json.loads(request.get_data(cache=False) or b"null")
        except (ValueError, RecursionError):
            raise BadRequest("the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("the JSON body must be an object of fields")
        return data, []
    if mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        fields = {k: v for k, v in request.form.items() if k != "csrf_token"}
        uploads = []
        for storage in request.files.getlist("photos"):
            data = storage.stream.read(max_photo_bytes + 1)
            if len(data) > max_photo_bytes:
                raise RequestEntityTooLarge(
                    f"each photo may be at most {max_photo_bytes // (1024 * 1024)} MB"
                )
            uploads.append(Upload(data=data, name=storage.filename or ""))
        unexpected = set(request.files) - {"photos"}
        if unexpected:
            raise BadRequest("photos go in the 'photos' field")
        return fields, uploads
    raise UnsupportedMediaType("send application/json or multipart/form-data")


@bp.route("/categories", methods=["GET"])
@bp.doc(summary="List the tip categories")
@bp.response(200, CategorySchema(many=True))
def categories():
    """List the active categories with their Chinese and English names."""
    return jsonify(
        [
            {"code": c.code, "name_zh": c.name_zh, "name_en": c.name_en, "severity": c.severity}
            for c in list_categories(db())
        ]
    )


@bp.route("/tips", methods=["POST"])
@bp.doc(
    summary="Submit a tip",
    security=[{}, {"reporterToken": []}],
    parameters=[
        {
            "in": "header",
            "name": "Idempotency-Key",
            "required": False,
            "schema": {"type": "string", "format": "uuid"},
        }
    ],
    requestBody={
        "required": True,
        "content": {
            "application/json": {"schema": TipInputSchema},
            "multipart/form-data": {"schema": _MULTIPART_BODY},
        },
    },
)
@bp.response(201, TipReceiptSchema)
def post_tip():
    """Store a tip (with photos when multipart) and answer with its reference."""
    svc = services()
    fields, uploads = read_tip_request(svc.settings.max_photo_bytes)
    session = db()
    with reads_before_write(session) as reader:  # no writer lock for the token's lookup
        reporter = current_reporter(reader)
        reporter_id = reporter.id if reporter else None
    result = submit_tip(
        session,
        svc.settings,
        svc.store,
        fields=fields,
        uploads=uploads,
        channel="api",
        reporter_id=reporter_id,
        idempotency_key=request.headers.get("Idempotency-Key"),
        limiter=svc.limiter,
        client_key=None
        if reporter_id is not None
        else client_key_for(svc.settings.secret_key, request.remote_addr),
    )
    resp = jsonify(result.body)
    resp.status_code = result.status_code
    if result.replayed:
        resp.headers["Idempotent-Replayed"] = "true"
    return resp


@bp.route("/tips/<ref>", methods=["GET"])
@bp.doc(
    summary="The reporter's view of a tip",
    security=[{"reporterToken": []}, {}],
    parameters=[
        {"in": "header", "name": "X-Tip-Receipt", "required": False, "schema": {"type": "string"}}
    ],
)
@bp.response(200, ReporterTipSchema)
def get_tip(ref: str):
    """Show a tip to its owner or the holder of its receipt; anyone else gets 404."""
    session = db()
    reporter = current_reporter(session)
    return jsonify(
        view_tip(
            session,
            services().settings,
            ref,
            reporter_id=reporter.id if reporter else None,
            receipt=request.headers.get("X-Tip-Receipt"),
        )
    )
