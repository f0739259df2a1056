"""The staff workflow: statuses and outcomes as a state machine, notes, and the message thread.

Allowed transitions (action: from -> to). Anything else is 409 invalid_transition.

    acknowledge     new -> acknowledged
    assign          new | acknowledged | assigned | in_progress -> assigned
                    (assigned -> assigned is a reassignment; in_progress -> assigned a handover)
    start           acknowledged | assigned -> in_progress   (unassigned: the actor takes it)
    resolve         acknowledged | assigned | in_progress -> resolved    needs an outcome
    reject          new | acknowledged | assigned | in_progress -> rejected
                    optional outcome: unfounded | malicious
    mark_duplicate  new | acknowledged | assigned | in_progress -> duplicate
                    needs another existing tip (no cycles)
    reopen          resolved -> in_progress;  rejected | duplicate -> acknowledged
    set_outcome     resolved -> resolved (any outcome);  rejected -> rejected (unfounded |
                    malicious): re-triage of a closed tip

Any step out of "new" stops the response clock. Repeating an action on a tip that
is already where that action leads (same assignee, outcome, original) changes
nothing and is not an error: that is what a double click looks like. The reporter
hears only of changes of the reporter-side status (received / in handling / closed).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import DomainError
from app.outbox.services import queue_message
from app.partners.webhooks import queue_tip_event
from app.people.models import Reporter, StaffUser
from app.reports.errors import TipNotFound
from app.reports.models import OUTCOMES, Tip, TipEvent
from app.reports.reporter_view import reporter_status
from app.reports.templates import render_template
from app.reports.triage import reporter_trust
from app.rewards.services import apply_outcome
from app.staff.scope import viewer_for

_OPEN_WORK = ("acknowledged", "assigned", "in_progress")
TRANSITIONS: dict[str, dict[str, str]] = {
    "acknowledge": {"new": "acknowledged"},
    "assign": {s: "assigned" for s in ("new", *_OPEN_WORK)},
    "start": {"acknowledged": "in_progress", "assigned": "in_progress"},
    "resolve": {s: "resolved" for s in _OPEN_WORK},
    "reject": {s: "rejected" for s in ("new", *_OPEN_WORK)},
    "mark_duplicate": {s: "duplicate" for s in ("new", *_OPEN_WORK)},
    "reopen": {"resolved": "in_progress", "rejected": "acknowledged", "duplicate": "acknowledged"},
    "set_outcome": {"resolved": "resolved", "rejected": "rejected"},
}
ACTIONS = tuple(TRANSITIONS)
CLOSED = frozenset({"resolved", "rejected", "duplicate"})
OUTCOMES_FOR = {"resolved": OUTCOMES, "rejected": ("unfounded", "malicious")}
NOTE_MAX = 10_000
# Telegram caps a message at 4,096 characters; leave room for the "about your tip" line.
MESSAGE_MAX = 3_500
MESSAGE_ACTIONS = frozenset({"message_to_reporter", "message_from_reporter"})
NEUTRAL_TRUST = 0.5  # the column default: a reporter with no closed tip


class InvalidTransition(DomainError):
    """The action does not apply to the tip's current status."""

    code = "invalid_transition"
    status = 409


class InvalidAction(DomainError):
    """The action is missing something it needs, or names something that does not exist."""

    code = "validation_error"
    status = 422


class ReporterUnreachable(InvalidAction):
    """The tip is anonymous: there is no channel to relay a message through."""

    code = "anonymous_tip"


# --- pure rules -------------------------------------------------------------------------


def next_status(action: str, status: str) -> str:
    """Return where the action takes a tip in this status, or raise InvalidTransition."""
    to = TRANSITIONS.get(action, {}).get(status)
    if to is None:
        raise InvalidTransition(
            f"cannot {action} a tip that is {status}",
            fields={"action": [f"not allowed when the tip is {status}"]},
        )
    return to


def allowed_actions(status: str) -> list[str]:
    """Return the actions that apply to a tip in this status (the buttons to show)."""
    return [a for a in ACTIONS if status in TRANSITIONS[a]]


