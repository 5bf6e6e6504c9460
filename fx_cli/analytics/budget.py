"""The site's privacy ledger (SQLite): ε and δ spent over every run, and each noisy release made.

A release is stored with its charge in one transaction. Asked again for the same release (a restarted
aggregator or site), the site sends the stored one: the same noise, no second charge, and nothing an
observer could average out.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from fx_cli.errors import FxError

SCHEMA = """CREATE TABLE IF NOT EXISTS releases (
    key TEXT PRIMARY KEY, epsilon REAL NOT NULL, delta REAL NOT NULL, release BLOB NOT NULL, at REAL NOT NULL)"""


class BudgetExceeded(FxError):
    """A query would take the site past its total ε or δ."""


class Ledger:
    """Spent budget and stored releases of one site."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def spent(self) -> tuple[float, float]:
        """Total (ε, δ) charged so far."""
        db = self._connect()
        try:
            row = db.execute("SELECT COALESCE(SUM(epsilon), 0), COALESCE(SUM(delta), 0) FROM releases").fetchone()
            return float(row[0]), float(row[1])
        finally:
            db.close()

    def stored(self, key: str) -> bytes | None:
        """A release made before under ``key``."""
        db = self._connect()
        try:
            row = db.execute("SELECT release FROM releases WHERE key = ?", (key,)).fetchone()
            return bytes(row[0]) if row else None
        finally:
            db.close()

    def charge(self, key: str, epsilon: float, delta: float, release: bytes,
               max_epsilon: float, max_delta: float) -> bytes:
        """Record ``release`` at its cost, or refuse with the budget left; an earlier release under ``key`` wins."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT release FROM releases WHERE key = ?", (key,)).fetchone()
            if row:
                db.execute("ROLLBACK")
                return bytes(row[0])
            eps, dlt = db.execute("SELECT COALESCE(SUM(epsilon), 0), COALESCE(SUM(delta), 0) FROM releases").fetchone()
            if eps + epsilon > max_epsilon + 1e-12 or dlt + delta > max_delta + 1e-15:
                db.execute("ROLLBACK")
                raise BudgetExceeded(
                    f"privacy budget exceeded: this query needs epsilon={epsilon:g}, delta={delta:g}; "
                    f"left at this site: epsilon={max(max_epsilon - eps, 0):g} of {max_epsilon:g}, "
                    f"delta={max(max_delta - dlt, 0):g} of {max_delta:g}",
                    "ask for less (smaller epsilon) or ask the data owner; the budget is the site's to raise")
            db.execute("INSERT INTO releases VALUES (?, ?, ?, ?, ?)", (key, epsilon, delta, release, time.time()))
            db.execute("COMMIT")
            return release
        finally:
            db.close()
