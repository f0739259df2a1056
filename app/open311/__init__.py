"""Open311 GeoReport v2 for partner systems (views.py; services.py behind it)."""
