"""WSGI entry point: `gunicorn wsgi:app` or `flask --app wsgi`."""

from app import create_app
from app.cli import register_cli

app = create_app()
register_cli(app)
