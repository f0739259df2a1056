"""The system-test harness: the real processes (gunicorn, `tipline bot`) on a fresh database.

Use it through the fixtures in tests/system/conftest.py:

    def test_something(system_env, fake_telegram):
        with WebServer(system_env) as web:                  # gunicorn wsgi:app, 2 workers
            status, body, _ = post_tip(web.url(), fields=canaries.tip_fields(),
                                       photos=[jpeg], key=str(uuid.uuid4()))
            system_env.arm_fault("photo_written")            # app/faults.py: next one dies
            web.kill_worker()                                # or web.kill(); web.restart()
        with BotProcess(system_env, fake_telegram) as bot:   # `tipline bot` against the fake
            ...
        assert system_env.counts()["tips"] == ...

`system_env` is one PostgreSQL database for the whole session (CREATE DATABASE
tipline_sys_<random>, migrated and demo-seeded by the real CLI, dropped at the
end), one media dir, and one log dir: every process the suite starts writes its
stdout and stderr to its own file there (test_zz_log_canaries.py scans them all).
Servers listen on a socket the harness holds, so a restarted server keeps its
port and a client that connects while it is down waits instead of failing.
Every process started here is stopped at the end of the session, whatever happens.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from tests.system import canaries, tally

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TIPLINE = BIN / "tipline"
GUNICORN = BIN / "gunicorn"
GUNICORN_CONF = REPO / "deploy" / "gunicorn.conf.py"
ACCESS_LOG_FORMAT = "%(m)s %(U)s %(s)s %(M)sms"  # the Makefile's, when deploy/ has none
COUNTED_TABLES = {"tips": "tips", "photos": "photos", "outbox": "outbox", "inbox": "bot_inbox"}


_DROP_DATABASE = """
import sys
from sqlalchemy import create_engine, text
engine = create_engine(sys.argv[1], isolation_level="AUTOCOMMIT")
with engine.connect() as conn:
    conn.execute(text(f'DROP DATABASE IF EXISTS "{sys.argv[2]}" WITH (FORCE)'))
"""


def _psycopg(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _with_database(url: str, database: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{database}", query=""))


def _redis_url() -> str | None:
    """Redis db 14 on TEST_REDIS_URL's server (or the local default) when it answers."""
    base = os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/15"
    parts = urllib.parse.urlsplit(base)
    try:
        with socket.create_connection((parts.hostname, parts.port or 6379), timeout=1):
            pass
    except OSError:
        return None
    return urllib.parse.urlunsplit(parts._replace(path="/14"))


