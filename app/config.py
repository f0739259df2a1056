"""Settings: one frozen dataclass built from the environment in one place."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.security import keyed_hash

# Redis keys without a deployment of their own (settings built by hand: tests, tools).
DEFAULT_REDIS_PREFIX = "tipline:"
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}


@dataclass(frozen=True)
class Settings:
    """Everything the web app, the bot and the CLI need to know about their surroundings."""

    database_url: str
    secret_key: str
    media_dir: Path
    instance_dir: Path
    telegram_bot_token: str | None = None
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    telegram_file_base_url: str = "https://api.telegram.org/file/bot"
    telegram_webhook_secret: str | None = None
    redis_url: str | None = None
    # Starts every Redis key the app writes, so deployments sharing one Redis keep their
    # rate-limit counters and job locks apart; load_settings derives one per database.
    redis_prefix: str = DEFAULT_REDIS_PREFIX
    # Intake limits: a phone photo is 2-8 MB; ten of them plus form fields fit in 100 MB.
    max_photos: int = 10
    max_photo_bytes: int = 25 * 1024 * 1024
    max_request_bytes: int = 100 * 1024 * 1024
    max_pixels: int = 64_000_000
    decode_slots: int = 2
    decode_wait_seconds: float = 10.0
    # Routing: how far outside every grid a point may be and still go to the nearest one.
    nearest_grid_m: float = 300.0
    max_accuracy_m: float = 10_000.0
    orphan_grace_seconds: int = 3600
    # Map tiles for the form and the admin maps: none by default (a plain background, no
    # request leaves the site); the datum says how the tiles are drawn (wgs84|gcj02|bd09).
    map_tile_url: str | None = None
    map_tile_datum: str = "wgs84"
    # Triage: tips per reporter (and per anonymous client, which may be a shared NAT address).
    tips_per_minute: int = 10
    tips_per_hour: int = 60
    anonymous_tips_per_minute: int = 20
    anonymous_tips_per_hour: int = 120
    # Per Open311 key: an alarm platform or a security post relays many guards and sensors,
    # so far more than one reporter's 10, yet a runaway integration stays bounded.
    partner_tips_per_minute: int = 120
    # Duplicates: same category within this radius and time; similar photos within the days.
    duplicate_radius_m: float = 150.0
    duplicate_window_minutes: int = 30
    photo_window_days: int = 30
    photo_match_bits: int = 12  # pHash Hamming distance, tuned in test_duplicates.py
    # The bot: who may register, how long drafts live, retries, Telegram's sending limits.
    bot_allow_citizens: bool = True  # `/start` without an invite makes a citizen reporter
    bot_delete_tip_messages: bool = False  # delete the reporter's messages once a tip is stored
    bot_draft_ttl_minutes: int = 60
    bot_quick_path_minutes: int = 10  # a captioned photo waits this long for its location
    bot_album_settle_seconds: float = 1.0  # photos of one album arrive as separate updates
    bot_max_attempts: int = 5  # then the update is dead-lettered
    bot_retry_base_seconds: float = 2.0
    bot_poll_timeout: int = 25
    bot_send_per_second: int = 30
    bot_chat_interval_seconds: float = 1.0
    bot_clock_seconds: float = 15.0
    bot_sweep_seconds: float = 3600.0
    bot_utc_offset_minutes: int = 480  # times shown to reporters: China Standard Time
    bot_inbox_workers: int = 1  # webhook mode: inbox workers claiming with SKIP LOCKED
    # Retention: closed tips (with photos, events, outbox rows) older than this go
    # together; abandoned drafts and handled inbox rows go sooner. The ledger stays.
    retention_days: int = 730
    # Media: "local" (media_dir) or "s3" (any S3-compatible store, through boto3).
    media_backend: str = "local"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_prefix: str = ""
    # Database pool per process (PostgreSQL): size it to the threads of one worker.
    db_pool_size: int = 5
    db_max_overflow: int = 5
    # Partner webhooks: attempts before a delivery fails for good, first retry delay.
    webhook_max_attempts: int = 8
    webhook_retry_base_seconds: float = 10.0
    webhook_timeout_seconds: float = 10.0
    # Let webhooks reach private/loopback addresses (a receiver on the operator's network).
    webhook_allow_private: bool = False
    # Reverse proxies in front of gunicorn that append to X-Forwarded-For (0: none, trust
    # no header). The client address keys the anonymous and sign-in rate limits.
    proxy_hops: int = 0
    testing: bool = False
    extra: dict = field(default_factory=dict)

    def with_(self, **changes) -> Settings:
        """Return a copy with some fields changed (tests and tools)."""
        return replace(self, **changes)


def _instance_secret(instance_dir: Path) -> str:
    """Read the generated secret key, creating it once (mode 0600) on first use."""
    path = instance_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


def _redis_prefix(secret_key: str, database_url: str) -> str:
    """Derive a prefix unique to the deployment: a keyed hash of where its database lives.

    Only host, port and database name count: every process of a deployment names the same
    database, whatever user, password or driver each one uses. Keyed with the secret key
    (which a shared database implies too), so the key names in Redis reveal nothing of
    the database and cannot be matched against guesses.
    """
    try:
        url = make_url(database_url)
        port = url.port or _DEFAULT_PORTS.get(url.get_backend_name())
        where = f"{(url.host or '').lower()}:{port or ''}/{url.database or ''}"
    except ArgumentError:  # the engine will refuse it with a better message
        where = database_url
    return f"{DEFAULT_REDIS_PREFIX}{keyed_hash(secret_key, 'redis_prefix', where)[:12]}:"


def load_settings(environ: dict[str, str] | None = None, root: Path | None = None) -> Settings:
    """Build Settings from environment variables named in CONTRACT.md."""
    env = os.environ if environ is None else environ
    root = root or Path.cwd()
    instance_dir = root / "instance"
    url = env.get("DATABASE_URL") or f"sqlite:///{instance_dir / 'tipline.db'}"
    if url.startswith("sqlite:///instance/"):
        url = f"sqlite:///{root / url.removeprefix('sqlite:///')}"
    secret_key = env.get("TIPLINE_SECRET_KEY") or _instance_secret(instance_dir)
    redis_prefix = env.get("TIPLINE_REDIS_PREFIX") or _redis_prefix(secret_key, url)
    return Settings(
        database_url=url,
        secret_key=secret_key,
        media_dir=Path(env.get("TIPLINE_MEDIA_DIR") or instance_dir / "media"),
        instance_dir=instance_dir,
        telegram_bot_token=env.get("TELEGRAM_BOT_TOKEN") or None,
        telegram_api_base_url=env.get("TELEGRAM_API_BASE_URL") or "https://api.telegram.org/bot",
        telegram_file_base_url=env.get("TELEGRAM_FILE_BASE_URL")
        or "https://api.telegram.org/file/bot",
        telegram_webhook_secret=env.get("TELEGRAM_WEBHOOK_SECRET") or None,
        redis_url=env.get("REDIS_URL") or None,
        # A prefix given by hand reads as a namespace: "staging" writes "staging:rl:...".
        redis_prefix=redis_prefix if redis_prefix.endswith(":") else f"{redis_prefix}:",
        partner_tips_per_minute=int(env.get("TIPLINE_PARTNER_TIPS_PER_MINUTE") or 120),
        map_tile_url=env.get("TIPLINE_MAP_TILE_URL") or None,
        map_tile_datum=env.get("TIPLINE_MAP_TILE_DATUM") or "wgs84",
        retention_days=int(env.get("TIPLINE_RETENTION_DAYS") or 730),
        media_backend=env.get("TIPLINE_MEDIA_BACKEND") or "local",
        s3_bucket=env.get("TIPLINE_S3_BUCKET") or None,
        s3_endpoint_url=env.get("TIPLINE_S3_ENDPOINT_URL") or None,
        s3_region=env.get("TIPLINE_S3_REGION") or None,
        s3_prefix=env.get("TIPLINE_S3_PREFIX") or "",
        db_pool_size=int(env.get("TIPLINE_DB_POOL_SIZE") or 5),
        db_max_overflow=int(env.get("TIPLINE_DB_MAX_OVERFLOW") or 5),
        bot_inbox_workers=int(env.get("TIPLINE_BOT_INBOX_WORKERS") or 1),
        proxy_hops=int(env.get("TIPLINE_PROXY_HOPS") or 0),
        webhook_allow_private=env.get("TIPLINE_WEBHOOK_ALLOW_PRIVATE", "").lower()
        in ("1", "true", "yes"),
    )
