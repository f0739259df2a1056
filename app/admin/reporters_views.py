"""Reporters page: pseudonyms and their record; approve, suspend, ban; the audited reveal."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from marshmallow import EXCLUDE, Schema, fields, pre_load, validate

from app.admin import bp
from app.admin.auth import current_viewer, login_required
from app.admin.forms import load_form
from app.errors import DomainError, NotFound
from app.people.models import REPORTER_ROLES
from app.staff.reporters_admin import (
    MAX_REASON_CHARS,
    PAGE_SIZE,
    REPORTER_STATUSES,
    STATUS_ACTIONS,
    change_reporter_status,
    get_reporter,
    list_reporters,
    reveal_identity,
)
from app.webapp import db


class ListArgs(Schema):
    """The list's filters and page."""

    class Meta:
        unknown = EXCLUDE

    status = fields.String(load_default=None, validate=validate.OneOf(REPORTER_STATUSES))
    role = fields.String(load_default=None, validate=validate.OneOf(REPORTER_ROLES))
    q = fields.String(load_default="", validate=validate.Length(max=10))
    page = fields.Integer(load_default=1, validate=validate.Range(1, 10_000))

    @pre_load
    def drop_empty(self, data, **_kwargs):
        return {k: v for k, v in data.items() if v != ""}


class StatusForm(Schema):
    """Approve, suspend or ban, with the reason (required to suspend or ban)."""

    class Meta:
        unknown = EXCLUDE

    action = fields.String(required=True, validate=validate.OneOf(STATUS_ACTIONS))
    reason = fields.String(load_default="", validate=validate.Length(max=MAX_REASON_CHARS))


class RevealForm(Schema):
    """Why an admin needs the identity behind a pseudonym."""

    class Meta:
        unknown = EXCLUDE

    reason = fields.String(load_default="", validate=validate.Length(max=MAX_REASON_CHARS))


_list_args = ListArgs()
_status_form = StatusForm()
_reveal_form = RevealForm()


@bp.route("/reporters", methods=["GET"])
@login_required
def reporters():
    """List the reporters the caller may know of, with their tips in the caller's scope."""
    args = load_form(_list_args, request.args.to_dict())
    rows = list_reporters(
        db(),
        current_viewer(),
        status=args["status"],
        role=args["role"],
        query=args["q"],
        limit=PAGE_SIZE + 1,
        offset=(args["page"] - 1) * PAGE_SIZE,
    )
    return render_template(
        "admin/reporters.html",
        rows=rows[:PAGE_SIZE],
        more=len(rows) > PAGE_SIZE,
        args=args,
        statuses=REPORTER_STATUSES,
        roles=REPORTER_ROLES,
        actions=STATUS_ACTIONS,
    )


@bp.route("/reporters/<pseudonym>/status", methods=["POST"])
@login_required
def reporter_status(pseudonym: str):
    """Approve, suspend or ban a reporter; the change bites on their next tip."""
    form = load_form(_status_form, request.form)
    row = change_reporter_status(
        db(), current_viewer(), pseudonym, form["action"], reason=form["reason"]
    )
    return redirect(url_for("admin.reporters", q=row.pseudonym), code=303)


@bp.route("/reporters/<pseudonym>/reveal", methods=["GET", "POST"])
@login_required
def reporter_reveal(pseudonym: str):
    """Ask an admin for a reason, then show the channel identity (audited); 404 for others."""
    viewer = current_viewer()
    if viewer.role != "admin":
        raise NotFound("no such reporter")  # not 403: the action does not exist for them
    session = db()
    row = get_reporter(session, viewer, pseudonym)
    if request.method == "GET":
        return render_template("admin/reveal.html", row=row, identities=None, errors={})
    form = load_form(_reveal_form, request.form)
    try:
        identities = reveal_identity(session, viewer, row.pseudonym, reason=form["reason"])
    except DomainError as exc:
        if exc.status == 404:
            raise
        return render_template(
            "admin/reveal.html", row=row, identities=None, errors=exc.fields, reason=form["reason"]
        ), exc.status
    return render_template("admin/reveal.html", row=row, identities=identities, errors={})
