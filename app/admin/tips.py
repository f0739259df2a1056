"""The tip page and the forms on it: actions, internal notes, messages to the reporter."""

from __future__ import annotations

from collections.abc import Callable

from flask import redirect, render_template, request, url_for
from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate

from app.admin import bp
from app.admin.auth import CSRF_FIELD, current_viewer, login_required, request_locale
from app.admin.queue import clock_line
from app.db import utcnow
from app.errors import DomainError, NotFound
from app.reports.models import OUTCOMES
from app.reports.templates import list_templates
from app.reports.triage import describe_reason
from app.reports.workflow import ACTIONS, MESSAGE_MAX, NOTE_MAX, InvalidAction
from app.security_headers import map_tiles
from app.staff.actions import (
    act_on_tip,
    merge_into_tip,
    message_tip_reporter,
    note_on_tip,
    split_off_tip,
)
from app.staff.tip_view import tip_page
from app.webapp import db, services

# Messages shown after a successful post (?done=...), a closed list so nothing is echoed.
_DONE = frozenset({*ACTIONS, "note", "message", "merge", "split"})


class _Form(Schema):
    """A posted form: unknown fields are refused (no mass assignment), blanks are absent."""

    class Meta:
        unknown = RAISE

    @pre_load
    def drop_blank_and_token(self, data, **_kwargs):
        return {k: v for k, v in data.items() if k != CSRF_FIELD and v != ""}


class ActionForm(_Form):
    """One workflow action; which extra fields it needs is the workflow's to say."""

    action = fields.String(required=True, validate=validate.OneOf(ACTIONS))
    assignee = fields.String(validate=validate.Length(max=80))
    duplicate_of = fields.String(validate=validate.Length(max=20))
    outcome = fields.String(validate=validate.OneOf(OUTCOMES))
    note = fields.String(validate=validate.Length(max=NOTE_MAX))


class OtherTipForm(_Form):
    """A merge or split names the other tip (a split without one splits this tip)."""

    other = fields.String(validate=validate.Length(max=20))


class NoteForm(_Form):
    """An internal note."""

    text = fields.String(required=True, validate=validate.Length(min=1, max=NOTE_MAX))


class MessageForm(_Form):
    """A message to the reporter: free text, a response template, or both."""

    text = fields.String(validate=validate.Length(max=MESSAGE_MAX))
    template = fields.String(validate=validate.Length(max=40))


def load_form(schema: Schema) -> dict:
    """Load a posted form, turning marshmallow errors into a 422 that changes nothing."""
    try:
        return schema.load(request.form.to_dict())
    except ValidationError as exc:
        raise DomainError(
            "the form has fields that are not valid",
            code="validation_error",
            fields=exc.messages_dict,
        ) from None


def _render(ref: str, *, error: DomainError | None = None, status: int = 200):
    session = db()
    locale = request_locale()
    tile_url, tile_datum = map_tiles(services().settings)
    page = tip_page(session, current_viewer(), ref, tile_datum=tile_datum)
    done = request.args.get("done")
    return render_template(
        "admin/tip.html",
        page=page,
        tip=page.tip,
        clock=clock_line(page.tip, utcnow(), locale),
        reasons=[describe_reason(r, locale) for r in page.tip.priority_reasons or []],
        outcomes=OUTCOMES,
        templates=list_templates(session, locale) if page.reporter else [],
        tile_url=tile_url or "",
        done=done if done in _DONE else None,
        error=error,
    ), status


def _refused(ref: str, exc: DomainError):
    """Show the tip again with the refusal; the transaction is rolled back (status >= 400)."""
    db().rollback()
    return _render(ref, error=exc, status=exc.status)


def _post(ref: str, done: str, call: Callable[[], object]):
    """Run a form's service call: a refusal shows the page again, success redirects to it."""
    try:
        call()
    except NotFound:
        raise
    except DomainError as exc:
        return _refused(ref, exc)
    return redirect(url_for("admin.tip", ref=ref, done=done), code=303)


@bp.route("/tips/<ref>", methods=["GET"])
@login_required
def tip(ref: str):
    """Show one tip with everything needed to act on it."""
    return _render(ref)


@bp.route("/tips/<ref>/actions", methods=["POST"])
@login_required
def tip_action(ref: str):
    """Apply one workflow action (acknowledge, assign, start, resolve, reject, duplicate...)."""
    form = load_form(ActionForm())
    return _post(ref, form["action"], lambda: act_on_tip(db(), current_viewer(), ref, **form))


@bp.route("/tips/<ref>/merge", methods=["POST"])
@login_required
def tip_merge(ref: str):
    """Merge a duplicate candidate into this tip (same incident; marked duplicate)."""
    form = load_form(OtherTipForm())
    if not form.get("other"):
        return _refused(ref, InvalidAction("which tip?", fields={"other": ["required"]}))
    return _post(ref, "merge", lambda: merge_into_tip(db(), current_viewer(), ref, form["other"]))


@bp.route("/tips/<ref>/split", methods=["POST"])
@login_required
def tip_split(ref: str):
    """Split this tip, or a candidate, out of the incident it was joined to."""
    form = load_form(OtherTipForm())
    return _post(
        ref, "split", lambda: split_off_tip(db(), current_viewer(), form.get("other") or ref)
    )


@bp.route("/tips/<ref>/notes", methods=["POST"])
@login_required
def tip_note(ref: str):
    """Add an internal note (never shown to the reporter)."""
    form = load_form(NoteForm())
    return _post(ref, "note", lambda: note_on_tip(db(), current_viewer(), ref, form["text"]))


@bp.route("/tips/<ref>/messages", methods=["POST"])
@login_required
def tip_message(ref: str):
    """Send a message to the reporter through their channel."""
    form = load_form(MessageForm())
    return _post(
        ref,
        "message",
        lambda: message_tip_reporter(
            db(), current_viewer(), ref, form.get("text"), template_code=form.get("template")
        ),
    )
