"""gunicorn settings for Tipline's web process (`gunicorn -c deploy/gunicorn.conf.py wsgi:app`).

Every value can be overridden from the environment (GUNICORN_*), so one file serves
a 2-core box and a 16-core one. Sizing: see docs/deployment.md.
"""

import multiprocessing
import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


bind = os.environ.get("GUNICORN_BIND") or f"127.0.0.1:{os.environ.get('PORT') or 8000}"

# Intake is CPU-bound (photo decode, argon2 sign-ins) and I/O-bound (database, S3) in
# turns: one process per core plus one, each with a few threads for the I/O waits.
# The PostgreSQL pool of each process must cover its threads: TIPLINE_DB_POOL_SIZE
# >= threads (the web app sizes its engine from Settings.db_pool_size).
workers = _int("GUNICORN_WORKERS", multiprocessing.cpu_count() + 1)
threads = _int("GUNICORN_THREADS", 4)
worker_class = "gthread"

# A photo upload over a slow phone link takes a while; a stuck request must not hold
# a worker for ever. graceful_timeout lets in-flight tips commit on reload/shutdown.
timeout = _int("GUNICORN_TIMEOUT", 60)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = 5

# Recycle workers now and then (Pillow and the decoders fragment memory); jitter keeps
# them from all restarting at once.
max_requests = _int("GUNICORN_MAX_REQUESTS", 2000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 200)

# The heartbeat file lives in RAM: on a disk-backed /tmp a slow disk can make the
# arbiter think a healthy worker hung and kill it mid-upload.
worker_tmp_dir = "/dev/shm"  # noqa: S108 (a RAM file system, gunicorn's own advice)

# No preload: create_app opens the database pool, the Redis client and the S3 client;
# forked copies of those sockets would be shared between workers. Each worker builds
# its own app (≈ 1 s at start-up), and max_requests restarts stay independent. The
# grid index is built lazily per process on first lookup and kept in step by version.
preload_app = False

# Access log without client IPs or query strings (informant protection): method, path
# without the query, status, response size, duration in ms. %(U)s is the path only.
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or "-"
access_log_format = "%(m)s %(U)s %(s)s %(B)s %(M)sms"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL") or "info"
# Behind a load balancer that sets X-Forwarded-*: trust it only from these addresses.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS") or "127.0.0.1"
# Uploads are capped by the app (MAX_CONTENT_LENGTH → 413 before the body is read);
# these keep header abuse out before the app sees it.
limit_request_line = 8190
limit_request_fields = 100
