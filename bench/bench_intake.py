"""Text tips through POST /api/v1/tips under gunicorn, against a bare insert endpoint.

Both servers run with the same gunicorn settings on the same database kind; the
load comes from wrk (Debian package) when present, else from a Python client.
Prints medians of several alternating rounds and the ratios QUALITY.md targets.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.databases import temporary_schema
from bench.report import PG_URL, ROOT, compare, median, save
from bench.servers import BIN, free_port, prepare, start_gunicorn, stop

# Realistic traffic (issue 8): 360 drivers and volunteers spread over the 30 × 20 km demo
# city, eleven categories with their rough share of real tips, and about one tip in twenty
# a genuine duplicate (same category, within ~50 m of one of the last 50 tips). Seeded, so
# every run sends the same tips; the wrk script draws from the same distribution.
SOUTH, NORTH, WEST, EAST = 40.55, 40.75, 122.35, 122.65
CATEGORIES = [
    ("theft", 30, "电动车电瓶被盗 battery stolen"),
    ("suspicious", 15, "可疑人员在小区徘徊 someone trying car doors"),
    ("traffic", 14, "路口信号灯故障 traffic light out"),
    ("dispute", 10, "商户与顾客争吵 shouting match at a shop"),
    ("public_facility", 8, "井盖缺失 manhole cover missing"),
    ("fraud", 6, "冒充客服电话诈骗 fake support call"),
    ("fire_hazard", 5, "楼道堆放杂物 corridor blocked with boxes"),
    ("robbery_violence", 4, "路边有人打架 fight by the road"),
    ("drugs_gambling", 3, "棋牌室疑似赌博 gambling in a card room"),
    ("missing_person", 2, "老人走失 elderly man lost"),
    ("other", 3, "其他情况 something else"),
]
DUPLICATE_SHARE = 0.05
DUPLICATE_LOOKBACK = 50
DUPLICATE_JITTER = 0.0004  # degrees, ~45 m north-south


def tip_body(n: int) -> dict:
    """The n-th tip of the seeded stream: its own text, category and place in the demo city."""
    rng = random.Random(n)
    if n > DUPLICATE_LOOKBACK and rng.random() < DUPLICATE_SHARE:
        earlier = tip_body(n - rng.randint(1, DUPLICATE_LOOKBACK))
        category, lat, lon = earlier["category"], earlier["latitude"], earlier["longitude"]
        lat += rng.uniform(-DUPLICATE_JITTER, DUPLICATE_JITTER)
        lon += rng.uniform(-DUPLICATE_JITTER, DUPLICATE_JITTER)
        text = next(t for c, _, t in CATEGORIES if c == category)
    else:
        category, _, text = rng.choices(CATEGORIES, weights=[w for _, w, _ in CATEGORIES])[0]
        lat, lon = rng.uniform(SOUTH, NORTH), rng.uniform(WEST, EAST)
    return {
        "category": category,
        "description": f"{text} #{n}",
        "latitude": round(lat, 6),
        "longitude": round(lon, 6),
        "accuracy_m": rng.choice([5, 8, 12, 20, 35]),
    }


def _wrk_script() -> str:
    """The wrk request generator: the same distribution as tip_body, seeded per wrk thread."""
    cats = ", ".join(f'{{"{c}", {w}, "{t}"}}' for c, w, t in CATEGORIES)
    return (
        WRK_SCRIPT.replace("@CATS@", cats)
        .replace("@BOX@", f"{SOUTH}, {NORTH}, {WEST}, {EAST}")
        .replace("@DUP@", f"{DUPLICATE_SHARE}, {DUPLICATE_LOOKBACK}, {DUPLICATE_JITTER}")
    )


# Each request is a different tip: a benchmark of one tip sent again and again would
# measure the duplicate detector, not intake.
WRK_SCRIPT = """
local cats = {@CATS@}
local south, north, west, east = @BOX@
local dup_share, lookback, jitter = @DUP@
local total = 0
for _, c in ipairs(cats) do total = total + c[2] end
local counter = 0
setup = function(thread)
  counter = counter + 1
  thread:set("tid", counter)
end
local n, recent = 0, {}
init = function(args)
  math.randomseed(7919 * tid)
  n = tid * 10000000
