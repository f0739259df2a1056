"""Landmarks page: the named places of the grids a staff member looks after."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from marshmallow import EXCLUDE, Schema, fields, pre_load, validate

from app.admin import bp
from app.admin.auth import current_viewer, login_required
from app.admin.forms import load_form
from app.errors import DomainError
from app.grids.datum import CRS_NAMES
from app.security_headers import map_tiles
from app.staff.landmarks import (
    MAX_NAME_LENGTH,
    create_landmark,
    delete_landmark,
    list_landmarks,
    match_landmark,
    update_landmark,
)
from app.staff.mapview import from_display, to_display
from app.webapp import db, services


class LandmarkForm(Schema):
    """A landmark as typed: aliases one per line (or separated by commas)."""

    class Meta:
        unknown = EXCLUDE  # the CSRF token

    grid_code = fields.String(required=True, validate=validate.Length(min=1, max=64))
    name = fields.String(required=True, validate=validate.Length(min=1, max=MAX_NAME_LENGTH))
    aliases = fields.String(load_default="", validate=validate.Length(max=4000))
    latitude = fields.Float(required=True, allow_nan=False, validate=validate.Range(-90, 90))
    longitude = fields.Float(required=True, allow_nan=False, validate=validate.Range(-180, 180))
    # Which map the coordinates were read from: ours (the tiles' datum) or a phone's map app.
    datum = fields.String(load_default=None, validate=validate.OneOf(CRS_NAMES))

    @pre_load
    def drop_empty(self, data, **_kwargs):
        return {k: v for k, v in data.items() if v != ""}


class ListArgs(Schema):
    """The list's filters, and a test box that shows what a typed address would match."""

    class Meta:
        unknown = EXCLUDE

    grid = fields.String(load_default=None, validate=validate.Length(max=64))
    q = fields.String(load_default="", validate=validate.Length(max=200))
    test = fields.String(load_default="", validate=validate.Length(max=500))


_form = LandmarkForm()
_list_args = ListArgs()


def _values(form: dict) -> dict:
    """Turn the form into the service's arguments: WGS-84 and a list of aliases."""
    datum = form["datum"] or map_tiles(services().settings)[1]
    lat, lon = from_display(form["latitude"], form["longitude"], datum)
    aliases = [
        a.strip() for a in form["aliases"].replace(",", "\n").replace("，", "\n").split("\n")
    ]
    return {"name": form["name"], "latitude": lat, "longitude": lon, "aliases": aliases}


def _page(args: dict, *, status: int = 200, errors: dict | None = None, typed: dict | None = None):
    """Render the list; after a refused form, with its errors and what was typed."""
    session = db()
    tile_url, datum = map_tiles(services().settings)
    items = list_landmarks(session, current_viewer(), grid_code=args["grid"], query=args["q"])
    shown = {lm.id: to_display(lm.latitude, lm.longitude, datum) for lm in items}
    match = match_landmark(session, args["test"]) if args["test"].strip() else None
    return render_template(
        "admin/landmarks.html",
        items=items,
        shown=shown,
        args=args,
        match=match,
        datum=datum,
        datums=CRS_NAMES,
        tile_url=tile_url or "",
        errors=errors or {},
        typed=typed or {},
    ), status


@bp.route("/landmarks", methods=["GET"])
@login_required
def landmarks():
    """List the landmarks in scope, with a form to add one and a box to test matching."""
    return _page(load_form(_list_args, request.args))


@bp.route("/landmarks", methods=["POST"])
@login_required
def landmark_create():
    """Add a landmark to one of the caller's grids (a refused form comes back filled in)."""
    try:
        form = load_form(_form, request.form)
        create_landmark(db(), current_viewer(), grid_code=form["grid_code"], **_values(form))
    except DomainError as exc:
        if exc.status == 404:
            raise
        args = {"grid": None, "q": "", "test": ""}
        return _page(args, status=exc.status, errors=exc.fields, typed=request.form.to_dict())
    return redirect(url_for("admin.landmarks", grid=form["grid_code"]), code=303)


@bp.route("/landmarks/<int:landmark_id>", methods=["POST"])
@login_required
def landmark_update(landmark_id: int):
    """Change a landmark of the caller's grids."""
    form = load_form(_form, request.form)
    update_landmark(
        db(), current_viewer(), landmark_id, grid_code=form["grid_code"], **_values(form)
    )
    return redirect(url_for("admin.landmarks", grid=form["grid_code"]), code=303)


@bp.route("/landmarks/<int:landmark_id>/delete", methods=["POST"])
@login_required
def landmark_delete(landmark_id: int):
    """Remove a landmark of the caller's grids."""
    delete_landmark(db(), current_viewer(), landmark_id)
    return redirect(url_for("admin.landmarks"), code=303)
