"""Text tips through POST /api/v1/tips under gunicorn, against a bare insert endpoint.

Both servers run with the same gunicorn settings on the same database kind; the
load comes from wrk (Debian package) when present, else from a Python client.
Prints medians of several alternating rounds and the ratios QUALITY.md targets.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tip_body(n: int) -> dict:
    """The n-th distinct tip: its own text and place in the demo city (as the wrk script)."""
    return {
        **BODY,
        "description": f"{BODY['description']} #{n}",
        "latitude": 40.56 + (n % 181) * 0.001,
        "longitude": 122.36 + (n % 283) * 0.001,
    }


BODY = {
    "category": "theft",
    "description": "电动车电瓶被盗 battery stolen",
    "latitude": 40.6406,
    "longitude": 122.5052,
    "accuracy_m": 12,
}
# Each request is a different tip (text and place across the demo city): a benchmark of
# one tip sent again and again would measure the duplicate detector, not intake.
WRK_SCRIPT = """
local n = 0
request = function()
  n = n + 1
  local body = string.format(
    '{"category": "theft", "description": "电动车电瓶被盗 battery stolen #%d", '
    .. '"latitude": %.5f, "longitude": %.5f, "accuracy_m": 12}',
    n, 40.56 + (n % 181) * 0.001, 122.36 + (n % 283) * 0.001)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)  # noqa: S310 (loopback only)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server at {url} did not start")


def start(app: str, env: dict, port: int, workers: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            "1",
            "--log-level",
            "warning",
            app,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def load_wrk(url: str, seconds: int, connections: int, script: Path) -> tuple[float, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{non2xx.group(1)} failed requests at {url}")
    return rps, float(p99.group(1)) * scale


def load_python(url: str, seconds: int, connections: int) -> tuple[float, float]:
    import http.client
    import threading

    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.time() + seconds
    host, port = url.split("//")[1].split("/")[0].split(":")

    def worker():
        conn = http.client.HTTPConnection(host, int(port))
        mine = []
        while time.time() < stop:
            n = len(mine) + 1000 * threading.get_ident() % 100_000
            payload = json.dumps(tip_body(n)).encode()
            t0 = time.perf_counter()
            conn.request("POST", "/api/v1/tips", payload, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 201:
                raise RuntimeError(f"status {resp.status}")
            mine.append((time.perf_counter() - t0) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    return len(latencies) / seconds, latencies[int(len(latencies) * 0.99) - 1]


def prepare(db_url: str, media: Path) -> dict:
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "TIPLINE_SECRET_KEY": "bench-secret",
        "TIPLINE_MEDIA_DIR": str(media),
    }
    subprocess.run(
        [str(BIN / "tipline"), "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    subprocess.run(
        [str(BIN / "tipline"), "demo", "seed"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tipline-bench-"))
    if args.db == "sqlite":
        tip_url, bare_url = f"sqlite:///{tmp / 'tips.db'}", f"sqlite:///{tmp / 'bare.db'}"
    else:
        import psycopg

        schema = f"bench_{os.getpid()}"
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.execute(f"CREATE SCHEMA {schema}")
        tip_url = bare_url = f"{args.pg_url}?options=-csearch_path%3D{schema}"
    env = prepare(tip_url, tmp / "media")
    bare_env = {**env, "DATABASE_URL": bare_url}
    script = tmp / "post.lua"
    script.write_text(WRK_SCRIPT)
    use_wrk = shutil.which("wrk") is not None
    results: dict[str, list[tuple[float, float]]] = {"tipline": [], "bare": []}
    procs = []
    try:
        for name, app, e in (
            ("tipline", "wsgi:app", env),
            ("bare", "bench.bare_app:app", bare_env),
        ):
            port = free_port()
            procs.append((name, port, start(app, e, port, args.workers)))
        for _, port, _ in procs:
            wait_ready(f"http://127.0.0.1:{port}/healthz")
        for r in range(args.rounds):
            for name, port, _ in procs:
                url = f"http://127.0.0.1:{port}/api/v1/tips"
                rps, p99 = (
                    load_wrk(url, args.seconds, args.connections, script)
                    if use_wrk
                    else load_python(url, args.seconds, args.connections)
                )
                results[name].append((rps, p99))
                print(f"round {r + 1} {name:8s} {rps:8.1f} req/s  p99 {p99:7.1f} ms", flush=True)
    finally:
        for _, _, proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
        if args.db == "postgresql":
            with psycopg.connect(args.pg_url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    med = {
        k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
        for k, v in results.items()
    }
    ratio = med["tipline"][0] / med["bare"][0]
    p99_ratio = med["tipline"][1] / med["bare"][1]
    print(
        f"\n{args.db}: load from {'wrk' if use_wrk else 'python client'}, "
        f"{args.workers} gunicorn workers, {args.connections} connections"
    )
    print(f"  tipline  {med['tipline'][0]:8.1f} req/s  p99 {med['tipline'][1]:.1f} ms")
    print(f"  bare     {med['bare'][0]:8.1f} req/s  p99 {med['bare'][1]:.1f} ms")
    print(
        f"  throughput ratio {ratio:.2f} (target >= 0.6), p99 ratio {p99_ratio:.2f} (target <= 3)"
    )


if __name__ == "__main__":
    main()
