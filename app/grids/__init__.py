"""Grid layers: import and check grid files, and route a point to the grid that contains it."""
