"""The staff API: the queue, a tip, its photos and the workflow actions, scoped like the admin.

Authorization is a staff bearer token (`tipline users token USERNAME`). The
same scope and service functions as the admin pages apply: a tip out of scope
is 404, and so is its photo; unknown fields in a body are refused.
"""

from __future__ import annotations

import datetime as dt

from flask import g, jsonify, url_for
from flask_smorest import Blueprint
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from app.admin.photos import photo_response
from app.api.auth import bearer_token
from app.api.responses import JPEG_RESPONSE, StaffTipPageSchema, StaffTipSchema
from app.db import utcnow
from app.db_ids import fits_id
from app.grids.services import describe_grid
from app.people.errors import Unauthorised
from app.people.models import Reporter, StaffUser
from app.reports.clock import clock_status
from app.reports.models import OUTCOMES, PRIORITIES, STAFF_STATUSES, Tip
from app.reports.workflow import ACTIONS, NOTE_MAX
from app.staff.actions import act_on_tip
from app.staff.queue import MAX_PAGE, QueueFilters, queue_page
from app.staff.scope import Viewer, viewer_for, visible_tip
from app.staff.sessions import staff_for_api_token
from app.webapp import db

bp = Blueprint(
    "staff_api", __name__, url_prefix="/api/v1/staff", description="Staff: queue and actions"
)


class TipListArgs(Schema):
    """Filters and the keyset cursor of the staff tip list."""

    class Meta:
        unknown = RAISE

    status = fields.List(fields.String(validate=validate.OneOf(STAFF_STATUSES)), load_default=list)
    priority = fields.String(validate=validate.OneOf(PRIORITIES), load_default=None)
    category = fields.String(validate=validate.Length(max=64), load_default=None)
    grid = fields.String(validate=validate.Length(max=64), load_default=None)
    channel = fields.String(validate=validate.Length(max=20), load_default=None)
    received_from = fields.AwareDateTime(
        data_key="from", default_timezone=dt.UTC, load_default=None
    )
    received_to = fields.AwareDateTime(data_key="to", default_timezone=dt.UTC, load_default=None)
    flagged = fields.Boolean(load_default=False)
    mine = fields.Boolean(load_default=False)
    after = fields.String(validate=validate.Length(max=80), load_default=None)
    limit = fields.Integer(validate=validate.Range(min=1, max=MAX_PAGE), load_default=50)


class ActionBody(Schema):
    """One workflow action; any other field (status, grid_id, points...) is refused."""

    class Meta:
        unknown = RAISE

    action = fields.String(required=True, validate=validate.OneOf(ACTIONS))
    assignee = fields.Raw(load_default=None)  # a staff id or username
    duplicate_of = fields.String(validate=validate.Length(max=20), load_default=None)
    outcome = fields.String(validate=validate.OneOf(OUTCOMES), load_default=None)
    note = fields.String(validate=validate.Length(max=NOTE_MAX), load_default=None)

    @validates_schema
    def assignee_is_plain(self, data, **_kwargs):
        value = data.get("assignee")
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | str)
            or len(str(value)) > 80
            or (isinstance(value, int) and not fits_id(value))
        ):
            raise ValidationError("a staff id or username", "assignee")


def current_api_viewer() -> Viewer:
    """Authenticate the staff bearer token and return its scope (401 without a valid one)."""
    if "api_viewer" not in g:
        token = bearer_token()
        staff = staff_for_api_token(db(), token) if token else None
        if staff is None:
            raise Unauthorised("use Authorization: Bearer <staff token>")
        g.api_viewer = viewer_for(db(), staff)
    return g.api_viewer


