"""Dashboard (tips over time, response times against targets) and the CSV export."""

from __future__ import annotations

from flask import Response, render_template, request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate

from app.admin import bp
from app.admin.auth import current_viewer, login_required, request_locale
from app.admin.queue import _parse_args as parse_queue_args
from app.db import utcnow
from app.errors import DomainError
from app.i18n import LOCALES
from app.reports.categories import list_categories
from app.reports.clock import LOCAL_TZ
from app.reports.models import CHANNELS, PRIORITIES, STAFF_STATUSES
from app.staff.caller_intake import CALLER_CHANNELS
from app.staff.queue import QueueFilters
from app.staff.stats import GROUPINGS, MAX_DAYS, export_csv, last_days, response_times
from app.staff.stats import tips_over_time as count_tips
from app.webapp import db

DEFAULT_DAYS = 7
MAX_SERIES = 30


class DashboardArgs(Schema):
    """The dashboard's period (local dates), grouping and narrowing."""

    class Meta:
        unknown = EXCLUDE

    first = fields.Date(data_key="from", load_default=None)
    last = fields.Date(data_key="to", load_default=None)
    by = fields.String(load_default="category", validate=validate.OneOf(GROUPINGS))
    category = fields.String(load_default=None, validate=validate.Length(max=30))
    grid = fields.String(load_default=None, validate=validate.Length(max=64))

    @pre_load
    def drop_empty(self, data, **_kwargs):
        return {k: v for k, v in data.items() if v != ""}


_args = DashboardArgs()


@bp.route("/dashboard", methods=["GET"])
@login_required
def dashboard():
    """Show tips per day by category, grid or town, and how fast they were acknowledged."""
    try:
        args = _args.load(request.args.to_dict())
    except ValidationError as exc:
        raise DomainError(
            "some filters are not valid", code="validation_error", fields=exc.messages_dict
        ) from None
    first, last = last_days(DEFAULT_DAYS)
    first, last = args["first"] or first, args["last"] or last
    session = db()
    viewer = current_viewer()
    filters = QueueFilters(category=args["category"], grid=args["grid"])
    locale = request_locale()
    series = count_tips(
        session, viewer, first=first, last=last, by=args["by"], filters=filters, locale=locale
    )
    responses = response_times(session, viewer, first=first, last=last, filters=filters)
    return render_template(
        "admin/dashboard.html",
        series=series,
        shown=series.series[:MAX_SERIES],
        hidden=len(series.series) - MAX_SERIES,
        top=max((s.total for s in series.series), default=0),
        responses=responses,
        first=first,
        last=last,
        args=args,
        groupings=GROUPINGS,
        categories=list_categories(session),
        statuses=STAFF_STATUSES,
        priorities=PRIORITIES,
        channels=(*CHANNELS, *CALLER_CHANNELS),
        max_days=MAX_DAYS,
    )


@bp.route("/export.csv", methods=["GET"])
@login_required
def export():
    """Download the visible tips matching the queue's filters as CSV (Chinese headings)."""
    filters = parse_queue_args()["filters"]
    lang = request.args.get("lang")
    locale = lang if lang in LOCALES else request_locale()
    data, _count = export_csv(db(), current_viewer(), filters, locale=locale)
    stamp = utcnow().astimezone(LOCAL_TZ).strftime("%Y%m%d-%H%M")
    return Response(
        data,
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="tipline-tips-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )
