"""The `tipline` command line (also available as `flask --app wsgi ...`)."""

from __future__ import annotations

import json
import sys
from functools import cached_property
from pathlib import Path

import click

from app.config import Settings, load_settings


class Context:
    """Settings and database handles, built only when a command needs them."""

    @cached_property
    def settings(self) -> Settings:
        return load_settings()

    @cached_property
    def engine(self):
        from app.db import make_engine

        return make_engine(self.settings.database_url)

    @cached_property
    def sessions(self):
        from app.db import make_session_factory

        return make_session_factory(self.engine)

    def close(self) -> None:
        """Release pooled connections when the command ends."""
        if "engine" in self.__dict__:
            self.engine.dispose()

    def unit_of_work(self):
        """Open one transaction for a command."""
        from app.db import unit_of_work

        return unit_of_work(self.sessions)


pass_ctx = click.make_pass_decorator(Context, ensure=True)


def _fail(message: str) -> None:
    """Print an error without a traceback and exit 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.group()
@click.pass_context
def cli(click_ctx: click.Context) -> None:
    """Tipline: community-safety tip line."""
    click_ctx.call_on_close(click_ctx.ensure_object(Context).close)


# --- database -----------------------------------------------------------------------------
@cli.group("db")
def db_group() -> None:
    """Database schema migrations."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
@pass_ctx
def db_upgrade(ctx: Context, revision: str) -> None:
    """Upgrade the database to REVISION (default: head)."""
    from app.migrate import upgrade

    upgrade(ctx.engine, revision)
    click.echo(f"database at {revision}")


@db_group.command("downgrade")
@click.argument("revision")
@pass_ctx
def db_downgrade(ctx: Context, revision: str) -> None:
    """Downgrade the database to REVISION (e.g. base, or -1)."""
    from app.migrate import downgrade

    downgrade(ctx.engine, revision)
    click.echo(f"database at {revision}")


@db_group.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
def db_backup(ctx: Context, path: Path) -> None:
    """Copy the live database to PATH (SQLite online backup; pg_dump custom format)."""
    from app.backup import BackupFailed, backup_database

    try:
        method = backup_database(ctx.settings.database_url, path)
    except BackupFailed as exc:
        _fail(str(exc))
    click.echo(f"backed up to {path} ({method})")


@db_group.command("restore")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="replace a database that already holds tips")
@pass_ctx
def db_restore(ctx: Context, path: Path, yes: bool) -> None:
    """Replace the database with the backup at PATH, once the backup has passed its checks."""
    from app.restore import RestoreFailed, restore_database

    try:
        done = restore_database(ctx.settings.database_url, path, replace_tips=yes)
    except RestoreFailed as exc:
        _fail(str(exc))
    replaced = f", replacing {done.replaced_tips}" if done.replaced_tips else ""
    click.echo(f"restored {path} ({done.method}): {done.tips} tips{replaced}")
    if done.leftover_tables:
        click.echo(
            f"warning: tables not in the backup were left as they were: "
            f"{', '.join(done.leftover_tables)} (drop them before `tipline db upgrade`)",
            err=True,
        )
    if done.revision != done.head:
        click.echo(f"the backup is at revision {done.revision}: run `tipline db upgrade` next")


# --- demo ---------------------------------------------------------------------------------
@cli.group("demo")
def demo_group() -> None:
    """The synthetic demo city."""


@demo_group.command("seed")
@pass_ctx
def demo_seed(ctx: Context) -> None:
    """Seed the demo city, categories, staff and invites (idempotent)."""
    from app.demo.seed import seed_demo

    with ctx.unit_of_work() as session:
        report = seed_demo(session, ctx.settings)
    for line in report:
        click.echo(line)


# --- grids --------------------------------------------------------------------------------
@cli.group("grids")
def grids_group() -> None:
    """Grid layers."""


@grids_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--crs",
    type=click.Choice(["wgs84", "gcj02", "bd09"]),
    default="wgs84",
    show_default=True,
    help="datum the polygons were drawn in",
)
@click.option("--replace", is_flag=True, help="replace the active layer with this one")
@pass_ctx
def grids_import(ctx: Context, file: Path, crs: str, replace: bool) -> None:
    """Import a GeoJSON FeatureCollection of city/town/village/grid polygons."""
    from app.errors import DomainError
    from app.grids.services import LayerInvalid, import_layer

    try:
        collection = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        _fail(f"{file.name} is not valid GeoJSON: {exc}")
    try:
        with ctx.unit_of_work() as session:
            result = import_layer(
                session, collection, crs=crs, replace=replace, source_name=file.name
            )
    except LayerInvalid as exc:
        for problem in exc.problems:
            click.echo(f"{problem.severity}: {problem.message}", err=True)
        _fail(f"{file.name} was not imported")
    except DomainError as exc:
        _fail(exc.message)
    for problem in result.warnings:
        click.echo(f"{problem.severity}: {problem.message}", err=True)
    click.echo(f"imported layer version {result.version}: {result.counts}")


# --- people -------------------------------------------------------------------------------
@cli.group("users")
def users_group() -> None:
    """Staff users."""


@users_group.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "supervisor", "grid_worker"]), required=True)
@click.option("--grid", "grids", multiple=True, help="grid code in scope (repeatable)")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@pass_ctx
def users_create(
    ctx: Context, username: str, role: str, grids: tuple[str, ...], password_stdin: bool
) -> None:
    """Create a staff user."""
    from app.errors import DomainError
    from app.people.services import create_staff_user

    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    try:
        with ctx.unit_of_work() as session:
            create_staff_user(session, username, role, password=password, grids=list(grids))
    except (DomainError, ValueError) as exc:
        _fail(str(exc))
    click.echo(f"created {role} {username}")


@users_group.command("token")
@click.argument("username")
@pass_ctx
def users_token(ctx: Context, username: str) -> None:
    """Print a new staff API token."""
    from app.people.services import issue_staff_token

    try:
        with ctx.unit_of_work() as session:
            token = issue_staff_token(session, username)
    except LookupError as exc:
        _fail(str(exc))
    click.echo(token)


@users_group.command("link-telegram")
@click.argument("username")
@pass_ctx
def users_link_telegram(ctx: Context, username: str) -> None:
    """Print a one-time code; the staff member sends `/start CODE` to the bot to get alerts."""
    from app.people.identities import issue_staff_link_code

    try:
        with ctx.unit_of_work() as session:
            code = issue_staff_link_code(session, ctx.settings.secret_key, username)
    except LookupError as exc:
        _fail(str(exc))
    click.echo(f"/start {code}")


@cli.group("invites")
def invites_group() -> None:
    """Reporter invites."""


@invites_group.command("create")
@click.option(
    "--role", type=click.Choice(["taxi_driver", "volunteer", "enterprise_guard"]), required=True
)
@click.option("--org", "org_name", help="organisation name (created if new)")
@click.option("--count", type=click.IntRange(1, 1000), default=1, show_default=True)
@pass_ctx
def invites_create(ctx: Context, role: str, org_name: str | None, count: int) -> None:
    """Print invite codes (bot deep link `/start CODE`, or web sign-up)."""
    from app.people.services import create_invites, find_or_create_organisation

    kinds = {
        "taxi_driver": "taxi_company",
        "volunteer": "volunteer_team",
        "enterprise_guard": "enterprise",
    }
    with ctx.unit_of_work() as session:
        org_id = (
            find_or_create_organisation(session, org_name, kinds[role]).id if org_name else None
        )
        codes = create_invites(
            session, ctx.settings.secret_key, role, organisation_id=org_id, count=count
        )
    for code in codes:
        click.echo(code)


@cli.group("reporters")
def reporters_group() -> None:
    """Reporters."""


@reporters_group.command("token")
@click.argument("pseudonym")
@pass_ctx
def reporters_token(ctx: Context, pseudonym: str) -> None:
    """Print a new API token for the reporter with this pseudonym."""
    from sqlalchemy import select

    from app.people.models import Reporter
    from app.people.services import issue_reporter_token

    with ctx.unit_of_work() as session:
        reporter_id = session.scalar(
            select(Reporter.id).where(Reporter.pseudonym == pseudonym.strip().upper())
        )
        if reporter_id is None:
            _fail(f"no reporter {pseudonym}")
        token = issue_reporter_token(session, reporter_id)
    click.echo(token)


# --- partners (Open311 keys) ---------------------------------------------------------------


@cli.group("partners")
def partners_group() -> None:
    """Open311 partner keys."""


@partners_group.command("create")
@click.argument("name")
@click.option("--org", "org_name", help="organisation name (created if new)")
@click.option(
    "--grid", "grid_paths", multiple=True, help="grid path prefix, e.g. C/T01 (repeatable)"
)
@pass_ctx
def partners_create(ctx: Context, name: str, org_name: str | None, grid_paths: tuple) -> None:
    """Print a new partner's Open311 API key (shown once, stored hashed)."""
    from app.errors import DomainError
    from app.partners.keys import create_partner

    try:
        with ctx.unit_of_work() as session:
            _partner, key = create_partner(
                session, ctx.settings, name=name, organisation=org_name, grid_paths=list(grid_paths)
            )
    except DomainError as exc:
        _fail(exc.message)
    click.echo(key)


@partners_group.command("revoke")
@click.argument("name")
@pass_ctx
def partners_revoke(ctx: Context, name: str) -> None:
    """Revoke a partner's key: every Open311 call with it gets 403 from now on."""
    from app.partners.keys import find_partner, revoke_partner

    with ctx.unit_of_work() as session:
        partner = find_partner(session, name)
        if partner is None:
            _fail(f"no partner {name}")
        revoked = revoke_partner(session, partner.id)
    click.echo("revoked" if revoked else "already revoked")


@partners_group.command("list")
@pass_ctx
def partners_list(ctx: Context) -> None:
    """List partners: name, key prefix, organisation, grids, state, last use."""
    from app.partners.administration import partner_overview

    with ctx.unit_of_work() as session:
        for p in partner_overview(session):
            state = "revoked" if p["revoked_at"] else "active"
            last = p["last_used_at"].isoformat() if p["last_used_at"] else "-"
            grids = ",".join(p["grid_paths"]) or "*"
            org = p["organisation"] or "-"
            click.echo(f"{p['name']}\t{p['key_prefix']}…\t{org}\t{grids}\t{state}\t{last}")


# --- webhooks (partner subscriptions) -------------------------------------------------------


@cli.group("webhooks")
def webhooks_group() -> None:
    """Partner webhook subscriptions and their delivery worker."""


@webhooks_group.command("add")
@click.argument("partner")
@click.argument("url")
@click.option("--event", "events", multiple=True, help="event to send (repeatable; default all)")
@pass_ctx
def webhooks_add(ctx: Context, partner: str, url: str, events: tuple) -> None:
    """Subscribe a partner's URL; print the signing secret (shown once)."""
    from app.errors import DomainError
    from app.partners.keys import find_partner
    from app.partners.webhooks import add_subscription

    try:
        with ctx.unit_of_work() as session:
            found = find_partner(session, partner)
            if found is None:
                _fail(f"no partner {partner}")
            sub, secret = add_subscription(session, ctx.settings, found.id, url, list(events))
    except DomainError as exc:
        _fail("; ".join([exc.message, *(m for ms in exc.fields.values() for m in ms)]))
    click.echo(f"subscription {sub.id}: {', '.join(sub.events)}", err=True)
    click.echo(secret)


@webhooks_group.command("list")
@pass_ctx
def webhooks_list(ctx: Context) -> None:
    """List subscriptions: id, partner, events, state, URL."""
    from app.partners.webhooks import list_subscriptions

    with ctx.unit_of_work() as session:
        for sub in list_subscriptions(session):
            state = "active" if sub.active else "disabled"
            click.echo(f"{sub.id}\t{sub.partner_name}\t{','.join(sub.events)}\t{state}\t{sub.url}")


@webhooks_group.command("run")
@click.option("--every", type=click.FloatRange(min=0.1), help="keep delivering, this many s apart")
@pass_ctx
def webhooks_run(ctx: Context, every: float | None) -> None:
    """Deliver due webhooks once (or every N seconds until interrupted)."""
    from app.partners.delivery import run_deliveries

    try:
        total = run_deliveries(ctx.sessions, ctx.settings, every=every)
    except KeyboardInterrupt:
        return
    click.echo(" ".join(f"{kind}={n}" for kind, n in sorted(total.items())) or "nothing due")


# --- media --------------------------------------------------------------------------------
@cli.group("media")
def media_group() -> None:
    """The photo store."""


@media_group.command("sweep")
@click.option("--grace", type=int, default=None, help="seconds a file may wait for its row")
@pass_ctx
def media_sweep(ctx: Context, grace: int | None) -> None:
    """Remove stored files that no row refers to (after a grace period)."""
    from app.reports.storage import make_media_store
    from app.reports.sweeper import sweep_orphans

    with ctx.unit_of_work() as session:
        removed = sweep_orphans(
            session,
            make_media_store(ctx.settings),
            grace_seconds=ctx.settings.orphan_grace_seconds if grace is None else grace,
        )
    click.echo(f"removed {removed} orphan file(s)")


# --- retention ----------------------------------------------------------------------------
@cli.group("retention")
def retention_group() -> None:
    """Deleting what the retention period has passed."""


@retention_group.command("run")
@click.option("--dry-run", is_flag=True, help="only count what would be deleted")
@click.option(
    "--now",
    "now_text",
    metavar="ISO-8601",
    help="run as if it were this UTC time (tests and catch-up runs)",
)
@pass_ctx
def retention_run(ctx: Context, dry_run: bool, now_text: str | None) -> None:
    """Delete closed tips (with photos and messages), drafts and inbox rows past retention."""
    import datetime as dt

    from app.reports.retention import run_retention
    from app.reports.storage import make_media_store

    now = None
    if now_text:
        try:
            now = dt.datetime.fromisoformat(now_text)
        except ValueError:
            _fail(f"--now {now_text!r} is not an ISO 8601 time")
        now = now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now.astimezone(dt.UTC)
    report = run_retention(
        ctx.sessions,
        make_media_store(ctx.settings),
        ctx.settings,
        now=now,
        dry_run=dry_run,
    )
    counts = " ".join(f"{name}={n}" for name, n in report.as_dict().items())
    click.echo(f"{'would remove' if dry_run else 'removed'}: {counts}")


# --- awards -------------------------------------------------------------------------------
@cli.group("awards")
def awards_group() -> None:
    """Recognition points and the periodic awards."""


@awards_group.command("run")
@click.argument("period")
@pass_ctx
def awards_run(ctx: Context, period: str) -> None:
    """Freeze the ranking and nominees of PERIOD (2026, 2026-Q4, 2026-11) as a new run."""
    from app.errors import DomainError
    from app.rewards.awards import run_awards

    try:
        with ctx.unit_of_work() as session:
            run = run_awards(session, period, actor_id=None)
            summary = (run.period, run.run_no, run.sha256, run.snapshot["nominees"], run.diff)
    except DomainError as exc:
        _fail(exc.message)
    period_label, run_no, sha256, nominees, diff = summary
    click.echo(f"award run {run_no} for {period_label}: sha256 {sha256}")
    for award, names in sorted(nominees.items()):
        click.echo(f"  {award}: {', '.join(names) or '-'}")
    if diff is not None:
        click.echo(f"  changes since run {diff['from_run']}: {len(diff['changes'])}")


# --- bot ----------------------------------------------------------------------------------
@cli.command("bot")
@click.option(
    "--inbox-only",
    is_flag=True,
    help="only drain the webhook inbox, beside the one `tipline bot` (PostgreSQL; scale-out)",
)
@pass_ctx
def bot_command(ctx: Context, inbox_only: bool) -> None:
    """Run the Telegram bot (long polling; inbox draining when TELEGRAM_WEBHOOK_SECRET is set)."""
    from app.bot.runtime import AlreadyRunning, inbox_only_refusal, run_bot

    if not ctx.settings.telegram_bot_token:
        _fail("TELEGRAM_BOT_TOKEN is not set")
    if inbox_only and (refusal := inbox_only_refusal(ctx.settings)):
        _fail(refusal)
    try:
        run_bot(ctx.settings, inbox_only=inbox_only)
    except AlreadyRunning as exc:
        _fail(str(exc))


@cli.group("clock")
def clock_group() -> None:
    """The response clock."""


@clock_group.command("run")
@click.option("--every", type=float, default=0, help="repeat every N seconds (0: run once)")
@pass_ctx
def clock_run(ctx: Context, every: float) -> None:
    """Escalate tips not acknowledged in time (the bot process also runs this every 15 s)."""
    import time

    from app.db import utcnow
    from app.locks import clock_lock
    from app.reports.clock import run_clock

    # Several runners may be started for availability; one ticks at a time.
    lock = clock_lock(ctx.settings.redis_url, every, prefix=ctx.settings.redis_prefix)
    while True:
        escalated = lock.run(ctx.sessions, lambda session: run_clock(session, now=utcnow()))
        if escalated is None:
            click.echo("another runner is ticking the clock; skipped")
        else:
            click.echo(f"escalated {escalated} tip(s)")
        if every <= 0:
            return
        time.sleep(every)


def register_cli(app) -> None:
    """Expose the same commands through `flask --app wsgi`."""
    for command in cli.commands.values():
        app.cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(obj=Context())
