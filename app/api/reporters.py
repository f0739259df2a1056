"""Invite redemption and the reporter's own profile."""

from __future__ import annotations

from flask import jsonify
from flask_smorest import Blueprint
from marshmallow import RAISE, Schema, fields, validate

from app.api.auth import current_reporter
from app.api.responses import MeSchema, ReporterCreatedSchema
from app.people.errors import Unauthorised
from app.people.services import redeem_invite
from app.rewards.leaderboards import reporter_points
from app.webapp import db, services

bp = Blueprint("reporters", __name__, url_prefix="/api/v1", description="Reporters")


class RedeemSchema(Schema):
    """An invite code to exchange for a reporter token."""

    class Meta:
        unknown = RAISE

    invite = fields.String(required=True, validate=validate.Length(min=4, max=40))


@bp.route("/reporters", methods=["POST"])
@bp.arguments(RedeemSchema)
@bp.doc(summary="Redeem an invite for a reporter token")
@bp.response(201, ReporterCreatedSchema)
def create_reporter(body: dict):
    """Turn an invite code into a pseudonymous reporter and a device token (shown once)."""
    reporter, token = redeem_invite(db(), services().settings.secret_key, body["invite"])
    return jsonify(pseudonym=reporter.pseudonym, role=reporter.role, token=token), 201


class MeArgs(Schema):
    """Which period the points are counted over (default: this month)."""

    class Meta:
        unknown = RAISE

    period = fields.String(load_default=None, validate=validate.Length(max=10))


@bp.route("/me", methods=["GET"])
@bp.arguments(MeArgs, location="query")
@bp.doc(summary="The signed-in reporter", security=[{"reporterToken": []}])
@bp.response(200, MeSchema)
def me(args: dict):
    """Show the reporter their pseudonym, role, organisation, points and own rank."""
    session = db()
    reporter = current_reporter(session)
    if reporter is None:
        raise Unauthorised("sign in with a reporter token")
    return jsonify(
        pseudonym=reporter.pseudonym,
        role=reporter.role,
        organisation=reporter.organisation.name if reporter.organisation else None,
        locale=reporter.locale,
        # Their own figures and rank only: never another reporter's points.
        points=reporter_points(session, reporter.id, period=args["period"]),
    )
