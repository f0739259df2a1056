"""Enter a tip for a caller on the phone or at the counter, and print their receipt."""

from __future__ import annotations

import uuid

from flask import render_template, request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate

from app.admin import bp
from app.admin.auth import current_viewer, login_required
from app.db import utcnow
from app.errors import DomainError
from app.grids.datum import CRS_NAMES
from app.reports.categories import list_categories
from app.reports.clock import LOCAL_TZ
from app.reports.schemas import MAX_DESCRIPTION
from app.reports.services import Upload
from app.security_headers import map_tiles
from app.staff.caller_intake import CALLER_CHANNELS, enter_tip_for_caller
from app.staff.mapview import from_display
from app.webapp import db, services


class CallerTipForm(Schema):
    """What the staff member types while the caller talks; the tip fields are checked again
    by the intake schema, this only turns the page's inputs into them."""

    class Meta:
        unknown = EXCLUDE  # the CSRF token

    channel = fields.String(required=True, validate=validate.OneOf(CALLER_CHANNELS))
    category = fields.String(required=True, validate=validate.Length(max=30))
    description = fields.String(load_default="", validate=validate.Length(max=MAX_DESCRIPTION))
    address = fields.String(load_default=None, validate=validate.Length(max=500))
    occurred_at = fields.NaiveDateTime(load_default=None, format="%Y-%m-%dT%H:%M")
    latitude = fields.Float(load_default=None, allow_nan=False)
    longitude = fields.Float(load_default=None, allow_nan=False)
    datum = fields.String(load_default=None, validate=validate.OneOf(CRS_NAMES))
    idempotency_key = fields.UUID(load_default=None)

    @pre_load
    def drop_empty(self, data, **_kwargs):
        return {k: v for k, v in data.items() if v != ""}


_form = CallerTipForm()


def _tip_fields(form: dict) -> dict:
    """Build the intake's fields: local time made aware, a map pin made WGS-84."""
    out: dict = {"category": form["category"], "description": form["description"]}
    if form["address"]:
        out["address"] = form["address"]
    if form["occurred_at"] is not None:
        out["occurred_at"] = form["occurred_at"].replace(tzinfo=LOCAL_TZ).isoformat()
    if form["latitude"] is not None and form["longitude"] is not None:
        datum = form["datum"] or map_tiles(services().settings)[1]
        try:
            lat, lon = from_display(form["latitude"], form["longitude"], datum)
        except (ValueError, OverflowError):
            lat, lon = form["latitude"], form["longitude"]  # the intake schema refuses it
        out.update(latitude=lat, longitude=lon, location_source="map")
    elif form["latitude"] is not None or form["longitude"] is not None:
        # Half a position: let the intake schema name the missing half.
        out.update({k: form[k] for k in ("latitude", "longitude") if form[k] is not None})
    return out


def _form_page(status: int = 200, *, errors: dict | None = None, typed: dict | None = None):
    return render_template(
        "admin/intake.html",
        categories=list_categories(db()),
        channels=CALLER_CHANNELS,
        # A fresh key per form: a double click or a retry stores the tip once.
        idempotency_key=str(uuid.uuid4()),
        errors=errors or {},
        typed=typed or {},
        datum=map_tiles(services().settings)[1],
        datums=CRS_NAMES,
        max_description=MAX_DESCRIPTION,
    ), status


@bp.route("/intake", methods=["GET"])
@login_required
def intake():
    """Show the form for a caller's tip."""
    return _form_page()


@bp.route("/intake", methods=["POST"])
@login_required
def intake_submit():
    """Store the caller's tip through the one intake service and show the receipt to read out."""
    typed = request.form.to_dict()
    try:
        form = _form.load(typed)
    except ValidationError as exc:
        return _form_page(422, errors=exc.messages_dict, typed=typed)
    svc = services()
    uploads = [
        Upload(f.read(), f.filename or "") for f in request.files.getlist("photos") if f.filename
    ]
    try:
        result = enter_tip_for_caller(
            db(),
            svc.settings,
            svc.store,
            current_viewer(),
            fields=_tip_fields(form),
            channel=form["channel"],
            uploads=uploads,
            idempotency_key=str(form["idempotency_key"]) if form["idempotency_key"] else None,
        )
    except DomainError as exc:
        if exc.status >= 500:
            raise
        return _form_page(exc.status, errors=exc.fields or {"_": [exc.message]}, typed=typed)
    return render_template(
        "admin/intake_receipt.html",
        body=result.body,
        channel=form["channel"],
        at=utcnow(),
    )
