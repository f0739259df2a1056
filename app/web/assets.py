"""The form's offline shell: which files the service worker caches, under one content version."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from flask import url_for

_HERE = Path(__file__).resolve().parent
WEB_STATIC = _HERE / "static"
LEAFLET = _HERE.parent / "static" / "vendor" / "leaflet"
# Leaflet is vendored beside the admin's maps; the form uses the same copy.
LEAFLET_FILES = (
    "leaflet.js",
    "leaflet.css",
    "images/marker-icon.png",
    "images/marker-icon-2x.png",
    "images/marker-shadow.png",
)


def _web_files() -> list[str]:
    return sorted(
        p.relative_to(WEB_STATIC).as_posix()
        for p in WEB_STATIC.rglob("*")
        if p.is_file() and p.name != "sw.js"
    )


@cache
def version() -> str:
    """Hash every shell file, so any change makes a new cache and a new worker."""
    digest = hashlib.sha256()
    for name in _web_files():
        digest.update(name.encode() + b"\0" + (WEB_STATIC / name).read_bytes())
    for name in LEAFLET_FILES:
        path = LEAFLET / name
        if path.exists():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    digest.update((_HERE / "templates" / "web" / "sw.js").read_bytes())
    return digest.hexdigest()[:12]


def web_url(filename: str) -> str:
    """URL of a form asset, versioned so the worker's cache and the browser never go stale."""
    return url_for("web.static", filename=filename, v=version())


def leaflet_url(filename: str) -> str:
    """URL of a vendored Leaflet file; images unversioned, as Leaflet's CSS names them."""
    if filename.startswith("images/"):
        return url_for("static", filename=f"vendor/leaflet/{filename}")
    return url_for("static", filename=f"vendor/leaflet/{filename}", v=version())


def shell_urls() -> list[str]:
    """Everything the form needs to open offline: pages, scripts, styles, icons, Leaflet."""
    urls = [url_for("web.report"), url_for("web.status"), url_for("web.manifest")]
    urls += [web_url(name) for name in _web_files()]
    urls += [leaflet_url(name) for name in LEAFLET_FILES if (LEAFLET / name).exists()]
    return urls