end
local function pick()
  local r = math.random() * total
  for _, c in ipairs(cats) do
    r = r - c[2]
    if r <= 0 then return c end
  end
  return cats[#cats]
end
local accuracies = {5, 8, 12, 20, 35}
request = function()
  n = n + 1
  local cat, lat, lon
  if #recent >= lookback and math.random() < dup_share then
    local e = recent[math.random(#recent)]
    cat = e[1]
    lat = e[2] + (math.random() * 2 - 1) * jitter
    lon = e[3] + (math.random() * 2 - 1) * jitter
  else
    cat = pick()
    lat = south + math.random() * (north - south)
    lon = west + math.random() * (east - west)
  end
  table.insert(recent, {cat, lat, lon})
  if #recent > lookback then table.remove(recent, 1) end
  local body = string.format(
    '{"category": "%s", "description": "%s #%d", '
    .. '"latitude": %.6f, "longitude": %.6f, "accuracy_m": %d}',
    cat[1], cat[3], n, lat, lon, accuracies[math.random(#accuracies)])
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""


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
    until = time.time() + seconds
    host, port = url.split("//")[1].split("/")[0].split(":")

    def worker():
        conn = http.client.HTTPConnection(host, int(port))
        mine = []
        while time.time() < until:
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


def reporter_tokens(env: dict, base_url: str, count: int) -> list[str]:
    """Sign in `count` volunteers (an invite each, redeemed through the API): their tokens."""
    codes = subprocess.run(
        [str(BIN / "tipline"), "invites", "create", "--role", "volunteer", "--count", str(count)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    tokens = []
    for code in codes:
        req = urllib.request.Request(  # noqa: S310 (loopback only)
            f"{base_url}/api/v1/reporters",
            data=json.dumps({"invite": code}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req) as resp:  # noqa: S310 (loopback only)
            tokens.append(json.load(resp)["token"])
    return tokens


def photo_stream(base_url: str, tokens: list[str], photo: bytes, stop: threading.Event) -> dict:
    """Post signed-in photo tips back to back until stopped, each token in turn."""
    host, port = base_url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port))
    sent = refused = 0
    for n in itertools.count():
        if stop.is_set():
            break
        boundary = f"bench{n}"
        fields = tip_body(5_000_000 + n)
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
            for k, v in fields.items()
        ]
        body = (
            "".join(parts).encode()
            + f'--{boundary}\r\nContent-Disposition: form-data; name="photos"; '
            f'filename="p.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
            + photo
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Authorization": f"Bearer {tokens[n % len(tokens)]}",
        }
        conn.request("POST", "/api/v1/tips", body, headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status == 201:
            sent += 1
        else:
            refused += 1
    conn.close()
    return {"sent": sent, "refused": refused}


def measure_mixed(args, tmp: Path, script: Path) -> dict[str, list]:
    """Text tips under wrk with and without signed-in photo tips arriving alongside (SQLite).

    The photo tips (the form's size: 2016 × 1512) are decoded by the same two workers; a
    text tip then waits for the CPU either way, and for the writer lock too if a photo tip
    held it while decoding. Rounds alternate: text alone, text beside the photo stream.
    """
    from bench.bench_photos import make_photo

    env = prepare(f"sqlite:///{tmp / 'mixed.db'}", tmp / "media-mixed")
    port = free_port()
    proc = start_gunicorn("wsgi:app", env, port, workers=args.workers)
    base_url = f"http://127.0.0.1:{port}"
    photo = make_photo(2016, 1512)
    results: dict[str, list] = {"alone": [], "beside_photos": [], "photos": []}
    try:
        # 10 tips a minute per reporter: enough of them that no photo tip is refused.
        tokens = reporter_tokens(env, base_url, 100)
        for r in range(args.rounds):
            for name in ("alone", "beside_photos") if r % 2 == 0 else ("beside_photos", "alone"):
                halt = threading.Event()
                with ThreadPoolExecutor(max_workers=1) as pool:
                    stream = None
                    if name == "beside_photos":
                        stream = pool.submit(photo_stream, base_url, tokens, photo, halt)
                        time.sleep(0.5)  # the stream under way before the text load starts
                    rps, p99 = load_wrk(f"{base_url}/api/v1/tips", args.seconds, 6, script)
                    halt.set()
                    if stream is not None:
                        results["photos"].append(stream.result())
                results[name].append((rps, p99))
                print(f"mixed round {r + 1} {name:14s} {rps:8.1f} req/s  p99 {p99:7.1f} ms")
    finally:
        stop(proc)
    return results


def measure(db: str, args, tmp: Path, script: Path, use_wrk: bool) -> dict[str, list]:
    """Alternate rounds of load on the Tipline and bare servers; per-round (req/s, p99 ms)."""
    with ExitStack() as stack:
        if db == "sqlite":
            tip_url, bare_url = f"sqlite:///{tmp / 'tips.db'}", f"sqlite:///{tmp / 'bare.db'}"
        else:
            schema = f"bench_intake_{uuid.uuid4().hex[:8]}"
            tip_url = bare_url = stack.enter_context(temporary_schema(schema, args.pg_url))
        env = prepare(tip_url, tmp / f"media-{db}")
        bare_env = {**env, "DATABASE_URL": bare_url}
        results: dict[str, list] = {"tipline": [], "bare": []}
        procs = []
        try:
            for name, app, e in (
                ("tipline", "wsgi:app", env),
                ("bare", "bench.bare_app:app", bare_env),
            ):
                port = free_port()
                procs.append((name, port, start_gunicorn(app, e, port, workers=args.workers)))
            for r in range(args.rounds):
                # Alternate which server goes first, so neither always follows the other.
                order = procs if r % 2 == 0 else procs[::-1]
                for name, port, _ in order:
                    url = f"http://127.0.0.1:{port}/api/v1/tips"
                    rps, p99 = (
                        load_wrk(url, args.seconds, args.connections, script)
                        if use_wrk
                        else load_python(url, args.seconds, args.connections)
                    )
                    results[name].append((rps, p99))
                    print(
                        f"{db} round {r + 1} {name:8s} {rps:8.1f} req/s  p99 {p99:7.1f} ms",
                        flush=True,
                    )
        finally:
            for _, _, proc in procs:
                stop(proc)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--db", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--no-mixed",
        action="store_true",
        help="skip the text-beside-photo-tips row (SQLite, needs wrk)",
    )
    args = parser.parse_args()

    use_wrk = shutil.which("wrk") is not None
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="tipline-bench-"))
    try:
        script = tmp / "post.lua"
        script.write_text(_wrk_script())
        for db in args.db:
            res = measure(db, args, tmp, script, use_wrk)
            runs = {
                "tipline_rps": [x[0] for x in res["tipline"]],
                "bare_rps": [x[0] for x in res["bare"]],
                "tipline_p99_ms": [x[1] for x in res["tipline"]],
                "bare_p99_ms": [x[1] for x in res["bare"]],
            }
            rows.append(
                compare(
                    f"text tip intake, {db}: throughput",
                    median(runs["tipline_rps"]),
                    median(runs["bare_rps"]),
                    "req/s",
                    "bare insert",
                    goal=(">=", 0.6),
                    runs={k: v for k, v in runs.items() if k.endswith("rps")},
                )
            )
            rows.append(
                compare(
                    f"text tip intake, {db}: p99 latency",
                    median(runs["tipline_p99_ms"]),
                    median(runs["bare_p99_ms"]),
                    "ms",
                    "bare insert",
                    goal=("<=", 3.0),
                    runs={k: v for k, v in runs.items() if k.endswith("ms")},
                )
            )
        if use_wrk and not args.no_mixed:
            mixed = measure_mixed(args, tmp, script)
            sent = sum(p["sent"] for p in mixed["photos"])
            refused = sum(p["refused"] for p in mixed["photos"])
            rows.append(
                compare(
                    "text tips beside signed-in photo tips, sqlite: p99 latency",
                    median([x[1] for x in mixed["beside_photos"]]),
                    median([x[1] for x in mixed["alone"]]),
                    "ms",
                    "text tips alone",
                    runs={
                        "beside_photos_p99_ms": [x[1] for x in mixed["beside_photos"]],
                        "alone_p99_ms": [x[1] for x in mixed["alone"]],
                        "beside_photos_rps": [x[0] for x in mixed["beside_photos"]],
                        "alone_rps": [x[0] for x in mixed["alone"]],
                        "photo_tips_stored": [sent],
                        "photo_tips_refused": [refused],
                    },
                )
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    save(
        "intake",
        f"1. Intake: POST /api/v1/tips vs a bare one-row insert (gunicorn {args.workers} "
        f"workers, {args.connections} connections, {'wrk' if use_wrk else 'Python client'}, "
        f"medians of {args.rounds} × {args.seconds} s)",
        rows,
        settings=vars(args) | {"load": "wrk" if use_wrk else "python"},
    )


if __name__ == "__main__":
    main()