class SystemEnv:
    """A fresh database, media dir and log dir shared by every process of the suite."""

    def __init__(self, base_url: str, root: Path):
        self.name = f"tipline_sys_{secrets.token_hex(5)}"
        self.base_url = base_url
        self.database_url = _with_database(base_url, self.name)
        self.root = root
        self.media_dir = root / "media"
        self.log_dir = root / "logs"
        self.fault_dir = root / "faults"
        for d in (self.media_dir, self.log_dir, self.fault_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "TIPLINE_"))},
            "DATABASE_URL": self.database_url,
            "TIPLINE_SECRET_KEY": canaries.SECRET_KEY,
            "TIPLINE_MEDIA_DIR": str(self.media_dir),
            "TIPLINE_FAULT_DIR": str(self.fault_dir),
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("REDIS_URL", None)
        redis_url = _redis_url()
        if redis_url:
            self.env["REDIS_URL"] = redis_url
        self._starts = itertools.count(1)
        self._admin = create_engine(_psycopg(base_url), isolation_level="AUTOCOMMIT")
        self._engine = None
        self.processes: list = []  # everything started, stopped at the end

    # --- life cycle --------------------------------------------------------------------------

    def create(self) -> SystemEnv:
        """Create, migrate and seed the database with the real command line."""
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        self._engine = create_engine(_psycopg(self.database_url), pool_pre_ping=True)
        self.run_cli("db", "upgrade")
        self.run_cli("demo", "seed")
        return self

    def close(self) -> None:
        """Stop whatever is still running and drop the database."""
        for proc in reversed(self.processes):
            with contextlib.suppress(Exception):
                proc.close()
        if self._engine is not None:
            self._engine.dispose()
        self._admin.dispose()
        # DROP DATABASE waits for a checkpoint (6 s and more on a busy server): let it
        # finish after the suite, in a process of its own.
        subprocess.run(
            [
                "/bin/sh",
                "-c",
                '"$0" -c "$1" "$2" "$3" >/dev/null 2>&1 &',
                sys.executable,
                _DROP_DATABASE,
                _psycopg(self.base_url),
                self.name,
            ],
            check=False,
            timeout=10,
        )

    # --- processes ---------------------------------------------------------------------------

    def log_file(self, name: str) -> Path:
        """A new log file for one process start (the canary scan reads them all)."""
        return self.log_dir / f"{next(self._starts):03d}-{name}.log"

    def run_cli(
        self,
        *args: str,
        extra_env: dict | None = None,
        input: str | None = None,
        check: bool = True,
        secret: bool = False,
    ) -> subprocess.CompletedProcess:
        """Run `tipline ARGS` to completion; its output is logged and returned.

        secret=True: the command prints a key or token by design (shown once to the
        operator), so its stdout is returned but not logged; stderr still is.
        """
        log = self.log_file("cli-" + "-".join(args[:2]))
        result = subprocess.run(
            [str(TIPLINE), *args],
            env={**self.env, **(extra_env or {})},
            cwd=self.root,
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        shown = f"[stdout withheld: {len(result.stdout.splitlines())} line(s)]\n" if secret else ""
        log.write_text((shown or result.stdout) + result.stderr)
        if check and result.returncode != 0:
            raise AssertionError(f"tipline {' '.join(args)} failed; see {log}")
        return result

    # --- looking at the database and the disk -------------------------------------------------

    def session(self) -> Session:
        """A session on the suite's database (use it in a `with`)."""
        return Session(self._engine)

    def scalar(self, sql: str, **params):
        with self._engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def counts(self) -> dict[str, int]:
        """Rows of tips, photos, outbox and inbox."""
        with self._engine.connect() as conn:
            return {
                name: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()  # noqa: S608
                for name, table in COUNTED_TABLES.items()
            }

    def media_files(self) -> set[str]:
        """Every stored media key (tmp/ excluded)."""
        return {
            str(p.relative_to(self.media_dir))
            for p in self.media_dir.glob("??/??/*")
            if p.is_file()
        }

    def temp_files(self) -> list[Path]:
        return [p for p in (self.media_dir / "tmp").glob("*") if p.is_file()]

    def referenced_keys(self) -> set[str]:
        """Every media key a row refers to."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT derivative_key FROM photos UNION SELECT thumbnail_key FROM photos "
                    "UNION SELECT media_key FROM tip_audio"
                )
            ).scalars()
            return {key for key in rows if key}

    def sweep(self) -> str:
        """Run the orphan sweeper with no grace (only when no write is in flight)."""
        return self.run_cli("media", "sweep", "--grace", "0").stdout.strip()

    def files_and_rows_agree(self) -> tuple[set[str], set[str]]:
        """Return (files without a row, rows without a file); both empty when all is well."""
        files, keys = self.media_files(), self.referenced_keys()
        return files - keys, keys - files

    # --- faults (app/faults.py) --------------------------------------------------------------

    def arm_fault(self, point: str, action: str = "kill") -> None:
        """Make the next process that reaches `point` die there (once, system-wide)."""
        (self.fault_dir / point).write_text(action)

    def fault_fired(self, point: str) -> bool:
        return not (self.fault_dir / point).exists() and any(
            self.fault_dir.glob(f"{point}.fired-*")
        )

    def disarm_faults(self) -> None:
        for path in self.fault_dir.iterdir():
            if ".fired-" not in path.name:
                path.unlink(missing_ok=True)

    def wait_fired(self, point: str, timeout: float = 20.0) -> None:
        wait_for(lambda: self.fault_fired(point), timeout, f"fault {point} did not fire")


def wait_for(predicate, timeout: float, message: str, pause: float = 0.05):
    """Poll until predicate() is truthy and return its value; fail with the message."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(pause)


def _limits(rlimits: dict | None):
    if not rlimits:
        return None

    def apply() -> None:
        for which, pair in rlimits.items():
            resource.setrlimit(which, pair)

    return apply


class _Process:
    """A child process in its own session, logged to a fresh file per start."""

    name = "process"

    def __init__(self, system_env: SystemEnv, extra_env: dict | None, rlimits: dict | None):
        self.system_env = system_env
        self.env = {**system_env.env, **(extra_env or {})}
        self.rlimits = rlimits
        self.proc: subprocess.Popen | None = None
        self.log: Path | None = None
        self.starts = 0
        system_env.processes.append(self)

    def _spawn(self, argv: list[str], pass_fds=()) -> None:
        self.log = self.system_env.log_file(self.name)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                argv,
                env=self.env,
                cwd=self.system_env.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=pass_fds,
                start_new_session=True,
                preexec_fn=_limits(self.rlimits),  # only setrlimit: safe before exec
            )
        self.starts += 1

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the process and all its children (its session), and reap it."""
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        if sig == signal.SIGKILL:
            self.proc.wait(10)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL if it does not end in time; return the exit code."""
        if self.proc is None:
            return None
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):  # stray children of a killed parent
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def restart(self):
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class WebServer(_Process):
    """gunicorn wsgi:app on a loopback socket held by the harness (same port across restarts)."""

    name = "web"

    def __init__(
        self,
        system_env: SystemEnv,
        *,
        workers: int = 2,
        threads: int = 4,
        extra_env: dict | None = None,
        rlimits: dict | None = None,
    ):
        super().__init__(system_env, extra_env, rlimits)
        self.workers, self.threads = workers, threads
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.set_inheritable(True)
        self.port = self.sock.getsockname()[1]

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self, timeout: float = 30) -> WebServer:
        """Start gunicorn and wait until /readyz answers 200."""
        fd = self.sock.fileno()
        argv = [str(GUNICORN)]
        if GUNICORN_CONF.exists():
            argv += ["--config", str(GUNICORN_CONF)]
        else:
            argv += ["--access-logformat", ACCESS_LOG_FORMAT]
        argv += [
            "--bind",
            f"fd://{fd}",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--access-logfile",
            "-",
            "--error-logfile",
            "-",
            "--graceful-timeout",
            "5",
            # No planned recycling: tests compare worker PIDs to prove none died, and a
            # burst of a few thousand requests would otherwise hit max_requests (2000).
            "--max-requests",
            "0",
            "--control-socket",  # gunicorn's default is one path per user, shared
            str(self.system_env.root / f"gunicorn-{self.port}.ctl"),
            "--pythonpath",
            str(REPO),
            "wsgi:app",
        ]
        self._spawn(argv, pass_fds=(fd,))
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        def ready() -> bool:
            assert self.alive(), f"gunicorn exited; see {self.log}"
            try:
                return get(self.url("/readyz"), timeout=2)[0] == 200
            except OSError:
                return False

        wait_for(ready, timeout, f"gunicorn not ready; see {self.log}", pause=0.1)

    def worker_pids(self) -> list[int]:
        """The master's children."""
        if not self.alive():
            return []
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in path.read_text().split()]

    def kill_worker(self, sig: int = signal.SIGKILL) -> int:
        """Kill one worker (the master starts another); return its pid."""
        pid = self.worker_pids()[0]
        os.kill(pid, sig)
        return pid

    def wait_workers(self, timeout: float = 30) -> None:
        """Wait until the master has its full set of workers again, and they answer."""
        wait_for(lambda: len(self.worker_pids()) >= self.workers, timeout, "workers not back")
        self.wait_ready(timeout)

    def close(self) -> None:
        self.stop()
        self.sock.close()