def check_params(
    action: str,
    *,
    assignee_id: int | None = None,
    duplicate_of_id: int | None = None,
    outcome: str | None = None,
    note: str | None = None,
) -> None:
    """Refuse missing, unknown or stray parameters of an action (422 with field errors)."""
    if action not in TRANSITIONS:
        raise InvalidAction("unknown action", fields={"action": [f"one of {', '.join(ACTIONS)}"]})
    fields: dict[str, list[str]] = {}
    if action == "assign" and assignee_id is None:
        fields["assignee"] = ["required to assign"]
    elif action != "assign" and assignee_id is not None:
        fields["assignee"] = ["not used by this action"]
    if action == "mark_duplicate" and duplicate_of_id is None:
        fields["duplicate_of"] = ["required to mark a duplicate"]
    elif action != "mark_duplicate" and duplicate_of_id is not None:
        fields["duplicate_of"] = ["not used by this action"]
    if action in ("resolve", "set_outcome"):
        if outcome not in OUTCOMES:
            fields["outcome"] = [f"required: one of {', '.join(OUTCOMES)}"]
    elif action == "reject":
        if outcome is not None and outcome not in OUTCOMES_FOR["rejected"]:
            fields["outcome"] = [f"one of {', '.join(OUTCOMES_FOR['rejected'])}"]
    elif outcome is not None:
        fields["outcome"] = ["not used by this action"]
    if note is not None and len(note) > NOTE_MAX:
        fields["note"] = [f"at most {NOTE_MAX} characters"]
    if fields:
        raise InvalidAction("the action cannot be applied as given", fields=fields)


def is_repeat(
    tip: Tip,
    action: str,
    *,
    assignee_id: int | None = None,
    duplicate_of_id: int | None = None,
    outcome: str | None = None,
) -> bool:
    """Return whether the tip already is where this action would take it (a double click)."""
    if tip.status not in TRANSITIONS[action].values():
        return False
    if action == "assign":
        return tip.assignee_id == assignee_id
    if action in ("resolve", "set_outcome"):
        return tip.outcome == outcome
    if action == "reject":
        return outcome is None or tip.outcome == outcome
    if action == "mark_duplicate":
        return tip.duplicate_of_id == duplicate_of_id
    return True


# --- helpers on the database ------------------------------------------------------------


def _tip(session: Session, tip_id: int, *, lock: bool = False) -> Tip:
    """Load a tip (locked for update when asked), or raise TipNotFound."""
    query = select(Tip).where(Tip.id == tip_id)
    if lock:
        # populate_existing: a copy already in the session must not hide the locked row.
        query = query.with_for_update().execution_options(populate_existing=True)
    tip = session.scalar(query)
    if tip is None:
        raise TipNotFound("no such tip")
    return tip


def _tell(
    session: Session,
    tip: Tip,
    recipient_kind: str,
    recipient_id: int,
    template: str,
    *,
    dedupe_key: str | None = None,
    **params,
) -> None:
    """Queue a message about a tip: its reference, and only the params the caller names."""
    queue_message(
        session,
        recipient_kind=recipient_kind,
        recipient_id=recipient_id,
        template=template,
        params={"ref": tip.ref, **params},
        tip_id=tip.id,
        dedupe_key=dedupe_key,
    )


def _text(value: str | None, field: str, limit: int) -> str:
    """Return the text unchanged (stored exactly), refusing empty or overlong text."""
    if value is None or not value.strip():
        raise InvalidAction("text is required", fields={field: ["must not be empty"]})
    if len(value) > limit:
        raise InvalidAction("text is too long", fields={field: [f"at most {limit} characters"]})
    return value


def _check_assignee(session: Session, tip: Tip, assignee_id: int) -> None:
    staff = session.get(StaffUser, assignee_id)
    if staff is None or not staff.active:
        raise InvalidAction("no such staff user", fields={"assignee": ["no active staff user"]})
    if not viewer_for(session, staff).can_see(tip.grid_path):
        raise InvalidAction(
            "the assignee cannot see this tip", fields={"assignee": ["tip is outside their grids"]}
        )


def _check_duplicate_of(session: Session, tip: Tip, other_id: int) -> None:
    """Refuse a missing original, the tip itself, or a chain that would lead back to it."""
    other = session.get(Tip, other_id)
    if other is None:
        raise InvalidAction("no such tip", fields={"duplicate_of": ["no such tip"]})
    hops = 0
    while other is not None:
        if other.id == tip.id:
            raise InvalidAction(
                "a tip cannot duplicate itself", fields={"duplicate_of": ["would make a cycle"]}
            )
        hops += 1
        if other.duplicate_of_id is None or hops > 100:
            return
        other = session.get(Tip, other.duplicate_of_id)


