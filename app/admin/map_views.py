"""The map of open tips over the grid layer, and placing tips that wait for a location."""

from __future__ import annotations

from flask import jsonify, redirect, render_template, request, url_for
from marshmallow import EXCLUDE, Schema, fields, validate

from app.admin import bp
from app.admin.auth import current_viewer, login_required, request_locale, wants_json
from app.admin.forms import load_form
from app.reports.categories import list_categories
from app.reports.models import PRIORITIES
from app.security_headers import map_tiles
from app.staff.mapview import from_display, grid_outlines, tip_points
from app.staff.placement import PLACING_ROLES, list_unplaced, place_tip
from app.webapp import db, services


class MapArgs(Schema):
    """The map's filters (query string)."""

    class Meta:
        unknown = EXCLUDE

    category = fields.String(validate=validate.Length(max=30), load_default=None)
    priority = fields.String(validate=validate.OneOf(PRIORITIES), load_default=None)


class PlaceForm(Schema):
    """A pin dropped on the map, in the datum the map is drawn in."""

    class Meta:
        unknown = EXCLUDE  # the CSRF token

    latitude = fields.Float(required=True, allow_nan=False, validate=validate.Range(-90, 90))
    longitude = fields.Float(required=True, allow_nan=False, validate=validate.Range(-180, 180))


_map_args = MapArgs()
_place_form = PlaceForm()


def _load(schema: Schema, data) -> dict:
    """Validate the query string, empty fields counting as absent."""
    return load_form(schema, {k: v for k, v in data.items() if v != ""})


def _datum() -> str:
    return map_tiles(services().settings)[1]


@bp.route("/map", methods=["GET"])
@login_required
def map_view():
    """Show open tips and grid outlines on a map; supervisors also place unlocated tips."""
    args = _load(_map_args, request.args)
    viewer = current_viewer()
    session = db()
    tile_url, datum = map_tiles(services().settings)
    unplaced = list_unplaced(session, viewer) if viewer.role in PLACING_ROLES else []
    return render_template(
        "admin/map.html",
        tile_url=tile_url or "",
        datum=datum,
        categories=list_categories(session),
        priorities=PRIORITIES,
        args=args,
        unplaced=unplaced,
        tips_url=url_for("admin.map_tips", **{k: v for k, v in args.items() if v}),
        # The page swaps the placeholder for each tip's reference.
        tip_url=url_for("admin.tip", ref="T-XXXXXX"),
        place_url=url_for("admin.map_place", ref="T-XXXXXX"),
    )


@bp.route("/map/tips.json", methods=["GET"])
@login_required
def map_tips():
    """Return the open tips the caller may see as GeoJSON, in the tiles' datum."""
    args = _load(_map_args, request.args)
    collection = tip_points(
        db(),
        current_viewer(),
        datum=_datum(),
        category=args["category"],
        priority=args["priority"],
        locale=request_locale(),
    )
    return jsonify(collection)


@bp.route("/map/grids.json", methods=["GET"])
@login_required
def map_grids():
    """Return the outlines of the grids the caller may see, in the tiles' datum."""
    return jsonify(grid_outlines(db(), current_viewer(), datum=_datum()))


@bp.route("/map/place/<ref>", methods=["POST"])
@login_required
def map_place(ref: str):
    """Put a tip where the supervisor dropped the pin, and route it to that grid."""
    form = _load(_place_form, request.form)
    lat, lon = from_display(form["latitude"], form["longitude"], _datum())
    placement = place_tip(
        db(),
        current_viewer(),
        ref,
        lat=lat,
        lon=lon,
        nearest_m=services().settings.nearest_grid_m,
    )
    if wants_json():
        return jsonify(ref=ref, grid={"code": placement.code, "name": placement.name})
    return redirect(url_for("admin.tip", ref=ref), code=303)
