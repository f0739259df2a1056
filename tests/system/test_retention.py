"""Retention on the running system (QUALITY 38; issue 9 item 8): `tipline retention run` with
the clock moved past the period, over everything the suite's other tests created.

Closed tips go with their photos, files, events and messages; open tips stay however old;
files and rows agree afterwards; the ledger keeps every amount and balances equal its sums.
This test deletes what earlier tests left closed: the summary counts what it removed.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid

import pytest
from sqlalchemy import text

from tests.system import tally
from tests.system.harness import (
    get,
    noise_jpeg,
    post_tip,
    record_totals,
    reporter_token,
    request,
    staff_token,
)

LEDGER = "SELECT reporter_id, sum(points), count(*) FROM point_entries GROUP BY reporter_id"
MISMATCHES = """
    SELECT count(*) FROM point_balances b
    LEFT JOIN (SELECT reporter_id, sum(points) AS total FROM point_entries GROUP BY reporter_id) e
      ON e.reporter_id = b.reporter_id
    WHERE b.balance <> coalesce(e.total, 0)
"""


def _rows(system_env, sql: str) -> set[tuple]:
    with system_env._engine.connect() as conn:
        return {tuple(r) for r in conn.execute(text(sql))}


def _counts(output: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", output)}


@pytest.fixture(scope="module")
def staff(system_env, web_server):
    """Headers of a staff admin, and a reporter token (a volunteer who can earn points)."""
    token = staff_token(system_env, "retention-admin")
    return {"Authorization": f"Bearer {token}"}, reporter_token(system_env, web_server.url())


def _act(web_server, headers: dict, ref: str, **body) -> None:
    status, answer, _ = request(
        "POST",
        web_server.url(f"/api/v1/staff/tips/{ref}/actions"),
        body=json.dumps(body).encode(),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert status == 200, answer


def test_retention_run_with_the_clock_moved_past_the_period(system_env, web_server, staff):
    headers, reporter = staff
    shared = noise_jpeg()
    refs = {}
    for name, photos in (("confirmed", [shared]), ("rejected", [noise_jpeg()]), ("open", [shared])):
        status, body, _ = post_tip(
            web_server.url(),
            fields={"category": "theft", "description": f"保留期测试 {name}"},
            photos=photos,
            key=str(uuid.uuid4()),
            token=reporter,
        )
        assert status == 201, body
        refs[name] = body["ref"]
    _act(web_server, headers, refs["confirmed"], action="acknowledge")
    _act(web_server, headers, refs["confirmed"], action="resolve", outcome="confirmed")
    _act(web_server, headers, refs["rejected"], action="reject", outcome="unfounded")

    closed = system_env.scalar("SELECT count(*) FROM tips WHERE NOT is_open")
    open_before = _rows(system_env, "SELECT ref FROM tips WHERE is_open")
    ledger_before = _rows(system_env, LEDGER)
    assert closed >= 2 and (refs["open"],) in open_before
    assert any(total > 0 for _, total, _ in ledger_before)  # the confirmed tip earned points
    counts_before = system_env.counts()
    record_totals(system_env)  # the suite's totals, before retention removes old tips

    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=731)).isoformat()
    dry = _counts(system_env.run_cli("retention", "run", "--dry-run", "--now", later).stdout)
    assert dry["tips"] == closed
    assert system_env.counts() == counts_before  # a dry run changes nothing

    done = _counts(system_env.run_cli("retention", "run", "--now", later).stdout)
    assert done["tips"] == closed and done["photos"] == dry["photos"]
    tally.add("tips removed by retention", done["tips"])
    tally.add("outbox rows removed by retention", done["outbox"])

    # Closed tips went, with everything that pointed at them; open ones all stayed.
    assert system_env.scalar("SELECT count(*) FROM tips WHERE NOT is_open") == 0
    assert _rows(system_env, "SELECT ref FROM tips WHERE is_open") == open_before
    assert system_env.scalar("SELECT count(*) FROM outbox WHERE status IN ('sent', 'failed')") == 0
    assert system_env.scalar("SELECT count(*) FROM bot_drafts") == 0
    assert system_env.scalar("SELECT count(*) FROM bot_inbox WHERE status = 'done'") == 0
    # Files and rows agree: no file without its row, no row without its file.
    assert system_env.files_and_rows_agree() == (set(), set())
    # The ledger keeps every amount and entry; cached balances still equal its sums.
    assert _rows(system_env, LEDGER) == ledger_before
    assert system_env.scalar(MISMATCHES) == 0
    refs_kept = system_env.scalar(
        "SELECT count(*) FROM point_entries WHERE tip_ref = :r", r=refs["confirmed"]
    )
    assert refs_kept >= 1

    # Through the API: the deleted tip is gone for staff; the open one and its photo remain.
    assert get(web_server.url(f"/api/v1/staff/tips/{refs['confirmed']}"), headers=headers)[0] == 404
    status, tip, _ = get(web_server.url(f"/api/v1/staff/tips/{refs['open']}"), headers=headers)
    assert status == 200 and len(tip["photos"]) == 1
    status, _, head = request("GET", web_server.url(tip["photos"][0]["url"]), headers=headers)
    assert status == 200 and head["content-type"] == "image/jpeg"

    again = _counts(system_env.run_cli("retention", "run", "--now", later).stdout)
    assert again["tips"] == again["photos"] == again["files"] == 0  # nothing left to do