class BotProcess(_Process):
    """`tipline bot` (long polling) against tests/fake_telegram.py's FakeTelegram."""

    name = "bot"

    def __init__(self, system_env: SystemEnv, fake_telegram, *, extra_env: dict | None = None):
        env = {
            "TELEGRAM_BOT_TOKEN": fake_telegram.token,
            "TELEGRAM_API_BASE_URL": fake_telegram.api_base_url,
            "TELEGRAM_FILE_BASE_URL": fake_telegram.file_base_url,
            **(extra_env or {}),
        }
        super().__init__(system_env, env, None)
        self.telegram = fake_telegram
        canaries.plant("bot token", fake_telegram.token)

    def start(self, timeout: float = 30) -> BotProcess:
        """Start the bot and wait for its "bot started" line."""
        self._spawn([str(TIPLINE), "bot"])

        def started() -> bool:
            assert self.alive(), f"the bot exited; see {self.log}"
            return "bot started" in self.output()

        wait_for(started, timeout, f"the bot did not start; see {self.log}")
        return self

    def wait_dead(self, timeout: float = 20) -> int:
        """Wait for the process to die (a fault point fired) and return its exit status."""
        wait_for(lambda: not self.alive(), timeout, "the bot is still alive")
        return self.proc.returncode


# --- clients ---------------------------------------------------------------------------------


def _multipart(fields: dict, photos) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + str(value).encode()
            + b"\r\n"
        )
    for i, photo in enumerate(photos):
        name, data = photo if isinstance(photo, tuple) else (f"photo{i}.jpg", photo)
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="photos"; '
            f'filename="{name}"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: dict | None = None,
    timeout: float = 10,
) -> tuple[int, bytes, dict]:
    """One HTTP request on a fresh connection, with the canary client headers."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(
            method, target, body=body, headers={**canaries.CLIENT_HEADERS, **(headers or {})}
        )
        response = conn.getresponse()
        data = response.read()
        head = {k.lower(): v for k, v in response.getheaders()}
        cookies = response.headers.get_all("Set-Cookie") or []
        head["set-cookie"] = "\n".join(cookies)  # one per line, not folded with commas
        return response.status, data, head
    finally:
        conn.close()


def get(url: str, *, headers: dict | None = None, timeout: float = 10):
    """GET → (status, json-or-None, headers)."""
    status, data, head = request("GET", url, headers=headers, timeout=timeout)
    return status, _json(data), head


def _json(data: bytes):
    try:
        return json.loads(data)
    except ValueError:
        return None


def post_tip(
    base_url: str,
    *,
    fields: dict,
    photos=(),
    key: str | None = None,
    token: str | None = None,
    timeout: float = 10,
    headers: dict | None = None,
) -> tuple[int, dict | None, dict]:
    """POST /api/v1/tips (multipart when there are photos) → (status, json-or-None, headers).

    Connection errors (a killed worker, a dropped response) raise OSError: the
    caller decides whether to retry, with the same key.
    """
    extra = dict(headers or {})
    if key:
        extra["Idempotency-Key"] = key
    if token:
        extra["Authorization"] = f"Bearer {token}"
    if photos:
        body, content_type = _multipart(fields, photos)
    else:
        body, content_type = json.dumps(fields).encode(), "application/json"
    extra["Content-Type"] = content_type
    status, data, head = request(
        "POST", base_url.rstrip("/") + "/api/v1/tips", body=body, headers=extra, timeout=timeout
    )
    return status, _json(data), head


def staff_token(system_env: SystemEnv, name: str, role: str = "admin") -> str:
    """A new staff user's API token (the CLI shows it once, so its output is not logged)."""
    system_env.run_cli("users", "create", name, "--role", role)
    return system_env.run_cli("users", "token", name, secret=True).stdout.strip()


