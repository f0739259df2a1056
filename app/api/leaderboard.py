"""The staff leaderboard: points by reporter, organisation or town, scoped like the admin."""

from __future__ import annotations

from flask import jsonify
from flask_smorest import Blueprint
from marshmallow import RAISE, Schema, fields, validate

from app.api.responses import LeaderboardSchema
from app.api.staff import current_api_viewer
from app.db import utcnow
from app.db_ids import MAX_ID
from app.rewards.leaderboards import GROUPINGS, leaderboard
from app.rewards.rules import ROLES, current_period
from app.webapp import db

bp = Blueprint("leaderboard_api", __name__, url_prefix="/api/v1/staff", description="Staff: points")


class LeaderboardArgs(Schema):
    """Which board: the period (default this month), the grouping and the filters."""

    class Meta:
        unknown = RAISE

    period = fields.String(load_default=None, validate=validate.Length(max=10))
    by = fields.String(load_default="reporter", validate=validate.OneOf(GROUPINGS))
    role = fields.String(load_default=None, validate=validate.OneOf(ROLES))
    org = fields.Integer(load_default=None, validate=validate.Range(min=1, max=MAX_ID))
    town = fields.String(load_default=None, validate=validate.Length(min=1, max=40))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


@bp.route("/leaderboard", methods=["GET"])
@bp.arguments(LeaderboardArgs, location="query")
@bp.doc(summary="Points leaderboard", security=[{"staffToken": []}])
@bp.response(200, LeaderboardSchema)
def get_leaderboard(args: dict):
    """Rank reporters (pseudonyms), organisations or towns; only tips in scope count."""
    viewer = current_api_viewer()
    board = leaderboard(
        db(),
        args["period"] or current_period(utcnow()),
        by=args["by"],
        role=args["role"],
        organisation_id=args["org"],
        town=args["town"],
        viewer=viewer,
        limit=args["limit"],
    )
    return jsonify(board)
