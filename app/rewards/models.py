"""The points ledger, its rules, second approvals and the frozen award runs.

The ledger (`point_entries`) is append-only: a correction is a reversal entry
pointing at the entry it cancels, never an UPDATE or a DELETE, and the database
refuses both (triggers below, created by migration 0004 and by create_all).

Unique keys, and why re-triage still works: an award is keyed by
(tip, rule, seq, kind). `seq` is the generation of that (tip, rule) pair: it
starts at 0 and goes up by one each time an earlier award of the pair was
reversed (or a pending request for it was closed). So confirmed → unfounded →
confirmed writes award seq 0, reversal seq 0, award seq 1: each state change
gets exactly one entry, however many approvers race to write it, because they
all compute the same key and INSERT ... ON CONFLICT DO NOTHING keeps the first.

`tip_id` is deliberately not a foreign key: retention may delete an old tip,
and the ledger must keep its amounts (and the tip's reference) regardless.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    DDL,
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow

ENTRY_KINDS = ("award", "reversal")
REQUEST_STATES = ("pending", "approved", "rejected")
# Tables whose rows, once written, are evidence: the database refuses to change them.
APPEND_ONLY_TABLES = ("point_entries", "award_runs")


class RewardRule(Base):
    """How many points a rule gives; admins edit it, and each entry copies the value it used."""

    __tablename__ = "reward_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(30), unique=True)
    points: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))


class RewardSetting(Base):
    """A number that governs the rules: the period cap, the second-approval threshold, ..."""

    __tablename__ = "reward_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)
    value: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))


class PointEntry(Base):
    """One line of the ledger: points for a reporter, from a rule, for a tip, by a decision."""

    __tablename__ = "point_entries"
    __table_args__ = (
        UniqueConstraint("tip_id", "rule_code", "seq", "kind"),
        CheckConstraint("kind IN ('award', 'reversal')", name="kind"),
        CheckConstraint(
            "(kind = 'reversal') = (reverses_id IS NOT NULL)", name="reversal_points_back"
        ),
        Index("ix_point_entries_reporter_period", "reporter_id", "period"),
        Index("ix_point_entries_period_organisation", "period", "organisation_id"),
        Index("ix_point_entries_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    reporter_id: Mapped[int] = mapped_column(ForeignKey("reporters.id"))
    # The reporter's organisation when the points were earned: the organisation awards
    # count what members earned while they were members.
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    tip_id: Mapped[int | None] = mapped_column(Integer)
    tip_ref: Mapped[str | None] = mapped_column(String(8))
    grid_path: Mapped[str | None] = mapped_column(String(1000))
    rule_code: Mapped[str] = mapped_column(String(30))
    seq: Mapped[int] = mapped_column(Integer, default=0)
    points: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(40))
    detail: Mapped[dict | None] = mapped_column(JSON)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    approver_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    period: Mapped[str] = mapped_column(String(7))  # the month, "2026-11"
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("point_entries.id"), unique=True)


class PointBalance(Base):
    """A reporter's cached total, changed only by `balance + delta` in the entry's transaction.

    Its row is also the per-reporter lock that makes the period cap exact under concurrency.
    """

    __tablename__ = "point_balances"

    id: Mapped[int] = mapped_column(primary_key=True)
    reporter_id: Mapped[int] = mapped_column(ForeignKey("reporters.id"), unique=True)
    balance: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PointRequest(Base):
    """An award above the threshold, waiting for a second approver before it enters the ledger.

    Not part of the ledger (it has a state that changes); it shares the ledger's
    (tip, rule, seq) key, so a request and its award are the same generation.
    `closed_at` is set when the rule stopped applying before a decision (or after a
    rejection): the next time the rule applies, a new generation starts.
    """

    __tablename__ = "point_requests"
    __table_args__ = (
        UniqueConstraint("tip_id", "rule_code", "seq"),
        CheckConstraint("state IN ('pending', 'approved', 'rejected')", name="state"),
        Index("ix_point_requests_state", "state", "closed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tip_id: Mapped[int] = mapped_column(Integer)
    tip_ref: Mapped[str | None] = mapped_column(String(8))
    grid_path: Mapped[str | None] = mapped_column(String(1000))
    reporter_id: Mapped[int] = mapped_column(ForeignKey("reporters.id"), index=True)
    rule_code: Mapped[str] = mapped_column(String(30))
    seq: Mapped[int] = mapped_column(Integer)
    points: Mapped[int] = mapped_column(Integer)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    state: Mapped[str] = mapped_column(String(10), default="pending")
    closed_at: Mapped[dt.datetime | None]
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    decided_at: Mapped[dt.datetime | None]
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("point_entries.id"))


class AwardRun(Base):
    """A frozen snapshot of a period's ranking and nominees, with the SHA-256 of its JSON.

    A re-run of the period is a new row with the difference from the previous one.
    """

    __tablename__ = "award_runs"
    __table_args__ = (UniqueConstraint("period", "run_no"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    period: Mapped[str] = mapped_column(String(7))  # 2026, 2026-Q4, 2026-11
    run_no: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    sha256: Mapped[str] = mapped_column(String(64))
    snapshot: Mapped[dict] = mapped_column(JSON)
    previous_id: Mapped[int | None] = mapped_column(ForeignKey("award_runs.id"))
    diff: Mapped[dict | None] = mapped_column(JSON)


# --- append-only triggers -----------------------------------------------------------------
# Migration 0004 carries a copy of these statements (migrations stay frozen); create_all
# uses these, so tests on a created schema are protected exactly as a migrated one.
PG_REFUSE_FUNCTION = """
CREATE OR REPLACE FUNCTION rewards_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'table % is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'integrity_constraint_violation';
END
$$
"""


def append_only_statements(table: str, dialect: str) -> list[str]:
    """Return the DDL that makes `table` refuse UPDATE, DELETE (and TRUNCATE) on a dialect."""
    if dialect == "postgresql":
        return [
            PG_REFUSE_FUNCTION,
            f"CREATE TRIGGER trg_{table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION rewards_refuse_change()",
            f"CREATE TRIGGER trg_{table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION rewards_refuse_change()",
        ]
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER trg_{table}_no_update BEFORE UPDATE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'table {table} is append-only: UPDATE refused'); END",
            f"CREATE TRIGGER trg_{table}_no_delete BEFORE DELETE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'table {table} is append-only: DELETE refused'); END",
        ]
    return []


def _attach_append_only(table) -> None:
    for dialect in ("postgresql", "sqlite"):
        for statement in append_only_statements(table.name, dialect):
            # DDL() runs %-formatting over its text; the PL/pgSQL message uses % placeholders.
            ddl = DDL(statement.replace("%", "%%")).execute_if(dialect=dialect)
            event.listen(table, "after_create", ddl)


for _table in (PointEntry.__table__, AwardRun.__table__):
    _attach_append_only(_table)
