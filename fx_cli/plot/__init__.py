"""``fx plot``: PNG charts from the run's JSON-lines logs (matplotlib, an optional extra)."""
