"""Form parsing shared by the admin pages: one error shape for every refused field."""

from __future__ import annotations

from marshmallow import Schema, ValidationError

from app.errors import DomainError


def load_form(schema: Schema, data) -> dict:
    """Load a form or query string, or raise a 422 with the field errors."""
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise DomainError(
            "some fields are not valid", code="validation_error", fields=exc.messages_dict
        ) from None
