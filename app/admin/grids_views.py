"""Grids page (admins): upload a new layer version, and assign staff to grid codes."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from marshmallow import EXCLUDE, Schema, fields, validate

from app.admin import bp
from app.admin.auth import current_viewer, login_required, request_locale
from app.admin.forms import load_form
from app.errors import DomainError, NotFound
from app.grids.datum import CRS_NAMES
from app.grids.services import LayerInvalid
from app.i18n import t
from app.staff.grids_admin import (
    assign_scope,
    list_assignments,
    list_layers,
    unassign_scope,
    upload_layer,
)
from app.webapp import db


class UploadForm(Schema):
    """The layer upload's fields (the file comes separately)."""

    class Meta:
        unknown = EXCLUDE

    crs = fields.String(load_default="wgs84", validate=validate.OneOf(CRS_NAMES))
    replace = fields.Boolean(load_default=False)


class ScopeForm(Schema):
    """Give or take one grid code of a staff member's scope."""

    class Meta:
        unknown = EXCLUDE

    staff_id = fields.Integer(required=True, strict=False)
    grid_code = fields.String(required=True, validate=validate.Length(min=1, max=40))


_ERROR_KEYS = {
    "layer_exists": "extras.grids.exists",
    "layer_unreadable": "extras.grids.unreadable",
    "import_conflict": "extras.grids.conflict",
}
_upload_form = UploadForm()
_scope_form = ScopeForm()


def _page(status: int = 200, **extra):
    """Render the grids page (admins only: NotFound for everyone else, from the services)."""
    session = db()
    viewer = current_viewer()
    return render_template(
        "admin/grids.html",
        layers=list_layers(session, viewer),
        assignments=list_assignments(session, viewer),
        crs_names=CRS_NAMES,
        result=extra.get("result"),
        problems=extra.get("problems", []),
        error=extra.get("error"),
    ), status


@bp.route("/grids", methods=["GET"])
@login_required
def grids():
    """Show the layer versions, the upload form and who looks after which grid."""
    return _page()


@bp.route("/grids/upload", methods=["POST"])
@login_required
def grids_upload():
    """Check and import an uploaded GeoJSON layer; every problem is listed when refused."""
    viewer = current_viewer()
    if viewer.role != "admin":
        raise NotFound("no such page")
    form = load_form(_upload_form, request.form)
    upload = request.files.get("file")
    locale = request_locale()
    if upload is None or not upload.filename:
        return _page(422, error=t("extras.grids.no_file", locale))
    data = upload.read()
    try:
        result = upload_layer(
            db(),
            viewer,
            data,
            crs=form["crs"],
            replace=form["replace"],
            source_name=upload.filename,
        )
    except LayerInvalid as exc:
        db().rollback()
        return _page(422, problems=exc.problems, error=t("extras.grids.invalid", locale))
    except DomainError as exc:
        if exc.status == 404:
            raise
        db().rollback()
        key = _ERROR_KEYS.get(exc.code)
        # The service's own message carries the detail (which version is active, the JSON error).
        return _page(exc.status, error=(t(key, locale) + " " if key else "") + exc.message)
    return _page(200, result=result)


@bp.route("/grids/scopes", methods=["POST"])
@login_required
def grids_scope():
    """Add (or, with remove=1, take away) a grid code in a staff member's scope."""
    form = load_form(_scope_form, request.form)
    change = unassign_scope if request.form.get("remove") else assign_scope
    change(db(), current_viewer(), staff_id=form["staff_id"], grid_code=form["grid_code"])
    return redirect(url_for("admin.grids"), code=303)
