"""Points and awards pages: leaderboards, award runs (run, diff, downloads), approvals, rules.

Leaderboards and approvals are scoped like the queue (a tip's grid decides);
award runs cover the whole city, so only admins and city-wide supervisors see
them, and only admins run them or edit the rules.
"""

from __future__ import annotations

from flask import Response, redirect, render_template, request, url_for
from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate

from app.admin import bp
from app.admin.auth import current_staff, current_viewer, login_required, role_required
from app.admin.forms import load_form
from app.db import utcnow
from app.errors import DomainError, NotFound
from app.i18n import normalise_locale
from app.people.models import Organisation
from app.rewards.awards import get_run, list_runs, run_awards, verify_run
from app.rewards.export import FORMATS, export_run
from app.rewards.leaderboards import GROUPINGS, leaderboard, scope_condition
from app.rewards.models import PointRequest
from app.rewards.rules import (
    ORG_AWARDS,
    ROLES,
    RULE_DEFAULTS,
    RULE_POINTS_LIMIT,
    SETTING_DEFAULTS,
    SETTING_LIMITS,
    current_period,
)
from app.rewards.services import (
    balance_mismatches,
    current_settings,
    decide_request,
    list_rules,
    pending_requests,
    set_rule,
    set_setting,
)
from app.webapp import db


class BoardArgs(Schema):
    """The leaderboard's period, grouping and filters (query string)."""

    class Meta:
        unknown = EXCLUDE

    period = fields.String(load_default=None, validate=validate.Length(max=10))
    by = fields.String(load_default="reporter", validate=validate.OneOf(GROUPINGS))
    role = fields.String(load_default=None, validate=validate.OneOf(ROLES))
    org = fields.Integer(load_default=None, validate=validate.Range(min=1))
    town = fields.String(load_default=None, validate=validate.Length(max=40))

    @pre_load
    def drop_empty(self, data, **_kwargs):
        return {k: v for k, v in data.items() if v != ""}


class RunForm(Schema):
    """The period to run the awards for."""

    class Meta:
        unknown = EXCLUDE

    period = fields.String(required=True, validate=validate.Length(min=4, max=10))


class DecisionForm(Schema):
    """A second approver's decision."""

    class Meta:
        unknown = EXCLUDE

    decision = fields.String(required=True, validate=validate.OneOf(("approve", "reject")))


class ExportArgs(Schema):
    """The language of the export's headings (Chinese by default)."""

    class Meta:
        unknown = EXCLUDE

    lang = fields.String(load_default="zh", validate=validate.OneOf(("zh", "en")))


_board_args, _run_form, _decision_form, _export_args = (
    BoardArgs(),
    RunForm(),
    DecisionForm(),
    ExportArgs(),
)
_point_range = validate.Range(-RULE_POINTS_LIMIT, RULE_POINTS_LIMIT)


def _city_wide():
    """Return the viewer if they see the whole city, else pretend the page does not exist."""
    viewer = current_viewer()
    if not viewer.sees_all:
        raise NotFound("no such page")
    return viewer


@bp.route("/rewards", methods=["GET"])
@login_required
def rewards():
    """Show a leaderboard of reporters, organisations or towns, with the board's filters."""
    args = load_form(_board_args, request.args.to_dict())
    session = db()
    period = args["period"] or current_period(utcnow())
    board = leaderboard(
        session,
        period,
        by=args["by"],
        role=args["role"],
        organisation_id=args["org"],
        town=args["town"],
        viewer=current_viewer(),
    )
    organisations = session.execute(
        Organisation.__table__.select().order_by(Organisation.name)
    ).all()
    return render_template(
        "admin/rewards/leaderboard.html",
        board=board,
        args={**args, "period": board["period"]},
        groupings=GROUPINGS,
        roles=ROLES,
        organisations=organisations,
        pending=len(pending_requests(session, visible=_requests_in_scope())),
    )


def _requests_in_scope():
    """Limit pending requests to tips the signed-in viewer may see."""
    return scope_condition(current_viewer(), PointRequest.grid_path)


@bp.route("/rewards/runs", methods=["GET"])
@login_required
def rewards_runs():
    """List the award runs, newest first, with the run button for admins."""
    _city_wide()
    session = db()
    runs = list_runs(session)
    return render_template(
        "admin/rewards/runs.html",
        runs=runs,
        default_period=current_period(utcnow(), "year"),
        errors={},
    )


