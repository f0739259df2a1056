"""What a reporter may see of their tip: a coarse status, never operational detail."""

from __future__ import annotations

from app.reports.models import Tip

_REPORTER_STATUS = {
    "new": "received",
    "acknowledged": "in_handling",
    "assigned": "in_handling",
    "in_progress": "in_handling",
    "resolved": "closed",
    "rejected": "closed",
    "duplicate": "closed",
}


def reporter_status(staff_status: str) -> str:
    """Map a staff-side status to the reporter-side one (received / in_handling / closed)."""
    return _REPORTER_STATUS[staff_status]


def tip_for_reporter(tip: Tip) -> dict:
    """Render a tip for its reporter: reference, category, times and coarse status."""
    return {
        "ref": tip.ref,
        "status": reporter_status(tip.status),
        "category": tip.category.code,
        "received_at": tip.received_at.isoformat(),
        "photos": len(tip.photos),
        "needs_location": tip.grid_id is None,
    }
