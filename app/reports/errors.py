"""Domain errors of the intake path; adapters turn them into 4xx/503 or bot replies."""

from __future__ import annotations

from app.errors import DomainError


class InvalidTip(DomainError):
    """The fields do not make a tip; `fields` says which and why."""

    code = "validation_error"
    status = 422


class BadIdempotencyKey(DomainError):
    """The Idempotency-Key header is not a UUID."""

    code = "bad_idempotency_key"
    status = 400


class IdempotencyKeyReused(DomainError):
    """The key was already used for a different request."""

    code = "idempotency_key_reused"
    status = 422


class TooManyPhotos(DomainError):
    """More photos than one tip may carry."""

    code = "too_many_photos"
    status = 413


class TipNotFound(DomainError):
    """No such tip for this caller (also when it exists but is someone else's)."""

    code = "not_found"
    status = 404


class RateLimited(DomainError):
    """Too many tips from one reporter or client; `retry_after` says when to come back."""

    code = "rate_limited"
    status = 429


class ReporterBlocked(DomainError):
    """A banned or suspended reporter; the message does not say which or why."""

    code = "reporter_banned"
    status = 403


class TipsNotMergeable(DomainError):
    """A merge or split that makes no sense (a tip into itself, a cycle, nothing to split)."""

    code = "not_mergeable"
    status = 409