@bp.route("/rewards/runs", methods=["POST"])
@role_required("admin")
def rewards_run_post():
    """Freeze a snapshot of a period's ranking and nominees; a re-run stores a new run."""
    form = load_form(_run_form, request.form)
    run = run_awards(db(), form["period"], actor_id=current_staff().id)
    return redirect(url_for("admin.rewards_run", run_id=run.id), code=303)


@bp.route("/rewards/runs/<int:run_id>", methods=["GET"])
@login_required
def rewards_run(run_id: int):
    """Show one run: nominees with their evidence, the difference from the previous run."""
    _city_wide()
    run = get_run(db(), run_id)
    return render_template(
        "admin/rewards/run.html",
        run=run,
        snapshot=run.snapshot,
        verified=verify_run(run),
        org_awards=ORG_AWARDS,
    )


@bp.route("/rewards/runs/<int:run_id>/export.<fmt>", methods=["GET"])
@login_required
def rewards_export(run_id: int, fmt: str):
    """Download a run as CSV or XLSX (Chinese headings unless ?lang=en)."""
    _city_wide()
    if fmt not in FORMATS:
        raise NotFound("no such format")
    args = load_form(_export_args, request.args.to_dict())
    file = export_run(get_run(db(), run_id), fmt, normalise_locale(args["lang"]))
    return Response(
        file.content,
        mimetype=file.mimetype,
        headers={"Content-Disposition": f'attachment; filename="{file.filename}"'},
    )


@bp.route("/rewards/approvals", methods=["GET"])
@role_required("admin", "supervisor")
def rewards_approvals():
    """List the entries waiting for a second approver (tips in the caller's scope)."""
    session = db()
    rows = pending_requests(session, visible=_requests_in_scope())
    return render_template("admin/rewards/approvals.html", rows=rows)


@bp.route("/rewards/approvals/<int:request_id>", methods=["POST"])
@role_required("admin", "supervisor")
def rewards_decide(request_id: int):
    """Approve or reject an entry; the person who asked for it cannot approve it."""
    form = load_form(_decision_form, request.form)
    viewer = current_viewer()
    decide_request(
        db(),
        request_id,
        approver_id=viewer.staff_id,
        approve=form["decision"] == "approve",
        can_see=viewer.can_see,
    )
    return redirect(url_for("admin.rewards_approvals"), code=303)


@bp.route("/rewards/rules", methods=["GET"])
@role_required("admin", "supervisor")
def rewards_rules():
    """Show the rules and settings; admins edit them."""
    session = db()
    return render_template(
        "admin/rewards/rules.html",
        rules=list_rules(session),
        settings=current_settings(session.connection()),
        setting_keys=tuple(SETTING_DEFAULTS),
        setting_limits=SETTING_LIMITS,
        points_limit=RULE_POINTS_LIMIT,
        mismatches=balance_mismatches(session),
    )


@bp.route("/rewards/rules", methods=["POST"])
@role_required("admin")
def rewards_rules_post():
    """Save changed rule points, active flags and settings (each change is audited)."""
    session = db()
    actor = current_staff().id
    errors: dict[str, list[str]] = {}
    rules = {r["code"]: r for r in list_rules(session)}
    settings = current_settings(session.connection())
    for code in RULE_DEFAULTS:
        raw = request.form.get(f"points_{code}", "")
        try:
            points = fields.Integer(validate=_point_range).deserialize(raw)
        except ValidationError as exc:
            errors[f"points_{code}"] = exc.messages
            continue
        active = request.form.get(f"active_{code}") == "1"
        if (points, active) != (rules[code]["points"], rules[code]["active"]):
            set_rule(session, code, points=points, active=active, actor_id=actor)
    for key, (low, high) in SETTING_LIMITS.items():
        raw = request.form.get(f"setting_{key}", "")
        try:
            value = fields.Integer(validate=validate.Range(low, high)).deserialize(raw)
        except ValidationError as exc:
            errors[f"setting_{key}"] = exc.messages
            continue
        if value != settings[key]:
            set_setting(session, key, value, actor_id=actor)
    if errors:
        raise DomainError("some fields are not valid", code="validation_error", fields=errors)
    return redirect(url_for("admin.rewards_rules"), code=303)
