"""Security headers on every response of the app: admin pages, API, form, health checks.

The Content-Security-Policy allows no inline script or style at all, so every
page keeps its JavaScript and CSS in static files; images may come from the
app, data: URLs and the configured map tile host only.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, request

from app.config import Settings
from app.grids.datum import CRS_NAMES, CRS_WGS84

# Paths whose answers must never be stored by a browser or proxy (personal data, tokens).
_NO_STORE_PREFIXES = ("/admin", "/api/")


def map_tiles(settings: Settings) -> tuple[str | None, str]:
    """Return the map tile URL template (None: blank background) and the tiles' datum."""
    datum = settings.map_tile_datum if settings.map_tile_datum in CRS_NAMES else CRS_WGS84
    return settings.map_tile_url or None, datum


def _tile_sources(url: str | None) -> list[str]:
    """Return the CSP source(s) for a tile URL template such as https://{s}.tile.example/{z}/..."""
    if not url:
        return []
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return []
    host = parts.netloc.replace("{s}", "*")
    if "{" in host:  # other placeholders in the host: allow the parent domain's subdomains
        host = "*." + host.split(".", 1)[1] if "." in host else host
    return [f"{parts.scheme}://{host}"]


def content_security_policy(settings: Settings) -> str:
    """Build the CSP: same-origin scripts and styles only, no framing, no <base>, no plugins."""
    img = ["'self'", "data:", *_tile_sources(map_tiles(settings)[0])]
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": img,
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


def register_security_headers(app: Flask, settings: Settings) -> None:
    """Add the headers to every response, errors included."""
    csp = content_security_policy(settings)

    @app.after_request
    def security_headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", csp)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if request.path.startswith(_NO_STORE_PREFIXES) and not _is_static(request.path):
            headers["Cache-Control"] = "no-store"
            headers.setdefault("Pragma", "no-cache")
        return response


def _is_static(path: str) -> bool:
    return path.startswith("/admin/static/")
