"""Peak memory of a gunicorn web worker under a burst of 12 MP photo uploads, against idle.

Run: .venv/bin/python bench/bench_memory.py [--uploads 20] [--rounds 3]

Each round starts a fresh server as `make run` does (2 workers × 4 threads, SQLite,
demo city), warms it with a few text tips, reads every worker's resident memory
(the idle baseline), then sends --uploads multipart POST /api/v1/tips, each with
a 12 MP phone JPEG, all at once. A sampler reads VmRSS of each worker every 10 ms
during the burst; VmHWM (the kernel's peak RSS) is read at the end. Every request
must be answered: 201, or 503 with Retry-After when the decoders are busy.
QUALITY.md: peak ≤ 300 MB. Medians over rounds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_photos import make_photo
from bench.report import absolute, median, save
from bench.servers import children, free_port, memory_kib, prepare, start_gunicorn, stop

TARGET_MB = 300.0
WORKERS, THREADS = 2, 4  # as `make run`


def multipart(photo: bytes, n: int) -> tuple[bytes, str]:
    """A form with the tip's fields and one photo file."""
    boundary = uuid.uuid4().hex
    fields = {
        "category": "suspicious",
        "description": f"burst upload #{n}",
        "latitude": f"{40.60 + n * 0.001:.4f}",
        "longitude": f"{122.45 + n * 0.001:.4f}",
    }
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="photos"; filename="p{n}.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n".encode()
        + photo
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def distinct(photo: bytes, n: int) -> bytes:
    """The same picture with a comment after SOI: other bytes (and hash), same pixels."""
    note = f"bench upload {n}".encode()
    return photo[:2] + b"\xff\xfe" + (len(note) + 2).to_bytes(2, "big") + note + photo[2:]


def post(port: int, body: bytes, ctype: str) -> tuple[int, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/api/v1/tips", body, {"Content-Type": ctype})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("Retry-After")
    finally:
        conn.close()


def one_round(env: dict, photo: bytes, uploads: int) -> dict:
    """A fresh server: idle RSS after warm-up, then the burst's sampled and kernel peaks."""
    port = free_port()
    server = start_gunicorn("wsgi:app", env, port, workers=WORKERS, threads=THREADS)
    try:
        text = json.dumps(
            {"category": "theft", "description": "warm-up", "latitude": 40.64, "longitude": 122.5}
        ).encode()
        for _ in range(8):  # both workers import and touch everything a text tip needs
            post(port, text, "application/json")
        time.sleep(0.5)
        workers = children(server.pid)
        idle = max(memory_kib(w).get("VmRSS", 0) for w in workers)
        sampled = {w: 0 for w in workers}
        done = threading.Event()

        def sample():
            while not done.is_set():
                for w in workers:
                    sampled[w] = max(sampled[w], memory_kib(w).get("VmRSS", 0))
                time.sleep(0.01)

        bodies = [multipart(distinct(photo, n), n) for n in range(uploads)]
        answers: list[tuple[int, str | None]] = []
        sampler = threading.Thread(target=sample)
        sampler.start()
        gate = threading.Barrier(uploads)

        def upload(body_ctype):
            gate.wait()
            answers.append(post(port, *body_ctype))

        threads = [threading.Thread(target=upload, args=(b,)) for b in bodies]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        burst_s = time.perf_counter() - started
        done.set()
        sampler.join()
        hwm = max(memory_kib(w).get("VmHWM", 0) for w in workers)
    finally:
        stop(server)
    codes = [c for c, _ in answers]
    return {
        "idle_mb": idle / 1024,
        "peak_mb": max(hwm, *sampled.values()) / 1024,
        "sampled_mb": max(sampled.values()) / 1024,
        "burst_s": burst_s,
        "created": codes.count(201),
        "busy": sum(1 for c, retry in answers if c == 503 and retry),
        "other": [c for c in codes if c not in (201, 503)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    photo = make_photo(4032, 3024)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        for r in range(args.rounds):
            # A fresh database and media directory per round: no duplicates from earlier ones.
            env = prepare(f"sqlite:///{tmp}/r{r}.db", Path(tmp) / f"media{r}")
            res = one_round(env, photo, args.uploads)
            rounds.append(res)
            print(
                f"round {r + 1}: idle {res['idle_mb']:.0f} MB, peak {res['peak_mb']:.0f} MB "
                f"(sampled {res['sampled_mb']:.0f}); {res['created']} created, {res['busy']} "
                f"503+Retry-After, other {res['other']}; burst {res['burst_s']:.1f} s",
                flush=True,
            )
    runs = {k: [r[k] for r in rounds] for k in ("idle_mb", "peak_mb", "burst_s")}
    answered = [r["created"] + r["busy"] for r in rounds]
    rows = [
        absolute(
            f"web worker peak RSS, {args.uploads} parallel 12 MP uploads",
            median(runs["peak_mb"]),
            "MB",
            ("<=", TARGET_MB),
            baseline=median(runs["idle_mb"]),
            vs="idle worker",
            runs=runs,
        ),
        absolute(
            f"uploads answered (201 or 503+Retry-After) of {args.uploads}, worst round",
            min(answered),
            "reqs",
            (">=", args.uploads),
            runs={"answered": answered, "created": [r["created"] for r in rounds]},
        ),
    ]
    save(
        "memory",
        f"6. Web worker memory: gunicorn {WORKERS} workers × {THREADS} threads, SQLite, "
        f"{args.uploads} parallel 12 MP JPEG uploads (medians of {args.rounds} rounds)",
        rows,
        settings=vars(args) | {"workers": WORKERS, "threads": THREADS},
        notes=[
            "peak: the larger of VmHWM and VmRSS sampled every 10 ms, the worst of the workers; "
            "idle: VmRSS after warm-up",
            f"created per round: {[r['created'] for r in rounds]}; "
            f"burst seconds: {[round(x, 1) for x in runs['burst_s']]}",
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