def update_trust(session: Session, reporter_id: int) -> float:
    """Store a reporter's trust score, recomputed from the outcomes of their closed tips."""
    # Lock the reporter first: two outcomes of one reporter committed at once must not
    # each count without the other.
    reporter = session.scalar(
        select(Reporter)
        .where(Reporter.id == reporter_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    session.flush()  # the outcome just set must be in the count
    trust = reporter_trust(session.connection(), reporter_id)
    reporter.trust_score = NEUTRAL_TRUST if trust is None else trust
    return reporter.trust_score


# --- the entry points -------------------------------------------------------------------


def _move(tip: Tip, action: str, to_status: str, actor_id: int, params: dict, now) -> None:
    """Set the status and everything that follows from it on the tip row."""
    from_status = tip.status
    tip.status = to_status
    tip.is_open = to_status not in CLOSED
    tip.updated_at = now
    # Whoever moves a tip out of "new" has seen it: the response clock stops.
    tip.next_escalation_at = None
    if tip.acknowledged_at is None:
        tip.acknowledged_at = now
    if to_status in CLOSED and from_status not in CLOSED:
        tip.resolved_at = now
    if action == "assign":
        tip.assignee_id = params["assignee_id"]
    elif action == "start" and tip.assignee_id is None:
        tip.assignee_id = actor_id
    elif action in ("resolve", "reject", "set_outcome"):
        tip.outcome = params["outcome"]
    elif action == "mark_duplicate":
        tip.duplicate_of_id = params["duplicate_of_id"]
        tip.outcome = None
    elif action == "reopen":
        tip.outcome = None
        tip.duplicate_of_id = None
        tip.resolved_at = None


def apply_action(
    session: Session,
    tip_id: int,
    *,
    actor_id: int,
    action: str,
    assignee_id: int | None = None,
    duplicate_of_id: int | None = None,
    outcome: str | None = None,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> Tip:
    """Apply one staff action to a tip under a row lock, with its audit event and notices."""
    check_params(
        action, assignee_id=assignee_id, duplicate_of_id=duplicate_of_id, outcome=outcome, note=note
    )
    now = now or utcnow()
    tip = _tip(session, tip_id, lock=True)
    if is_repeat(
        tip, action, assignee_id=assignee_id, duplicate_of_id=duplicate_of_id, outcome=outcome
    ):
        return tip
    to_status = next_status(action, tip.status)
    if outcome is not None and outcome not in OUTCOMES_FOR[to_status]:
        raise InvalidAction(
            "this outcome does not fit the status",
            fields={"outcome": [f"one of {', '.join(OUTCOMES_FOR[to_status])}"]},
        )
    if action == "assign":
        _check_assignee(session, tip, assignee_id)
    if action == "mark_duplicate":
        _check_duplicate_of(session, tip, duplicate_of_id)

    from_status, old_outcome = tip.status, tip.outcome
    params = {"assignee_id": assignee_id, "duplicate_of_id": duplicate_of_id, "outcome": outcome}
    _move(tip, action, to_status, actor_id, params, now)
    data: dict = {}
    if tip.outcome is not None or old_outcome is not None:
        data["outcome"] = tip.outcome
    if tip.outcome != old_outcome and old_outcome is not None:
        data["previous_outcome"] = old_outcome
    if action in ("assign", "start"):
        data["assignee_id"] = tip.assignee_id
    if action == "mark_duplicate":
        data["duplicate_of_id"] = duplicate_of_id
    session.add(
        TipEvent(
            tip_id=tip.id,
            at=now,
            actor_kind="staff",
            actor_id=actor_id,
            action=action,
            from_status=from_status,
            to_status=to_status,
            note=note or None,
            data=data or None,
        )
    )
    if tip.reporter_id is not None:
        if tip.outcome != old_outcome:
            update_trust(session, tip.reporter_id)
        if tip.outcome != old_outcome or to_status != from_status:
            # Points follow every outcome and closing change (lock order: tip, reporter, balance).
            apply_outcome(session, tip.id, actor_id=actor_id, now=now)
        before, after = reporter_status(from_status), reporter_status(to_status)
        if before != after:
            # Only the reference and the coarse status: no notes, names or outcomes.
            _tell(session, tip, "reporter", tip.reporter_id, "reporter_status", status=after)
    if to_status != from_status:  # partners hear of status changes of their requests
        closes = to_status in CLOSED and from_status not in CLOSED
        queue_tip_event(session, tip.id, "request.closed" if closes else "request.updated", now=now)
    if action == "assign" and assignee_id != actor_id:
        _tell(session, tip, "staff", assignee_id, "staff_assigned", priority=tip.priority)
    session.flush()
    return tip


def add_note(
    session: Session, tip_id: int, *, actor_id: int, text: str, now: dt.datetime | None = None
) -> TipEvent:
    """Add an internal note to a tip's trail; staff only, never sent to the reporter."""
    text = _text(text, "text", NOTE_MAX)
    tip = _tip(session, tip_id)
    event = TipEvent(
        tip_id=tip.id,
        at=now or utcnow(),
        actor_kind="staff",
        actor_id=actor_id,
        action="note",
        note=text,
    )
    session.add(event)
    session.flush()
    return event


def message_reporter(
    session: Session,
    tip_id: int,
    *,
    actor_id: int,
    text: str | None,
    template_code: str | None = None,
    now: dt.datetime | None = None,
) -> TipEvent:
    """Relay a message to the tip's reporter through the outbox (their channel, their locale).

    With `template_code`, the response template comes first, in the reporter's
    language, and `text` (if any) follows it.
    """
    tip = _tip(session, tip_id)
    if tip.reporter_id is None:
        raise ReporterUnreachable(
            "this tip is anonymous: its reporter follows it with the receipt only",
            fields={"text": ["the reporter of an anonymous tip cannot be messaged"]},
        )
    if template_code:
        reporter = session.get(Reporter, tip.reporter_id)
        body = render_template(session, template_code, reporter.locale, ref=tip.ref)
        if text and text.strip():
            body = f"{body}\n\n{text}"
        text = body
    text = _text(text, "text", MESSAGE_MAX)
    event = TipEvent(
        tip_id=tip.id,
        at=now or utcnow(),
        actor_kind="staff",
        actor_id=actor_id,
        action="message_to_reporter",
        data={"text": text, "template": template_code},
    )
    session.add(event)
    session.flush()
    _tell(
        session,
        tip,
        "reporter",
        tip.reporter_id,
        "message_to_reporter",
        dedupe_key=f"msg:{event.id}",
        text=text,
    )
    return event


def record_reporter_reply(
    session: Session,
    tip_id: int,
    *,
    reporter_id: int,
    text: str,
    now: dt.datetime | None = None,
) -> TipEvent:
    """Store a reporter's reply on their own tip and tell the assignee that it came."""
    tip = _tip(session, tip_id)
    if tip.reporter_id != reporter_id:
        raise TipNotFound("no such tip")
    text = _text(text, "text", NOTE_MAX)
    event = TipEvent(
        tip_id=tip.id,
        at=now or utcnow(),
        actor_kind="reporter",
        actor_id=reporter_id,
        action="message_from_reporter",
        data={"text": text},
    )
    session.add(event)
    session.flush()
    if tip.assignee_id is not None:
        _tell(
            session,
            tip,
            "staff",
            tip.assignee_id,
            "staff_reporter_reply",
            dedupe_key=f"reply:{event.id}",
        )
    return event


def _names(session: Session, id_column, name_column, ids: set[int]) -> dict[int, str]:
    """Return {id: name} for the ids, in one query."""
    if not ids:
        return {}
    return {
        i: n for i, n in session.execute(select(id_column, name_column).where(id_column.in_(ids)))
    }


def tip_history(session: Session, tip_id: int) -> list[dict]:
    """Return the tip's audit trail and message thread, oldest first, for staff eyes only."""
    _tip(session, tip_id)
    events = session.scalars(
        select(TipEvent).where(TipEvent.tip_id == tip_id).order_by(TipEvent.at, TipEvent.id)
    ).all()
    staff_ids = {e.actor_id for e in events if e.actor_kind == "staff" and e.actor_id}
    staff_ids |= {e.data["assignee_id"] for e in events if (e.data or {}).get("assignee_id")}
    reporter_ids = {e.actor_id for e in events if e.actor_kind == "reporter" and e.actor_id}
    staff = _names(session, StaffUser.id, StaffUser.username, staff_ids)
    reporters = _names(session, Reporter.id, Reporter.pseudonym, reporter_ids)
    names = {"staff": staff, "reporter": reporters}
    history = []
    for e in events:
        data = dict(e.data or {})
        if data.get("assignee_id"):
            data["assignee"] = staff.get(data["assignee_id"])
        history.append(
            {
                "id": e.id,
                "at": e.at.isoformat(),
                "actor_kind": e.actor_kind,
                "actor": names.get(e.actor_kind, {}).get(e.actor_id),
                "action": e.action,
                "from_status": e.from_status,
                "to_status": e.to_status,
                "note": e.note,
                "text": data.get("text") if e.action in MESSAGE_ACTIONS else e.note,
                "is_message": e.action in MESSAGE_ACTIONS,
                "data": data,
            }
        )
    return history
