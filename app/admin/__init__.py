"""The staff admin pages under /admin: sign-in, the triage queue, tips, and more.

Every page module attaches its views to `bp` and uses the helpers of
`app.admin.auth` (`login_required`, `role_required`, `current_staff`,
`current_viewer`); the blueprint's hooks load the session and check CSRF for
every state change, whichever module the view lives in.
"""

from __future__ import annotations

from importlib import import_module

from flask import Blueprint, Flask

bp = Blueprint(
    "admin",
    __name__,
    url_prefix="/admin",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

# The page modules, imported before the blueprint is registered. Add one line per module.
PAGE_MODULES = (
    "app.admin.auth",
    "app.admin.errors",
    "app.admin.login",
    "app.admin.queue",
    "app.admin.tips",
    "app.admin.photos",
    "app.admin.map_views",
    "app.admin.dashboard_views",
    "app.admin.reporters_views",
    "app.admin.landmarks_views",
    "app.admin.intake_views",
    "app.admin.grids_views",
    "app.admin.rewards_views",
    "app.admin.partners_views",
)


def register_admin(app: Flask) -> None:
    """Import every admin page module and register the blueprint."""
    for name in PAGE_MODULES:
        import_module(name)
    app.register_blueprint(bp)
