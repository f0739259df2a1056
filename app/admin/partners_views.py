"""Partners page (admins only): Open311 keys and webhook subscriptions, the delivery log.

A new key or signing secret is shown once, on the page that answers the POST that
made it (no redirect: it is never stored in the clear or put in a URL). To anyone
but an admin the pages do not exist (404, as the grids page).
"""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from marshmallow import EXCLUDE, Schema, fields, pre_load, validate

from app.admin import bp
from app.admin.auth import current_staff, login_required
from app.admin.forms import load_form
from app.errors import DomainError, NotFound
from app.partners.administration import (
    create_partner_as,
    partner_detail,
    partner_overview,
    revoke_partner_as,
    subscribe_as,
    unsubscribe_as,
)
from app.partners.models import WEBHOOK_EVENTS
from app.webapp import db, services


class PartnerForm(Schema):
    """A new partner: its name, organisation and the grid paths it may file into."""

    class Meta:
        unknown = EXCLUDE

    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    organisation = fields.String(load_default=None, validate=validate.Length(max=120))
    grid_paths = fields.String(load_default="", validate=validate.Length(max=4000))

    @pre_load
    def drop_empty(self, data, **_kwargs):
        return {k: v for k, v in data.items() if v != "" or k == "name"}


class SubscriptionForm(Schema):
    """A new subscription: where to, and which events (none ticked: all of them)."""

    class Meta:
        unknown = EXCLUDE

    url = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    events = fields.List(fields.String(validate=validate.OneOf(WEBHOOK_EVENTS)), load_default=[])


_partner_form = PartnerForm()
_subscription_form = SubscriptionForm()


def _admin_id() -> int:
    """Return the signed-in admin's id; to anyone else the page does not exist."""
    staff = current_staff()
    if staff.role != "admin":
        raise NotFound("no such page")
    return staff.id


def _list_page(status: int = 200, **extra):
    return render_template(
        "admin/partners.html",
        partners=partner_overview(db()),
        errors=extra.get("errors", {}),
        typed=extra.get("typed", {}),
    ), status


def _detail_page(partner_id: int, status: int = 200, **extra):
    return render_template(
        "admin/partner.html",
        p=partner_detail(db(), partner_id),
        events=WEBHOOK_EVENTS,
        new_key=extra.get("new_key"),
        new_secret=extra.get("new_secret"),
        errors=extra.get("errors", {}),
        typed=extra.get("typed", {}),
    ), status


@bp.route("/partners", methods=["GET"])
@login_required
def partners():
    """List partner keys: prefix, organisation, grids, created, revoked, last used."""
    _admin_id()
    return _list_page()


@bp.route("/partners", methods=["POST"])
@login_required
def partner_create():
    """Make a partner key and show it once."""
    staff_id = _admin_id()
    typed = {k: request.form.get(k, "") for k in ("name", "organisation", "grid_paths")}
    try:
        form = load_form(_partner_form, request.form)
        paths = [p for p in form["grid_paths"].replace(",", "\n").split() if p]
        partner, key = create_partner_as(
            db(),
            services().settings,
            staff_id,
            name=form["name"],
            organisation=form["organisation"],
            grid_paths=paths,
        )
    except DomainError as exc:
        db().rollback()
        errors = {k: v if isinstance(v, list) else [exc.message] for k, v in exc.fields.items()}
        return _list_page(exc.status, errors=errors or {"name": [exc.message]}, typed=typed)
    return _detail_page(partner.id, 201, new_key=key)


@bp.route("/partners/<int:partner_id>", methods=["GET"])
@login_required
def partner(partner_id: int):
    """Show one partner, its subscriptions and the delivery log."""
    _admin_id()
    return _detail_page(partner_id)


@bp.route("/partners/<int:partner_id>/revoke", methods=["POST"])
@login_required
def partner_revoke(partner_id: int):
    """Revoke the partner's key: Open311 answers 403 to it from now on."""
    revoke_partner_as(db(), _admin_id(), partner_id)
    return redirect(url_for("admin.partner", partner_id=partner_id), code=303)


@bp.route("/partners/<int:partner_id>/webhooks", methods=["POST"])
@login_required
def partner_subscribe(partner_id: int):
    """Subscribe a URL to the partner's events and show its signing secret once."""
    staff_id = _admin_id()
    typed = {"url": request.form.get("url", ""), "events": request.form.getlist("events")}
    try:
        form = load_form(
            _subscription_form, {"url": typed["url"], "events": request.form.getlist("events")}
        )
        _sub, secret = subscribe_as(
            db(), services().settings, staff_id, partner_id, form["url"], form["events"]
        )
    except DomainError as exc:
        if exc.status == 404:
            raise
        db().rollback()
        return _detail_page(partner_id, exc.status, errors=exc.fields, typed=typed)
    return _detail_page(partner_id, 201, new_secret=secret)


@bp.route("/partners/<int:partner_id>/webhooks/<int:subscription_id>/disable", methods=["POST"])
@login_required
def partner_unsubscribe(partner_id: int, subscription_id: int):
    """Stop a subscription; its pending deliveries fail instead of going out."""
    unsubscribe_as(db(), _admin_id(), partner_id, subscription_id)
    return redirect(url_for("admin.partner", partner_id=partner_id), code=303)
