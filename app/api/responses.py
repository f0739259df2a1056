"""What the API answers, as schemas: they document /api/v1/openapi.json and are fuzzed against it.

The views build their bodies with jsonify; these schemas only describe them, so
tests/system/test_fuzz_api.py (schemathesis) checks every answer against them.
Unknown keys are not allowed (additionalProperties false): a field added to a
response must be added here too.
"""

from __future__ import annotations

from marshmallow import Schema, fields

from app.reports.models import CATEGORY_CODES, OUTCOMES, PRIORITIES, STAFF_STATUSES

_REPORTER_STATUSES = ("received", "in_handling", "closed")
_TIME = {"format": "date-time"}  # ISO 8601 strings


class ErrorSchema(Schema):
    """Every 4xx and 5xx: a machine-readable code, a message and per-field errors."""

    code = fields.String(required=True, metadata={"example": "validation_error"})
    message = fields.String(required=True)
    errors = fields.Dict(required=True, metadata={"description": "messages by field name"})


class CategorySchema(Schema):
    """A tip category with its names."""

    code = fields.String(required=True, metadata={"enum": list(CATEGORY_CODES)})
    name_zh = fields.String(required=True)
    name_en = fields.String(required=True)
    severity = fields.Integer(required=True)


class ReporterTipSchema(Schema):
    """The reporter's view of their tip: a coarse status only."""

    ref = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": list(_REPORTER_STATUSES)})
    category = fields.String(required=True)
    received_at = fields.String(required=True, metadata=_TIME)
    photos = fields.Integer(required=True, metadata={"description": "how many photos"})
    needs_location = fields.Boolean(required=True)


class ReporterCreatedSchema(Schema):
    """A redeemed invite: the pseudonym and the device token (shown once)."""

    pseudonym = fields.String(required=True)
    role = fields.String(required=True)
    token = fields.String(required=True)


class PointsSchema(Schema):
    """A reporter's own points and rank (never anyone else's)."""

    balance = fields.Integer(required=True)
    period = fields.String(required=True)
    period_points = fields.Integer(required=True)
    rank = fields.Integer(required=True)
    rank_of = fields.Integer(required=True)


class MeSchema(Schema):
    """The signed-in reporter."""

    pseudonym = fields.String(required=True)
    role = fields.String(required=True)
    organisation = fields.String(required=True, allow_none=True)
    locale = fields.String(required=True)
    points = fields.Nested(PointsSchema, required=True)


class PathItemSchema(Schema):
    """One level of a grid's path, from the city down."""

    code = fields.String(required=True)
    name = fields.String(required=True)
    level = fields.String(required=True)


class GridPlacementSchema(Schema):
    """The grid containing a point."""

    code = fields.String(required=True)
    name = fields.String(required=True)
    path = fields.List(fields.Nested(PathItemSchema), required=True)
    layer_version = fields.Integer(required=True)


class StaffGridSchema(Schema):
    """A tip's grid in the staff API."""

    code = fields.String(required=True)
    name = fields.String(required=True)
    path = fields.List(fields.Nested(PathItemSchema))


class PseudonymSchema(Schema):
    """A reporter as staff see them: the pseudonym, never a channel identity."""

    pseudonym = fields.String(required=True)


class ClockSchema(Schema):
    """The response clock of a tip."""

    ack_due_at = fields.String(required=True, allow_none=True, metadata=_TIME)
    ack_seconds_left = fields.Integer(required=True, allow_none=True)
    ack_overdue = fields.Boolean(required=True)
    ack_met = fields.Boolean(required=True, allow_none=True)
    resolve_due_at = fields.String(required=True, allow_none=True, metadata=_TIME)
    resolve_seconds_left = fields.Integer(required=True, allow_none=True)
    resolve_overdue = fields.Boolean(required=True)
    resolve_met = fields.Boolean(required=True, allow_none=True)
    escalation_level = fields.Integer(required=True)


class StaffPhotoSchema(Schema):
    """A photo link, served only to staff who may see the tip."""

    url = fields.String(required=True)
    thumbnail_url = fields.String(required=True)
    width = fields.Integer(required=True)
    height = fields.Integer(required=True)


class StaffTipRowSchema(Schema):
    """One row of the staff queue."""

    ref = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": list(STAFF_STATUSES)})
    outcome = fields.String(required=True, allow_none=True, metadata={"enum": [*OUTCOMES, None]})
    priority = fields.String(required=True, metadata={"enum": list(PRIORITIES)})
    category = fields.String(required=True)
    grid = fields.Nested(StaffGridSchema, required=True, allow_none=True)
    reporter = fields.Nested(PseudonymSchema, required=True, allow_none=True)
    assignee = fields.String(required=True, allow_none=True)
    received_at = fields.String(required=True, metadata=_TIME)
    ack_due_at = fields.String(required=True, allow_none=True, metadata=_TIME)
    clock = fields.Nested(ClockSchema, required=True)
    url = fields.String(required=True)


class StaffTipPageSchema(Schema):
    """A page of the staff queue and the cursor of the next one."""

    tips = fields.List(fields.Nested(StaffTipRowSchema), required=True)
    next = fields.String(required=True, allow_none=True)


class StaffTipSchema(Schema):
    """One tip as staff in scope see it."""

    ref = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": list(STAFF_STATUSES)})
    outcome = fields.String(required=True, allow_none=True, metadata={"enum": [*OUTCOMES, None]})
    priority = fields.String(required=True, metadata={"enum": list(PRIORITIES)})
    priority_reasons = fields.List(fields.Raw(), required=True)
    category = fields.String(required=True)
    description = fields.String(required=True)
    channel = fields.String(required=True)
    received_at = fields.String(required=True, metadata=_TIME)
    observed_at = fields.String(required=True, allow_none=True, metadata=_TIME)
    latitude = fields.Float(required=True, allow_none=True)
    longitude = fields.Float(required=True, allow_none=True)
    accuracy_m = fields.Float(required=True, allow_none=True)
    address = fields.String(required=True, allow_none=True)
    grid = fields.Nested(StaffGridSchema, required=True, allow_none=True)
    routing_reason = fields.String(required=True)
    neighbour_grids = fields.List(fields.Raw(), required=True)
    flags = fields.List(fields.Raw(), required=True)
    reporter = fields.Nested(PseudonymSchema, required=True, allow_none=True)
    assignee = fields.String(required=True, allow_none=True)
    duplicate_of = fields.String(required=True, allow_none=True)
    clock = fields.Nested(ClockSchema, required=True)
    acknowledged_at = fields.String(required=True, allow_none=True, metadata=_TIME)
    resolved_at = fields.String(required=True, allow_none=True, metadata=_TIME)
    photos = fields.List(fields.Nested(StaffPhotoSchema), required=True)


class LeaderboardSchema(Schema):
    """A ranked board of reporters, organisations or towns."""

    period = fields.String(required=True)
    by = fields.String(required=True)
    rows = fields.List(fields.Dict(), required=True)
    total = fields.Integer(required=True)


# A photo is bytes, not JSON: documented by hand for the photo route.
JPEG_RESPONSE = {
    "description": "the JPEG",
    "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
}
