"""The query of GET requests: the spec's filters, checked, with bounded paging."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from app.errors import DomainError
from app.i18n import t
from app.identifiers import normalise_ref

MAX_SPAN = dt.timedelta(days=90)
MAX_PAGE_SIZE = 1000
MAX_IDS = 100
STATUSES = ("open", "closed")


class BadQuery(DomainError):
    """A filter the spec does not allow (bad date, span over 90 days, unknown status)."""

    code = "bad_query"
    status = 400


@dataclass(frozen=True)
class RequestFilter:
    """What GET requests asks for; `refs` (service_request_id) overrides everything else."""

    refs: tuple[str, ...] = ()
    service_codes: tuple[str, ...] = ()
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    statuses: tuple[str, ...] = ()
    page: int = 1
    page_size: int = MAX_PAGE_SIZE


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def parse_datetime(value: str, field: str, locale: str) -> dt.datetime:
    """Parse a w3c datetime with its time zone (the spec requires one)."""
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise BadQuery(t("open311.error.dates", locale), fields={field: "ISO 8601 with time zone"})
    return parsed.astimezone(dt.UTC)


def _positive(args: Mapping, name: str, default: int, locale: str, limit: int | None) -> int:
    raw = args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1 or (limit is not None and value > limit) or value > 10**6:
        raise BadQuery(t("open311.error.page", locale), fields={name: "out of range"})
    return value


def parse_filter(args: Mapping, locale: str, now: dt.datetime) -> RequestFilter:
    """Check the query; dates default to the last 90 days and may span at most 90."""
    page = _positive(args, "page", 1, locale, None)
    page_size = _positive(args, "page_size", MAX_PAGE_SIZE, locale, MAX_PAGE_SIZE)
    ids = _csv(args.get("service_request_id"))
    if ids:
        if len(ids) > MAX_IDS:
            raise BadQuery(
                f"at most {MAX_IDS} service_request_id values",
                fields={"service_request_id": "too many"},
            )
        # An id that is no reference at all cannot be ours: it is simply not found.
        refs = tuple(dict.fromkeys(r for r in map(normalise_ref, ids) if r))
        return RequestFilter(refs=refs or ("-",), page=page, page_size=page_size)
    start = (
        parse_datetime(args["start_date"], "start_date", locale) if args.get("start_date") else None
    )
    end = parse_datetime(args["end_date"], "end_date", locale) if args.get("end_date") else None
    if start is None and end is None:
        end = now
        start = now - MAX_SPAN
    elif start is None:
        start = end - MAX_SPAN
    elif end is None:
        end = start + MAX_SPAN
    if start > end or end - start > MAX_SPAN:
        raise BadQuery(t("open311.error.dates", locale), fields={"end_date": "at most 90 days"})
    statuses = tuple(dict.fromkeys(_csv(args.get("status"))))
    if any(s not in STATUSES for s in statuses):
        raise BadQuery(t("open311.error.status", locale), fields={"status": "open or closed"})
    return RequestFilter(
        service_codes=tuple(dict.fromkeys(_csv(args.get("service_code")))),
        start=start,
        end=end,
        statuses=statuses,
        page=page,
        page_size=page_size,
    )
