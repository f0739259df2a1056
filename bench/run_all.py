"""Run every benchmark in turn, then print all their tables together (what `make bench` runs).

Run: .venv/bin/python bench/run_all.py [--only photos grids ...] [--markdown]

Each script writes bench/results/<name>.json; this one adds summary.json and
summary.txt (all tables, each script's duration, the total). The 1,000,000-tip
database of bench_queue.py (tipline_bench_queue) is kept between runs and reused
while its tip count and schema are unchanged: the first run loads it, later ones
skip the load. A script that crashes is reported and the others still run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import RESULTS, ROOT, format_table, git_commit, load, machine, markdown_table

# name (= results/<name>.json), script, arguments: sized so the whole run fits in 15 minutes.
BENCHES = (
    ("intake", "bench_intake.py", ["--rounds", "3", "--seconds", "8"]),
    ("photos", "bench_photos.py", ["--runs", "9"]),
    ("grids", "bench_grids.py", ["--runs", "7"]),
    ("queue", "bench_queue.py", ["--tips", "1000000", "--runs", "30"]),
    ("bot", "bench_bot.py", ["--rounds", "3"]),
    ("memory", "bench_memory.py", ["--rounds", "3"]),
)
BUDGET_S = 15 * 60


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=[b[0] for b in BENCHES])
    parser.add_argument(
        "--markdown", action="store_true", help="run nothing: print the saved results as Markdown"
    )
    args = parser.parse_args()
    if args.markdown:
        for name, _, _ in BENCHES:
            if (RESULTS / f"{name}.json").exists():
                title, rows, doc = load(name)
                load_1m = doc["machine"].get("load_average_1m")
                print(f"**{title}** ({doc['finished_at']}, load average {load_1m})\n")
                print(markdown_table(rows) + "\n")
        return 0

    started = time.monotonic()
    durations: dict[str, float] = {}
    failed: list[str] = []
    for name, script, extra in BENCHES:
        if args.only and name not in args.only:
            continue
        path = RESULTS / f"{name}.json"
        t0 = time.monotonic()
        for attempt in (1, 2):
            print(f"\n===== {name}: bench/{script} {' '.join(extra)}", flush=True)
            before = path.stat().st_mtime if path.exists() else 0
            command = [sys.executable, str(ROOT / "bench" / script), *extra]
            done = subprocess.run(command, cwd=ROOT, check=False)
            # A script's exit status may flag a missed target; only a missing result is a failure.
            if path.exists() and path.stat().st_mtime > before:
                break
            print(f"!!!!! {name} wrote no result (exit status {done.returncode})", flush=True)
            if attempt == 1:
                # The machine is shared: a database restart by someone else's test is one-off.
                print(f"!!!!! retrying {name} once in 10 s", flush=True)
                time.sleep(10)
            else:
                failed.append(name)
        durations[name] = time.monotonic() - t0
    total = time.monotonic() - started

    tables = []
    for name, _, _ in BENCHES:
        if name in durations and name not in failed:
            title, rows, _ = load(name)
            tables.append(format_table(f"{title}  [{durations[name]:.0f} s]", rows))
    misses = [
        r.name for name in durations if name not in failed for r in load(name)[1] if r.ok is False
    ]
    footer = [
        f"total {total / 60:.1f} min "
        f"({'within' if total <= BUDGET_S else 'OVER'} the 15 min budget)"
        + (f"; no result from: {', '.join(failed)}" if failed else ""),
        f"targets missed: {len(misses)}" + (f" ({'; '.join(misses)})" if misses else ""),
    ]
    text = "\n\n".join(tables) + "\n\n" + "\n".join(footer) + "\n"
    print("\n\n========== all benchmarks ==========\n\n" + text)
    if not args.only:
        (RESULTS / "summary.txt").write_text(text)
        summary = {
            "durations_s": {k: round(v, 1) for k, v in durations.items()},
            "total_s": round(total, 1),
            "failed": failed,
            "missed": misses,
            "machine": machine(),
            "commit": git_commit(),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (RESULTS / "summary.json").write_text(
            json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
