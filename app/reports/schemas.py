"""Marshmallow schemas for what a reporter sends and what they get back."""

from __future__ import annotations

import datetime as dt

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate, validates_schema

from app.reports.models import CATEGORY_CODES

MAX_DESCRIPTION = 4096


class TipInputSchema(Schema):
    """A tip's fields, as every channel delivers them (JSON values or form strings)."""

    class Meta:
        unknown = RAISE  # mass assignment (grid_id, status, points...) is refused, not ignored

    category = fields.String(required=True, validate=validate.OneOf(CATEGORY_CODES))
    description = fields.String(load_default="", validate=validate.Length(max=MAX_DESCRIPTION))
    latitude = fields.Float(allow_nan=False, validate=validate.Range(-90, 90))
    longitude = fields.Float(allow_nan=False, validate=validate.Range(-180, 180))
    accuracy_m = fields.Float(allow_nan=False, validate=validate.Range(min=0, max=1e7))
    occurred_at = fields.AwareDateTime(default_timezone=dt.UTC)
    address = fields.String(validate=validate.Length(max=500))
    anonymous = fields.Boolean(load_default=False)
    location_source = fields.String(validate=validate.OneOf(("device", "map")))

    @pre_load
    def drop_empty(self, data, **_kwargs):
        """Treat empty form fields and JSON nulls as absent, so optional means optional."""
        if not isinstance(data, dict):
            raise ValidationError("expected an object of fields", field_name="_schema")
        # NUL is no text anyone types, and PostgreSQL cannot store it: refused on every backend.
        nul = [k for k, v in data.items() if isinstance(v, str) and "\x00" in v]
        if nul:
            raise ValidationError({str(k): ["must not contain NUL characters"] for k in nul})
        return {k: v for k, v in data.items() if v not in ("", None)}

    @validates_schema
    def both_coordinates(self, data, **_kwargs):
        """Refuse half a location: a latitude without a longitude routes nowhere."""
        if ("latitude" in data) != ("longitude" in data):
            missing = "longitude" if "latitude" in data else "latitude"
            raise ValidationError("latitude and longitude come together", field_name=missing)


class GridRefSchema(Schema):
    """A grid as a reporter or partner sees it."""

    code = fields.String()
    name = fields.String()
    path = fields.List(fields.Dict())


class TipReceiptSchema(Schema):
    """What a reporter gets back for a stored tip (documentation of the 201 body)."""

    ref = fields.String(metadata={"example": "T-7K3M9Q"})
    status = fields.String(metadata={"enum": ["received", "in_handling", "closed"]})
    priority = fields.String()
    grid = fields.Nested(GridRefSchema, allow_none=True)
    photos = fields.List(fields.Dict())
    flags = fields.List(fields.String())
    receipt = fields.String(metadata={"example": "1234-5678-9012-3456"})
