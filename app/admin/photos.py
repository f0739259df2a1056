"""Photos for staff: cleaned derivatives and thumbnails only, after the scope check."""

from __future__ import annotations

from flask import Response, abort

from app.admin import bp
from app.admin.auth import current_viewer, login_required
from app.reports.models import Photo
from app.staff.scope import Viewer, visible_photo
from app.webapp import db, services

PHOTO_KINDS = ("derivative", "thumbnail")


def photo_response(viewer: Viewer, photo_id: int, kind: str):
    """Send one stored JPEG of a photo the viewer may see (404 otherwise), never cached."""
    if kind not in PHOTO_KINDS:
        abort(404)
    photo: Photo = visible_photo(db(), viewer, photo_id)
    key = photo.derivative_key if kind == "derivative" else photo.thumbnail_key
    try:
        # Derivatives are small (max edge ~2000 px): read whole, so no file handle outlives us.
        with services().store.open(key) as fh:
            data = fh.read()
    except FileNotFoundError:
        abort(404)
    response = Response(data, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Disposition"] = f'inline; filename="{photo.id}-{kind}.jpg"'
    return response


@bp.route("/photos/<int:photo_id>/<kind>", methods=["GET"])
@login_required
def photo(photo_id: int, kind: str):
    """Serve a derivative or a thumbnail to signed-in staff who may see its tip."""
    return photo_response(current_viewer(), photo_id, kind)
