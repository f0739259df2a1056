"""Award runs: freeze a period's ranking with the evidence behind each nominee, hash it, diff it.

A run never changes: its snapshot is stored with the SHA-256 of its canonical
JSON (sorted keys, no spaces, UTF-8), so anyone can recompute the hash from the
stored snapshot, and the entry ids in the evidence lead back to the ledger.
Running a period again stores a new run and the difference from the last one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import insert_unless_exists, utcnow
from app.people.models import Organisation, Reporter
from app.reports.models import Tip
from app.rewards.errors import RunNotFound, RunRaced
from app.rewards.leaderboards import confirmed_tips_column, reporter_rows
from app.rewards.models import AwardRun, PointEntry
from app.rewards.rules import ORG_AWARDS, RULE_DEFAULTS, nominees, parse_period, rank
from app.rewards.services import current_rules, current_settings

_e = PointEntry
_runs = AwardRun.__table__
SNAPSHOT_VERSION = 1


def canonical_json(snapshot: dict) -> bytes:
    """Serialise a snapshot the one way its hash is defined on."""
    return json.dumps(snapshot, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def snapshot_hash(snapshot: dict) -> str:
    """Return the SHA-256 (hex) of the snapshot's canonical JSON."""
    return hashlib.sha256(canonical_json(snapshot)).hexdigest()


def _individuals(session: Session, months: tuple[str, ...]) -> list[dict]:
    """The leaderboard's reporter totals for the period, in the snapshot's own keys."""
    return [
        {
            "reporter_id": row["id"],
            "pseudonym": row["name"],
            "role": row["role"],
            "organisation": row["organisation"],
            "points": row["points"],
            "confirmed_tips": row["confirmed_tips"],
        }
        for row in reporter_rows(session, [_e.period.in_(months)])
    ]


def _organisations(session: Session, months: tuple[str, ...]) -> list[dict]:
    rows = session.execute(
        select(
            Organisation.id,
            Organisation.name,
            Organisation.kind,
            func.sum(_e.points),
            confirmed_tips_column(),
        )
        .join(Organisation, Organisation.id == _e.organisation_id)
        .where(_e.period.in_(months))
        .group_by(Organisation.id, Organisation.name, Organisation.kind)
    ).all()
    return [
        {
            "organisation_id": oid,
            "name": name,
            "kind": kind,
            "points": int(points),
            "confirmed_tips": int(confirmed),
        }
        for oid, name, kind, points, confirmed in rows
    ]


def _reporter_evidence(session: Session, reporter_id: int, months: tuple[str, ...]) -> list[dict]:
    """Return the tips behind a nominee's points: outcome, status, and each ledger entry."""
    entries = session.execute(
        select(_e.id, _e.tip_id, _e.tip_ref, _e.kind, _e.rule_code, _e.points, _e.created_at)
        .where(_e.reporter_id == reporter_id, _e.period.in_(months))
        .order_by(_e.tip_ref, _e.id)
    ).all()
    tip_ids = {e.tip_id for e in entries if e.tip_id is not None}
    states = {
        row.id: (row.outcome, row.status)
        for row in session.execute(
            select(Tip.id, Tip.outcome, Tip.status).where(Tip.id.in_(tip_ids))
        )
    }
    tips: dict[str | None, dict] = {}
    for e in entries:
        outcome, status = states.get(e.tip_id, (None, None))
        tip = tips.setdefault(
            e.tip_ref,
            {"ref": e.tip_ref, "outcome": outcome, "status": status, "points": 0, "entries": []},
        )
        tip["points"] += e.points
        tip["entries"].append(
            {
                "id": e.id,
                "kind": e.kind,
                "rule": e.rule_code,
                "points": e.points,
                "at": e.created_at.isoformat(),
            }
        )
    return list(tips.values())


def _member_evidence(session: Session, organisation_id: int, months: tuple[str, ...]) -> list[dict]:
    """Return what each member earned for the organisation in the period."""
    rows = session.execute(
        select(Reporter.pseudonym, func.sum(_e.points), confirmed_tips_column())
        .join(Reporter, Reporter.id == _e.reporter_id)
        .where(_e.organisation_id == organisation_id, _e.period.in_(months))
        .group_by(Reporter.pseudonym)
        .order_by(func.sum(_e.points).desc(), Reporter.pseudonym)
    ).all()
    return [
        {"pseudonym": p, "points": int(points), "confirmed_tips": int(confirmed)}
        for p, points, confirmed in rows
    ]


def _by_score(row: dict, name: str) -> tuple:
    return (-row["points"], -row["confirmed_tips"], row[name])


