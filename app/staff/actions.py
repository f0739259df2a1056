"""Staff actions on a tip, as every staff surface calls them: scope first, then the workflow.

The admin pages and the staff API both call these, so a tip out of scope is
404 before anything is looked at, and an assignee or an original that the
actor may not see is refused like one that does not exist.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.people.models import StaffUser
from app.reports.duplicates import duplicate_candidates, merge_tips, split_tip
from app.reports.errors import TipNotFound
from app.reports.models import Tip, TipEvent
from app.reports.workflow import (
    TRANSITIONS,
    InvalidAction,
    add_note,
    apply_action,
    message_reporter,
    tip_history,
)
from app.staff.scope import Viewer, staff_who_can_see, visible_condition, visible_tip


def _assignee_id(session: Session, tip: Tip, assignee: int | str) -> int:
    """Resolve an assignee (id or username) among the staff who may see the tip."""
    candidates = staff_who_can_see(session, tip)
    for staff in candidates:
        if assignee in (staff.id, staff.username) or str(assignee) == str(staff.id):
            return staff.id
    raise InvalidAction(
        "no such staff user for this tip",
        fields={"assignee": ["not a staff user who can see this tip"]},
    )


def _original_id(session: Session, viewer: Viewer, tip: Tip, ref: str) -> int:
    """Resolve the tip a duplicate points to; one out of scope is as unknown as a missing one."""
    try:
        original = visible_tip(session, viewer, ref)
    except TipNotFound:
        raise InvalidAction("no such tip", fields={"duplicate_of": ["no such tip"]}) from None
    return original.id


def act_on_tip(
    session: Session,
    viewer: Viewer,
    ref: str,
    *,
    action: str,
    assignee: int | str | None = None,
    duplicate_of: str | None = None,
    outcome: str | None = None,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> Tip:
    """Apply a workflow action to a tip the viewer may see (404 otherwise)."""
    tip = visible_tip(session, viewer, ref)
    return apply_action(
        session,
        tip.id,
        actor_id=viewer.staff_id,
        action=action,
        assignee_id=None if assignee is None else _assignee_id(session, tip, assignee),
        duplicate_of_id=None
        if duplicate_of is None
        else _original_id(session, viewer, tip, duplicate_of),
        outcome=outcome,
        note=note,
        now=now,
    )


def merge_into_tip(
    session: Session, viewer: Viewer, ref: str, other_ref: str, *, now: dt.datetime | None = None
) -> Tip:
    """Merge another tip into this one: same incident, and marked its duplicate while open."""
    into = visible_tip(session, viewer, ref)
    other = visible_tip(session, viewer, other_ref)
    merge_tips(session, other.id, into.id, actor_id=viewer.staff_id)
    if other.status in TRANSITIONS["mark_duplicate"]:
        apply_action(
            session,
            other.id,
            actor_id=viewer.staff_id,
            action="mark_duplicate",
            duplicate_of_id=into.id,
            now=now,
        )
    return into


def split_off_tip(
    session: Session, viewer: Viewer, ref: str, *, now: dt.datetime | None = None
) -> Tip:
    """Take a tip out of its incident; a tip closed as a duplicate is reopened with it."""
    tip = visible_tip(session, viewer, ref)
    split_tip(session, tip.id, actor_id=viewer.staff_id)
    if tip.status == "duplicate":
        apply_action(session, tip.id, actor_id=viewer.staff_id, action="reopen", now=now)
    return tip


def related_tips(session: Session, viewer: Viewer, tip: Tip) -> list[dict]:
    """Return the duplicate candidates of a tip, leaving out those the viewer may not see."""
    return duplicate_candidates(session, tip.id, visible=visible_condition(viewer))


def note_on_tip(
    session: Session, viewer: Viewer, ref: str, text: str, *, now: dt.datetime | None = None
) -> TipEvent:
    """Add an internal note to a tip the viewer may see."""
    tip = visible_tip(session, viewer, ref)
    return add_note(session, tip.id, actor_id=viewer.staff_id, text=text, now=now)


def message_tip_reporter(
    session: Session,
    viewer: Viewer,
    ref: str,
    text: str | None,
    *,
    template_code: str | None = None,
    now: dt.datetime | None = None,
) -> TipEvent:
    """Relay a message to the reporter of a tip the viewer may see."""
    tip = visible_tip(session, viewer, ref)
    return message_reporter(
        session, tip.id, actor_id=viewer.staff_id, text=text, template_code=template_code, now=now
    )


def history_of_tip(session: Session, viewer: Viewer, ref: str) -> list[dict]:
    """Return the audit trail and message thread of a tip the viewer may see."""
    tip = visible_tip(session, viewer, ref)
    return tip_history(session, tip.id)


def assignable_staff(session: Session, tip: Tip) -> list[StaffUser]:
    """Return who a tip can be assigned to: active staff whose scope covers it."""
    return staff_who_can_see(session, tip)


def staff_names(session: Session, ids: set[int]) -> dict[int, str]:
    """Return usernames by id (for showing assignees)."""
    if not ids:
        return {}
    return dict(
        session.execute(select(StaffUser.id, StaffUser.username).where(StaffUser.id.in_(ids))).all()
    )
