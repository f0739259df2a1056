"""The triage queue page and the small JSON feed its live refresh polls."""

from __future__ import annotations

import datetime as dt

from flask import jsonify, render_template, request, url_for
from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, pre_load, validate

from app.admin import bp
from app.admin.auth import current_viewer, login_required, request_locale
from app.admin.text import duration
from app.db import utcnow
from app.errors import DomainError
from app.i18n import t
from app.reports.categories import list_categories
from app.reports.clock import LOCAL_TZ, clock_status
from app.reports.models import CHANNELS, PRIORITIES, STAFF_STATUSES
from app.staff.queue import (
    NEEDS_LOCATION,
    OPEN_STATUSES,
    QueueFilters,
    latest_visible_id,
    new_open_tips,
    open_counts,
    queue_page,
)
from app.webapp import db

PAGE_SIZE = 50
_blank = validate.Length(max=64)


class QueueArgs(Schema):
    """The queue's filter form (query string); empty fields mean "any"."""

    class Meta:
        unknown = EXCLUDE  # harmless extras in a GET (utm tags, cache busters)

    status = fields.List(fields.String(validate=validate.OneOf(STAFF_STATUSES)), load_default=list)
    priority = fields.String(validate=validate.OneOf(PRIORITIES), load_default=None)
    category = fields.String(validate=_blank, load_default=None)
    grid = fields.String(validate=_blank, load_default=None)
    channel = fields.String(validate=_blank, load_default=None)
    received_from = fields.String(data_key="from", validate=_blank, load_default=None)
    received_to = fields.String(data_key="to", validate=_blank, load_default=None)
    flagged = fields.Boolean(load_default=False)
    mine = fields.Boolean(load_default=False)
    needs_location = fields.Boolean(load_default=False)
    after = fields.String(validate=validate.Length(max=80), load_default=None)

    @pre_load
    def drop_empty(self, data, **_kwargs):
        return {k: v for k, v in data.items() if v not in ("", [], None)}

    @post_load
    def to_filters(self, data, **_kwargs):
        return {
            "filters": QueueFilters(
                statuses=tuple(data["status"]),
                priority=data["priority"],
                category=data["category"],
                grid=NEEDS_LOCATION if data["needs_location"] else data["grid"],
                channel=data["channel"],
                received_from=_local(data["received_from"], "from"),
                received_to=_local(data["received_to"], "to", end=True),
                flagged=data["flagged"],
                assigned_to_me=data["mine"],
            ),
            "after": data["after"],
        }


def _local(value: str | None, name: str, *, end: bool = False) -> dt.datetime | None:
    """Read a date or datetime-local typed in the city's time; a bare end date includes its day."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError("use YYYY-MM-DD or YYYY-MM-DDTHH:MM", name) from None
    if end and len(value) == 10:
        parsed += dt.timedelta(days=1)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=LOCAL_TZ)
    return parsed.astimezone(dt.UTC)


_queue_args = QueueArgs()


def _parse_args() -> dict:
    raw = {
        k: request.args.getlist(k) if k == "status" else request.args.get(k) for k in request.args
    }
    try:
        return _queue_args.load(raw)
    except ValidationError as exc:
        raise DomainError(
            "some filters are not valid",
            code="validation_error",
            fields=exc.messages_dict,
        ) from None


def clock_line(tip, now: dt.datetime, locale: str) -> dict:
    """Return what the queue says about a tip's clock: text and a css state."""
    clock = clock_status(tip, now)
    if clock["ack_met"] is None and clock["ack_seconds_left"] is not None:
        left = clock["ack_seconds_left"]
        key = "admin.clock.ack_overdue" if left < 0 else "admin.clock.ack_left"
        state = "overdue" if left < 0 else ("soon" if left < 300 else "ok")
        return {"text": t(key, locale, time=duration(left, locale)), "state": state}
    left = clock["resolve_seconds_left"]
    if left is None:
        return {"text": "", "state": "ok"}
    key = "admin.clock.resolve_overdue" if left < 0 else "admin.clock.resolve_left"
    return {
        "text": t(key, locale, time=duration(left, locale)),
        "state": "overdue" if left < 0 else "ok",
    }


@bp.route("/", methods=["GET"])
@login_required
def queue():
    """Show the triage queue: scoped, filtered, most urgent first, one page at a time."""
    args = _parse_args()
    session = db()
    viewer = current_viewer()
    page = queue_page(
        session, viewer, filters=args["filters"], after=args["after"], limit=PAGE_SIZE
    )
    now = utcnow()
    locale = request_locale()
    query = request.args.to_dict(flat=False)
    query.pop("after", None)
    first_url = url_for("admin.queue", **query) if args["after"] else None
    next_url = url_for("admin.queue", **query, after=page.next_cursor) if page.next_cursor else None
    return render_template(
        "admin/queue.html",
        page=page,
        clocks={r.tip.id: clock_line(r.tip, now, locale) for r in page.rows},
        counts=open_counts(session, viewer),
        categories=list_categories(session),
        statuses=STAFF_STATUSES,
        open_statuses=OPEN_STATUSES,
        priorities=PRIORITIES,
        args=request.args,
        channels=CHANNELS,
        next_url=next_url,
        first_url=first_url,
        since=latest_visible_id(session, viewer),
    )


@bp.route("/queue/updates.json", methods=["GET"])
@login_required
def queue_updates():
    """Say which open tips arrived after `since` (the page's newest), urgent ones by name."""
    try:
        since = max(0, int(request.args.get("since", "0")))
    except ValueError:
        since = 0
    session = db()
    viewer = current_viewer()
    rows = new_open_tips(session, viewer, after_id=since, limit=50)
    locale = request_locale()
    return jsonify(
        new=len(rows),
        urgent=[
            {
                "ref": r.tip.ref,
                "url": url_for("admin.tip", ref=r.tip.ref),
                "category": r.category_en if locale == "en" else r.category_zh,
                "grid": r.grid_name,
            }
            for r in rows
            if r.tip.priority == "urgent"
        ][:10],
    )
