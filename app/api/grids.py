"""Grid look-up: which basic grid contains a WGS-84 point."""

from __future__ import annotations

from flask import jsonify
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from app.api.responses import GridPlacementSchema
from app.errors import NotFound
from app.grids.services import lookup_grid
from app.webapp import db

bp = Blueprint("grids", __name__, url_prefix="/api/v1", description="Grids")


class LookupArgs(Schema):
    """A WGS-84 point."""

    lat = fields.Float(required=True, allow_nan=False, validate=validate.Range(-90, 90))
    lon = fields.Float(required=True, allow_nan=False, validate=validate.Range(-180, 180))


@bp.route("/grids/lookup", methods=["GET"])
@bp.arguments(LookupArgs, location="query")
@bp.doc(summary="Find the grid containing a point")
@bp.response(200, GridPlacementSchema)
def lookup(args: dict):
    """Return the grid containing the point, with its path up to the city, or 404."""
    placement = lookup_grid(db(), args["lat"], args["lon"])
    if placement is None:
        raise NotFound("no grid contains this point")
    return jsonify(
        code=placement.code,
        name=placement.name,
        path=placement.path,
        layer_version=placement.layer_version,
    )
