"""Row ids that come from outside (URLs, query strings, bodies) must fit the id columns.

PostgreSQL refuses a larger number with an error and SQLite's driver with an
OverflowError; either would be a 500. Out of range is simply "no such row".
"""

from __future__ import annotations

from werkzeug.routing import IntegerConverter

MAX_ID = 2**31 - 1  # the id columns are 32-bit integers (SERIAL) on PostgreSQL


def fits_id(value: int) -> bool:
    """Whether the number could be a row id."""
    return 0 < value <= MAX_ID


class DatabaseIdConverter(IntegerConverter):
    """`<int:...>` in every route: numbers beyond the id columns do not match (404)."""

    # The parameter names are werkzeug's: rules pass them by name, e.g. <int(min=1):id>.
    def __init__(self, map, fixed_digits=0, min=None, max=MAX_ID, signed=False):
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)
