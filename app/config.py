"""Settings: one frozen dataclass built from the environment in one place."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path


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


def load_settings(environ: dict[str, str] | None = None, root: Path | None = None) -> Settings:
    """Build Settings from environment variables named in CONTRACT.md."""
    env = os.environ if environ is None else environ
    root = root or Path.cwd()
    instance_dir = root / "instance"
    url = env.get("DATABASE_URL") or f"sqlite:///{instance_dir / 'tipline.db'}"
    if url.startswith("sqlite:///instance/"):
        url = f"sqlite:///{root / url.removeprefix('sqlite:///')}"
    return Settings(
        database_url=url,
        secret_key=env.get("TIPLINE_SECRET_KEY") or _instance_secret(instance_dir),
        media_dir=Path(env.get("TIPLINE_MEDIA_DIR") or instance_dir / "media"),
        instance_dir=instance_dir,
        telegram_bot_token=env.get("TELEGRAM_BOT_TOKEN") or None,
        telegram_api_base_url=env.get("TELEGRAM_API_BASE_URL") or "https://api.telegram.org/bot",
        telegram_file_base_url=env.get("TELEGRAM_FILE_BASE_URL")
        or "https://api.telegram.org/file/bot",
        telegram_webhook_secret=env.get("TELEGRAM_WEBHOOK_SECRET") or None,
        redis_url=env.get("REDIS_URL") or None,
    )
