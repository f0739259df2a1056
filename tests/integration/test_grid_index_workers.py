"""The grid index across worker processes: a layer imported elsewhere reaches every worker.

Each process caches the active layer's row for refcache.DEFAULT_TTL seconds and keys
its STRtree router on (database, layer id, version, imported_at): an import by another
process (here: the real `tipline grids import` in a subprocess) is picked up by this
one as soon as the cached row is re-read, with a router built for the new version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from app import refcache
from app.grids.services import route_point
from tests.layers import centre_of, small_layer


def renamed_layer() -> dict:
    """The small layer's geometry with new grid codes (H1..H4), as a re-drawn layer would be."""
    layer = small_layer()
    for feature in layer["features"]:
        props = feature["properties"]
        if props["level"] == "grid":
            props["code"] = "H" + props["code"][1:]
    return layer


def test_an_import_by_another_process_reaches_this_worker(seeded, settings, tmp_path, monkeypatch):
    lat, lon = centre_of("G1")
    with seeded() as session:
        before = route_point(session, lat, lon, None)
    assert (before.layer_version, before.code) == (1, "G1")

    layer_file = tmp_path / "redrawn.geojson"
    layer_file.write_text(json.dumps(renamed_layer()), encoding="utf-8")
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "TIPLINE_SECRET_KEY": "grid-test-key",
        "TIPLINE_MEDIA_DIR": str(tmp_path / "media"),
    }
    tipline = Path(sys.executable).with_name("tipline")
    done = subprocess.run(
        [str(tipline), "grids", "import", str(layer_file), "--replace"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "imported layer version 2" in done.stdout

    # Once this process's cached row is older than the ttl, the next lookup sees version 2.
    real = time.monotonic
    monkeypatch.setattr(refcache.time, "monotonic", lambda: real() + refcache.DEFAULT_TTL + 1)
    with seeded() as session:
        after = route_point(session, lat, lon, None)
    assert (after.layer_version, after.code) == (2, "H1")
