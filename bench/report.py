"""One table and one JSON format for every benchmark, so results line up side by side.

Each script builds Rows (Tipline beside its baseline or peer, the ratio, the target)
and calls `save(name, title, rows, ...)`: it prints the table and writes
bench/results/<name>.json with the figures, the runs behind each median, the
machine, the git commit and the time. bench/run_all.py reads the JSON back.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PG_URL = os.environ.get("TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Row:
    """One line of a table: Tipline's figure beside its baseline's, and the verdict."""

    name: str
    tipline: float
    unit: str
    baseline: float | None = None
    vs: str = ""  # what the baseline is: "bare insert", "PostGIS ST_Contains", ...
    ratio: float | None = None
    target: str = ""  # "≥ 0.6", "≤ 3× and ≤ 50 ms"; empty: for information
    ok: bool | None = None  # None: no target on this row
    runs: dict[str, list[float]] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return "info" if self.ok is None else ("PASS" if self.ok else "MISS")


def _holds(value: float, op: str, goal: float) -> bool:
    return value <= goal if op == "<=" else value >= goal


def _sym(op: str) -> str:
    return "≤" if op == "<=" else "≥"


def compare(
    name: str,
    tipline: float,
    baseline: float,
    unit: str,
    vs: str,
    *,
    goal: tuple[str, float] | None = None,
    invert: bool = False,
    cap: float | None = None,
    runs: dict[str, list[float]] | None = None,
) -> Row:
    """A row whose ratio is tipline/baseline (baseline/tipline with invert: "× faster")."""
    ratio = (baseline / tipline if invert else tipline / baseline) if tipline and baseline else None
    parts, ok = [], None
    if goal is not None:
        op, value = goal
        parts.append(f"{_sym(op)} {value:g}×")
        ok = ratio is not None and _holds(ratio, op, value)
    if cap is not None:
        parts.append(f"≤ {cap:g} {unit}")
        ok = (True if ok is None else ok) and tipline <= cap
    return Row(name, tipline, unit, baseline, vs, ratio, " and ".join(parts), ok, runs or {})


def absolute(
    name: str,
    value: float,
    unit: str,
    goal: tuple[str, float] | None = None,
    *,
    baseline: float | None = None,
    vs: str = "",
    runs: dict[str, list[float]] | None = None,
) -> Row:
    """A row held to an absolute target (or none), with an optional baseline for context."""
    ratio = value / baseline if baseline else None
    if goal is None:
        return Row(name, value, unit, baseline, vs, ratio, "", None, runs or {})
    op, limit = goal
    return Row(
        name,
        value,
        unit,
        baseline,
        vs,
        ratio,
        f"{_sym(op)} {limit:g} {unit}".strip(),
        _holds(value, op, limit),
        runs or {},
    )


def median(values: list[float]) -> float:
    return statistics.median(values)


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or abs(value) >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"


def format_table(title: str, rows: list[Row]) -> str:
    """The rows as a fixed-width text table under a title."""
    head = ("row", "Tipline", "baseline / peer", "ratio", "target", "result")
    lines = [
        (
            r.name,
            f"{_num(r.tipline)} {r.unit}".strip(),
            f"{_num(r.baseline)} {r.unit} {r.vs}".strip() if r.baseline is not None else r.vs,
            "-" if r.ratio is None else f"{r.ratio:.2f}×",
            r.target or "-",
            r.verdict,
        )
        for r in rows
    ]
    widths = [max(len(x[i]) for x in [head, *lines]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [title, fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)


def markdown_table(rows: list[Row]) -> str:
    """The rows as a Markdown table (docs/performance.md is written from these)."""
    out = [
        "| row | Tipline | baseline / peer | ratio | target | result |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = f"{_num(r.baseline)} {r.unit} {r.vs}".strip() if r.baseline is not None else r.vs
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}×"
        cells = (r.name, f"{_num(r.tipline)} {r.unit}".strip(), base or "-", ratio, r.target or "-")
        out.append("| " + " | ".join(cells) + f" | **{r.verdict}** |")
    return "\n".join(out)


def _run(*cmd: str) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout or done.stderr).strip()


def git_commit() -> str:
    """HEAD's hash, with "+dirty" when the tree has uncommitted changes."""
    head = _run("git", "-C", str(ROOT), "rev-parse", "HEAD")
    dirty = _run("git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no")
    return head + ("+dirty" if dirty else "")


def _postgres_version() -> str:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]
    except Exception as exc:  # the figure is informative; a missing server is not an error here
        return f"unavailable ({type(exc).__name__})"


def machine() -> dict:
    """What the figures were measured on: CPU, memory, kernel and the versions that matter."""
    import PIL
    import pillow_heif
    import shapely
    import sqlalchemy
    from PIL import features

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _run("lscpu").splitlines()
            if line.startswith("Model name")
        ),
        platform.processor(),
    )
    mem_kb = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        # The machine is shared: the load when the figures were taken says how noisy they are.
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": _postgres_version(),
        "sqlalchemy": sqlalchemy.__version__,
        "pillow": PIL.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "pillow_heif": pillow_heif.__version__,
        "geos": ".".join(map(str, shapely.geos_version)),
        "wrk": _run("wrk", "--version").split(" [")[0] if shutil.which("wrk") else None,
        "imagemagick": " ".join(_run("/usr/bin/convert", "-version").split()[1:3])
        if os.access("/usr/bin/convert", os.X_OK)
        else None,
    }


def save(
    name: str,
    title: str,
    rows: list[Row],
    *,
    settings: dict | None = None,
    notes: list[str] | None = None,
) -> Path:
    """Print the table (and notes) and write bench/results/<name>.json."""
    print("\n" + format_table(title, rows), flush=True)
    for note in notes or []:
        print(f"note: {note}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    doc = {
        "benchmark": name,
        "title": title,
        "rows": [asdict(r) | {"verdict": r.verdict} for r in rows],
        "settings": settings or {},
        "notes": notes or [],
        "machine": machine(),
        "commit": git_commit(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return path


def load(name: str) -> tuple[str, list[Row], dict]:
    """Read bench/results/<name>.json back: the title, the rows and the whole document."""
    doc = json.loads((RESULTS / f"{name}.json").read_text())
    fields = Row.__dataclass_fields__
    rows = [Row(**{k: v for k, v in r.items() if k in fields}) for r in doc["rows"]]
    return doc["title"], rows, doc