def build_snapshot(session: Session, period: str, *, now: dt.datetime | None = None) -> dict:
    """Compute the ranking, nominees and evidence of a period from the ledger, as plain JSON."""
    parsed = parse_period(period)
    now = now or utcnow()
    conn = session.connection()
    how_many = current_settings(conn)["nominees_per_group"]
    rules = current_rules(conn)

    individuals: dict[str, list[dict]] = {}
    for row in _individuals(session, parsed.months):
        individuals.setdefault(row["role"], []).append(row)
    nominated: dict[str, list[str]] = {}
    for role, rows in individuals.items():
        ranked = rank(rows, key=lambda r: _by_score(r, "pseudonym"))
        for row in nominees(ranked, how_many):
            row["nominee"] = True
            row["evidence"] = _reporter_evidence(session, row["reporter_id"], parsed.months)
        individuals[role] = ranked
        nominated[role] = [r["pseudonym"] for r in ranked if r.get("nominee")]

    organisations: dict[str, list[dict]] = {}
    for row in _organisations(session, parsed.months):
        organisations.setdefault(row["kind"], []).append(row)
    for kind, rows in organisations.items():
        ranked = rank(rows, key=lambda r: _by_score(r, "name"))
        if kind in ORG_AWARDS:
            for row in nominees(ranked, how_many):
                row["nominee"] = True
                row["evidence"] = _member_evidence(session, row["organisation_id"], parsed.months)
            nominated[ORG_AWARDS[kind]] = [r["name"] for r in ranked if r.get("nominee")]
        organisations[kind] = ranked
    for award in ORG_AWARDS.values():
        nominated.setdefault(award, [])

    return {
        "version": SNAPSHOT_VERSION,
        "period": parsed.label,
        "months": list(parsed.months),
        "complete": now >= parsed.end(),
        "generated_at": now.isoformat(),
        "rules": {code: rules[code][0] for code in RULE_DEFAULTS},
        "nominees_per_group": how_many,
        "individuals": individuals,
        "organisations": organisations,
        "nominees": nominated,
    }


def _index(snapshot: dict) -> dict[tuple[str, str, str], dict]:
    """Key every ranked row by (section, group, name) for comparison."""
    rows = {}
    for role, ranked in snapshot.get("individuals", {}).items():
        for r in ranked:
            rows[("individual", role, r["pseudonym"])] = r
    for kind, ranked in snapshot.get("organisations", {}).items():
        for r in ranked:
            rows[("organisation", kind, r["name"])] = r
    return rows


def diff_snapshots(before: dict, after: dict) -> dict:
    """Say what changed between two runs of a period: ranks, points, confirmed tips, nominees."""
    old, new = _index(before), _index(after)
    fields = ("rank", "points", "confirmed_tips")
    changes = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        was = {f: a[f] for f in fields} if a else None
        now = {f: b[f] for f in fields} if b else None
        if was != now:
            section, group, name = key
            changes.append(
                {"section": section, "group": group, "name": name, "before": was, "after": now}
            )
    nominee_changes = {}
    for award in sorted(before.get("nominees", {}).keys() | after.get("nominees", {}).keys()):
        was = before.get("nominees", {}).get(award, [])
        now = after.get("nominees", {}).get(award, [])
        added, removed = [n for n in now if n not in was], [n for n in was if n not in now]
        if added or removed:
            nominee_changes[award] = {"added": added, "removed": removed}
    return {"changes": changes, "nominees": nominee_changes}


def run_awards(
    session: Session, period: str, *, actor_id: int | None, now: dt.datetime | None = None
) -> AwardRun:
    """Freeze a snapshot of the period, store it with its hash, and diff it with the last run."""
    now = now or utcnow()
    parsed = parse_period(period)
    snapshot = build_snapshot(session, parsed.label, now=now)
    previous = session.scalar(
        select(AwardRun)
        .where(AwardRun.period == parsed.label)
        .order_by(AwardRun.run_no.desc())
        .limit(1)
    )
    diff = None
    if previous is not None:
        diff = {
            "from_run": previous.run_no,
            "from_sha256": previous.sha256,
            **diff_snapshots(previous.snapshot, snapshot),
        }
    run_id = insert_unless_exists(
        session.connection(),
        _runs,
        {
            "period": parsed.label,
            "run_no": previous.run_no + 1 if previous else 1,
            "created_at": now,
            "actor_id": actor_id,
            "sha256": snapshot_hash(snapshot),
            "snapshot": snapshot,
            "previous_id": previous.id if previous else None,
            "diff": diff,
        },
    )
    if run_id is None:
        raise RunRaced("another run of this period was stored just now; run it again")
    return session.get(AwardRun, run_id)


def list_runs(session: Session, period: str | None = None) -> list[AwardRun]:
    """Return award runs, newest first (optionally of one period)."""
    query = select(AwardRun).order_by(AwardRun.created_at.desc(), AwardRun.id.desc())
    if period:
        query = query.where(AwardRun.period == parse_period(period).label)
    return list(session.scalars(query.limit(200)))


def get_run(session: Session, run_id: int) -> AwardRun:
    """Return one award run, or raise RunNotFound."""
    run = session.get(AwardRun, run_id)
    if run is None:
        raise RunNotFound("no such award run")
    return run


def verify_run(run: AwardRun) -> bool:
    """Say whether the stored snapshot still hashes to the stored SHA-256."""
    return snapshot_hash(run.snapshot) == run.sha256
