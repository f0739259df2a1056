"""Fuzzing the JSON API (issue 9 item 6): schemathesis against the live /api/v1/openapi.json.

Every operation of the document, with valid (positive) and invalid (negative) input,
against the suite's gunicorn on PostgreSQL: no answer may be a 5xx, every answer must
match the schema documented for its status, and its status must be a documented one.
Half the cases that take a tip reference or a photo id are pointed at real ones, so
the success paths (200 bodies, JPEG photos, workflow actions) are checked too.

What it found, and is kept here for: error bodies documented as flask-smorest's
{code: integer, status} instead of the API's {code: string, message, errors}; success
bodies not documented at all; a body that is not JSON answered with a 500 (the error
handler expected field errors, and webargs gives a list); on PostgreSQL, a NUL character
in any text (tip fields, queue filters) and an id beyond the integer columns (photo ids,
assignees, organisations) were 500s.
"""

from __future__ import annotations

import contextlib
import json
import uuid

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.system import tally
from tests.system.harness import noise_jpeg, post_tip, reporter_token, request, staff_token

EXAMPLES = 50  # per operation and mode: 10 operations × 2 modes × 50 ≈ 20 s here
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]


@pytest.fixture(scope="module")
def api(system_env, web_server):
    """Tokens for a staff admin and a reporter, and real tips and photos to aim at."""
    staff = staff_token(system_env, "fuzz-admin")
    reporter = reporter_token(system_env, web_server.url())
    refs = []
    for n in range(2):
        status, tip, _ = post_tip(
            web_server.url(),
            fields={"category": "traffic", "description": f"模糊测试 {n}"},
            photos=[noise_jpeg()],
            key=str(uuid.uuid4()),
            token=reporter,
        )
        assert status == 201, tip
        refs.append(tip["ref"])
    photo_ids = [
        system_env.scalar(
            "SELECT p.id FROM photos p JOIN tips t ON t.id = p.tip_id WHERE t.ref = :r", r=ref
        )
        for ref in refs
    ]
    return {"staff": staff, "reporter": reporter, "refs": refs, "photo_ids": photo_ids}


def _token(operation, api: dict) -> str | None:
    """The token an operation is documented to take (none where anonymous use is allowed)."""
    security = operation.definition.raw.get("security") or []
    if any("staffToken" in s for s in security):
        return api["staff"]
    if any("reporterToken" in s for s in security) and {} not in security:
        return api["reporter"]
    if operation.path == "/api/v1/tips/{ref}":
        return api["reporter"]  # the owner's view; anonymous readers need the receipt
    return None


def _aimed(strategy, api: dict):
    """Half the cases keep their generated path; half name a real tip or photo."""

    def aim(case, ref, photo_id, kind):
        params = dict(case.path_parameters or {})
        if "ref" in params:
            params["ref"] = ref
        if "photo_id" in params:
            params["photo_id"], params["kind"] = photo_id, kind
        case.path_parameters = params
        return case

    real = st.tuples(
        st.sampled_from(api["refs"]),
        st.sampled_from(api["photo_ids"]),
        st.sampled_from(("derivative", "thumbnail")),
    )
    return strategy | st.tuples(strategy, real).map(lambda pair: aim(pair[0], *pair[1]))


def _fuzz(operation, strategy, headers: dict, http: requests.Session, failures: list) -> int:
    """Run one operation's cases; return how many ran, appending each failure's summary."""
    ran = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,  # the same cases on every run: CI does not flake on a new find
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case):
        nonlocal ran
        ran += 1
        try:
            case.call_and_validate(headers=headers, session=http, checks=CHECKS, timeout=30)
        except (Exception, FailureGroup) as exc:  # collect them all: one report at the end
            for failure in getattr(exc, "exceptions", [exc]):
                failures.append(f"{operation.label}: {str(failure).strip()[:800]}")

    # Unsatisfiable: nothing to make invalid (no parameters, no body); positive runs cover it.
    with contextlib.suppress(Unsatisfiable):
        run()
    return ran


def test_every_operation_answers_by_its_schema(api, web_server):
    schema = schemathesis.openapi.from_url(web_server.url("/api/v1/openapi.json"))
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    total = 0
    with requests.Session() as http:
        for operation in operations:
            token = _token(operation, api)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategy = _aimed(operation.as_strategy(generation_mode=mode), api)
                total += _fuzz(operation, strategy, headers, http, failures)
    tally.add("fuzz cases run", total)
    assert total >= len(operations) * EXAMPLES
    assert not failures, "\n\n".join(sorted(set(failures))[:20])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/reporters"),
        ("POST", "/api/v1/tips"),
        ("POST", "/api/v1/staff/tips/T-000000/actions"),
    ],
)
def test_a_body_that_is_not_json_is_a_400(api, web_server, method, path):
    """Found by the fuzzer: a NUL byte as a JSON body was a 500 from the error handler."""
    status, body, _ = request(
        method,
        web_server.url(path),
        body=b"\x00",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {api['staff']}"}
        if "staff" in path
        else {"Content-Type": "application/json"},
    )
    assert status == 400, body
    assert json.loads(body)["code"] == "bad_request"


def test_a_photo_id_beyond_the_database_integer_is_a_404(api, web_server):
    """Found by the fuzzer on PostgreSQL: an id of 2**63 overflowed the integer column."""
    for photo_id in (2**31, 2**63, 10**30):
        status, body, _ = request(
            "GET",
            web_server.url(f"/api/v1/staff/photos/{photo_id}/derivative"),
            headers={"Authorization": f"Bearer {api['staff']}"},
        )
        assert status == 404, (photo_id, body)


def _send(web_server, method: str, path: str, headers: dict, body=None):
    """One JSON request; return (status, decoded body)."""
    status, data, _ = request(
        method,
        web_server.url(path),
        body=None if body is None else json.dumps(body).encode(),
        headers={**headers, "Content-Type": "application/json"},
    )
    return status, json.loads(data)


def test_nul_characters_and_huge_ids_are_refused_not_500s(api, web_server):
    """Found by the fuzzer on PostgreSQL, which cannot store NUL nor ids beyond 32 bits."""
    staff = {"Authorization": f"Bearer {api['staff']}"}
    status, body = _send(
        web_server, "POST", "/api/v1/tips", {}, {"category": "theft", "description": "a\x00b"}
    )
    assert (status, body["errors"]) == (422, {"description": ["must not contain NUL characters"]})
    for query in ("category=a%00b", "grid=a%00", "channel=%00"):
        status, body = _send(web_server, "GET", f"/api/v1/staff/tips?{query}", staff)
        assert (status, body["code"]) == (400, "invalid_value"), query
    ref = api["refs"][0]
    status, body = _send(
        web_server, "POST", f"/api/v1/staff/tips/{ref}/actions", staff,
        {"action": "assign", "assignee": 2**63},
    )  # fmt: skip
    assert (status, list(body["errors"])) == (422, ["assignee"])
    status, body = _send(web_server, "GET", f"/api/v1/staff/leaderboard?org={2**63}", staff)
    assert (status, list(body["errors"])) == (422, ["org"])
