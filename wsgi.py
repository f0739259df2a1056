"""WSGI entry point: `gunicorn wsgi:app` or `flask --app wsgi`."""

import gc

from app import create_app
from app.cli import register_cli

app = create_app()
register_cli(app)
# Everything loaded so far lives as long as the worker: keep it out of the collector's
# full passes, which otherwise stall a worker ~80 ms, at times inside SQLite's write lock.
gc.freeze()
