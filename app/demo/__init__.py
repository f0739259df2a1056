"""The synthetic demo city: grids, categories, organisations, staff and invites."""