def reporter_token(system_env: SystemEnv, base_url: str, role: str = "volunteer") -> str:
    """A new reporter's device token: an invite from the CLI, redeemed over the API."""
    invite = system_env.run_cli("invites", "create", "--role", role, secret=True).stdout.split()[0]
    status, body, _ = request(
        "POST",
        base_url.rstrip("/") + "/api/v1/reporters",
        body=json.dumps({"invite": invite}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert status == 201, body
    return json.loads(body)["token"]


RETRYABLE = (OSError, http.client.HTTPException)


def submit_until_acknowledged(
    base_url: str,
    *,
    fields: dict,
    photos=(),
    key: str,
    attempts: int = 20,
    pause: float = 0.2,
    timeout: float = 10,
) -> tuple[dict, int]:
    """Send the tip until it is acknowledged (201), as a phone would; return (body, tries).

    Retries on connection errors and on 5xx (503 honours a short Retry-After); a 4xx
    other than 429 is a failure of the test.
    """
    for attempt in range(1, attempts + 1):
        try:
            status, body, head = post_tip(
                base_url, fields=fields, photos=photos, key=key, timeout=timeout
            )
        except RETRYABLE:
            time.sleep(pause)
            continue
        if status in (200, 201):
            return body, attempt
        if status != 429 and status < 500:
            raise AssertionError(f"tip refused: {status} {body}")
        time.sleep(min(float(head.get("retry-after") or pause), 2.0))
    raise AssertionError(f"tip not acknowledged after {attempts} attempts")


def noise_jpeg(width: int = 320, height: int = 240) -> bytes:
    """A photo no other test sends (random pixels): its stored files are its own."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buf, "JPEG")
    return buf.getvalue()


def tip_by_description(system_env: SystemEnv, description: str) -> list[dict]:
    """The tips stored with exactly this text, with their photo keys."""
    with system_env._engine.connect() as conn:
        tips = conn.execute(
            text("SELECT id, ref FROM tips WHERE description = :d ORDER BY id"), {"d": description}
        ).all()
        out = []
        for tip_id, ref in tips:
            keys = conn.execute(
                text("SELECT derivative_key, thumbnail_key FROM photos WHERE tip_id = :t"),
                {"t": tip_id},
            ).all()
            out.append({"ref": ref, "photos": [tuple(k) for k in keys]})
        return out


def record_totals(env: SystemEnv) -> None:
    """Put what is in the database and on disk into the summary, once.

    The retention test calls it before it deletes old tips (their absence would look
    like loss); the session's end calls it otherwise.
    """
    if tally.counts().get("tips present"):
        return
    counts = env.counts()
    tally.put("tips present", counts["tips"])
    tally.put("photo rows", counts["photos"])
    # Rows share files (content-addressed: the same bytes are stored once), so the
    # counts differ; what must hold is that every referenced key has its file.
    env.sweep()
    tally.put("photo files", len(env.media_files()))
    orphans, missing = env.files_and_rows_agree()
    tally.put("media files without a row (after sweep)", len(orphans))
    tally.put("media keys without a file", len(missing))
    tally.put(
        "messages queued",
        env.scalar("SELECT count(*) FROM outbox WHERE recipient_kind IN ('reporter', 'staff')"),
    )
    # Queued is not all sendable: staff without a linked chat fail at once, and rows queued
    # while no bot ran stay pending. Each is counted, so none is unaccounted for.
    for status in ("sent", "failed", "pending"):
        tally.put(
            f"outbox rows {status}",
            env.scalar(
                "SELECT count(*) FROM outbox WHERE status = :s "
                "AND recipient_kind IN ('reporter', 'staff')",
                s=status,
            ),
        )