def _photos(tip: Tip) -> list[dict]:
    return [
        {
            "url": url_for("staff_api.photo", photo_id=p.id, kind="derivative"),
            "thumbnail_url": url_for("staff_api.photo", photo_id=p.id, kind="thumbnail"),
            "width": p.width,
            "height": p.height,
        }
        for p in tip.photos
    ]


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def tip_json(session, tip: Tip, *, now: dt.datetime) -> dict:
    """Return the staff view of one tip: pseudonym only, never a channel identity."""
    grid = describe_grid(session, tip.grid_id) if tip.grid_id else None
    reporter = session.get(Reporter, tip.reporter_id) if tip.reporter_id else None
    assignee = session.get(StaffUser, tip.assignee_id) if tip.assignee_id else None
    original = session.get(Tip, tip.duplicate_of_id) if tip.duplicate_of_id else None
    return {
        "ref": tip.ref,
        "status": tip.status,
        "outcome": tip.outcome,
        "priority": tip.priority,
        "priority_reasons": tip.priority_reasons or [],
        "category": tip.category.code,
        "description": tip.description,
        "channel": tip.channel,
        "received_at": _iso(tip.received_at),
        "observed_at": _iso(tip.observed_at),
        "latitude": tip.latitude,
        "longitude": tip.longitude,
        "accuracy_m": tip.accuracy_m,
        "address": tip.address,
        "grid": None if grid is None else {k: grid[k] for k in ("code", "name", "path")},
        "routing_reason": tip.routing_reason,
        "neighbour_grids": tip.neighbour_grids or [],
        "flags": tip.flags or [],
        "reporter": None if reporter is None else {"pseudonym": reporter.pseudonym},
        "assignee": None if assignee is None else assignee.username,
        "duplicate_of": None if original is None else original.ref,
        "clock": clock_status(tip, now),
        "acknowledged_at": _iso(tip.acknowledged_at),
        "resolved_at": _iso(tip.resolved_at),
        "photos": _photos(tip),
    }


@bp.route("/tips", methods=["GET"])
@bp.arguments(TipListArgs, location="query", as_kwargs=True, unknown=RAISE)
@bp.doc(summary="The triage queue in scope", security=[{"staffToken": []}])
@bp.response(200, StaffTipPageSchema)
def list_tips(after, limit, mine, **filters):
    """List tips in scope, most urgent first; follow `next` for the next page."""
    session = db()
    page = queue_page(
        session,
        current_api_viewer(),
        filters=QueueFilters(statuses=tuple(filters.pop("status")), assigned_to_me=mine, **filters),
        after=after,
        limit=limit,
    )
    now = utcnow()
    return jsonify(
        tips=[
            {
                "ref": r.tip.ref,
                "status": r.tip.status,
                "outcome": r.tip.outcome,
                "priority": r.tip.priority,
                "category": r.category_code,
                "grid": None if r.grid_code is None else {"code": r.grid_code, "name": r.grid_name},
                "reporter": None if r.pseudonym is None else {"pseudonym": r.pseudonym},
                "assignee": r.assignee,
                "received_at": _iso(r.tip.received_at),
                "ack_due_at": _iso(r.tip.ack_due_at),
                "clock": clock_status(r.tip, now),
                "url": url_for("staff_api.get_tip", ref=r.tip.ref),
            }
            for r in page.rows
        ],
        next=page.next_cursor,
    )


@bp.route("/tips/<ref>", methods=["GET"])
@bp.doc(summary="One tip in scope", security=[{"staffToken": []}])
@bp.response(200, StaffTipSchema)
def get_tip(ref: str):
    """Show one tip in scope (404 for any other)."""
    session = db()
    return jsonify(tip_json(session, visible_tip(session, current_api_viewer(), ref), now=utcnow()))


@bp.route("/tips/<ref>/actions", methods=["POST"])
@bp.arguments(ActionBody, location="json", as_kwargs=True)
@bp.doc(summary="Apply a workflow action", security=[{"staffToken": []}])
@bp.response(200, StaffTipSchema)
def post_action(ref: str, **body):
    """Acknowledge, assign, start, resolve, reject or mark a duplicate; answer with the tip."""
    session = db()
    tip = act_on_tip(session, current_api_viewer(), ref, **body)
    return jsonify(tip_json(session, tip, now=utcnow()))


@bp.route("/photos/<int:photo_id>/<kind>", methods=["GET"])
@bp.doc(
    summary="A photo of a tip in scope (JPEG)",
    security=[{"staffToken": []}],
    responses={200: JPEG_RESPONSE},
)
def photo(photo_id: int, kind: str):
    """Serve a derivative or thumbnail of a photo whose tip is in scope."""
    return photo_response(current_api_viewer(), photo_id, kind)
