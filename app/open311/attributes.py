"""Each category's extra questions, served as Open311 service-definition attributes.

The questions are about the incident and the place, never about people: the
product keeps no dossiers (ARCHITECTURE.md). Texts come from the catalogue
(app/i18n/open311.json: `open311.attr.<code>` and `open311.value.<key>`).
Answers are validated here and kept in PartnerRequest.attributes.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from app.errors import DomainError
from app.i18n import t

DATATYPES = ("string", "number", "datetime", "text", "singlevaluelist", "multivaluelist")
MAX_STRING = 500
MAX_TEXT = 4000
YES_NO = ("yes", "no", "unknown")


@dataclass(frozen=True)
class Question:
    """One attribute of a service definition."""

    code: str
    datatype: str
    required: bool = False
    values: tuple[str, ...] = ()


QUESTIONS: dict[str, tuple[Question, ...]] = {
    "theft": (
        Question(
            "stolen_item",
            "singlevaluelist",
            True,
            ("bicycle", "ebike", "vehicle", "phone", "wallet", "other"),
        ),
        Question("loss_estimate", "number"),
    ),
    "robbery_violence": (
        Question("injured", "singlevaluelist", True, YES_NO),
        Question("weapon_seen", "singlevaluelist", False, ("none", "knife", "firearm", "other")),
    ),
    "suspicious": (Question("ongoing", "singlevaluelist", False, YES_NO),),
    "traffic": (
        Question(
            "hazard_kind",
            "singlevaluelist",
            True,
            ("accident", "obstruction", "signal_fault", "road_damage", "other"),
        ),
        Question("lanes_blocked", "number"),
    ),
    "fire_hazard": (
        Question(
            "fire_signs",
            "multivaluelist",
            True,
            ("blocked_exit", "flammables", "wiring", "open_flame", "smoke", "other"),
        ),
        Question("people_inside", "singlevaluelist", False, YES_NO),
    ),
    "fraud": (
        Question("fraud_channel", "singlevaluelist", False, ("phone", "online", "in_person")),
        Question("amount", "number"),
    ),
    "drugs_gambling": (
        Question("seen_at", "datetime"),
        Question(
            "place_kind",
            "singlevaluelist",
            False,
            ("residence", "shop", "entertainment", "outdoor", "other"),
        ),
    ),
    "dispute": (Question("escalating", "singlevaluelist", False, YES_NO),),
    "missing_person": (
        Question("last_seen_at", "datetime", True),
        Question("last_seen_place", "string"),
    ),
    "public_facility": (
        Question(
            "facility_kind",
            "singlevaluelist",
            True,
            ("streetlight", "manhole_cover", "cctv", "guardrail", "other"),
        ),
        Question("facility_detail", "text"),
    ),
    "other": (),
}


class InvalidAttributes(DomainError):
    """Answers that do not fit the service definition; `fields` names each attribute."""

    code = "invalid_attribute"
    status = 400


def questions_for(service_code: str) -> tuple[Question, ...]:
    """Return the questions of a category (none for an unknown one)."""
    return QUESTIONS.get(service_code, ())


def describe(service_code: str, locale: str) -> list[dict]:
    """Return the spec's `attributes` list of a service definition, in the locale."""
    return [
        {
            "variable": True,
            "code": q.code,
            "datatype": q.datatype,
            "required": q.required,
            "datatype_description": t(f"open311.datatype.{q.datatype}", locale),
            "order": order,
            "description": t(f"open311.attr.{q.code}", locale),
            "values": [{"key": v, "name": t(f"open311.value.{v}", locale)} for v in q.values],
        }
        for order, q in enumerate(questions_for(service_code), start=1)
    ]


def _parse_datetime(value: str) -> str:
    """Return an aware ISO 8601 datetime in canonical form, or raise ValueError."""
    parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("no timezone")
    return parsed.isoformat()


def _check(q: Question, values: list[str]) -> str | float | list[str]:
    """Validate one answer against its question; raise ValueError with a reason."""
    if q.datatype == "multivaluelist":
        unknown = [v for v in values if v not in q.values]
        if unknown:
            raise ValueError(f"not among the listed keys: {', '.join(q.values)}")
        return list(dict.fromkeys(values))
    if len(values) > 1:
        raise ValueError("one value expected")
    value = values[0]
    if q.datatype == "singlevaluelist":
        if value not in q.values:
            raise ValueError(f"one of: {', '.join(q.values)}")
        return value
    if q.datatype == "number":
        number = float(value)
        if not math.isfinite(number) or abs(number) > 1e12:
            raise ValueError("a finite number expected")
        return number
    if q.datatype == "datetime":
        return _parse_datetime(value)
    limit = MAX_TEXT if q.datatype == "text" else MAX_STRING
    if len(value) > limit:
        raise ValueError(f"at most {limit} characters")
    return value


def validate_answers(service_code: str, answers: dict[str, list[str]]) -> dict:
    """Check answers (attribute code → values sent) and return them typed, or raise."""
    questions = {q.code: q for q in questions_for(service_code)}
    errors: dict[str, str] = {}
    kept: dict = {}
    for code in answers:
        if code not in questions:
            errors[f"attribute[{code}]"] = "not an attribute of this service"
    for code, q in questions.items():
        values = [v for v in answers.get(code, []) if v.strip()]
        if not values:
            if q.required:
                errors[f"attribute[{code}]"] = "required"
            continue
        try:
            kept[code] = _check(q, values)
        except ValueError as exc:
            # Parser messages echo the input; the question's own reasons do not.
            parsed = q.datatype in ("number", "datetime")
            errors[f"attribute[{code}]"] = f"not a valid {q.datatype}" if parsed else str(exc)
    if errors:
        raise InvalidAttributes("some attributes are not valid", fields=errors)
    return kept
