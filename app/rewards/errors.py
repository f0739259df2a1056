"""Domain errors of the points ledger and the awards."""

from __future__ import annotations

from app.errors import Conflict, DomainError, NotFound
from app.rewards.rules import InvalidPeriod

__all__ = [
    "InvalidPeriod",
    "InvalidRuleChange",
    "RequestNotFound",
    "RequestSettled",
    "RunNotFound",
    "RunRaced",
    "SecondApproverRequired",
]


class RequestNotFound(NotFound):
    """No such pending award (or not one this viewer may see)."""


class RequestSettled(Conflict):
    """The request was decided already, or its rule stopped applying."""

    code = "request_settled"


class SecondApproverRequired(DomainError):
    """The one who asked for the award cannot also approve it."""

    code = "second_approver_required"
    status = 409


class RunNotFound(NotFound):
    """No such award run."""


class RunRaced(Conflict):
    """Another run of the same period was stored at the same moment; run again."""

    code = "run_raced"


class InvalidRuleChange(DomainError):
    """A rule or setting value out of range, or an unknown rule."""

    code = "invalid_rule_change"
    status = 422
