"""The sweep-level store: ``runs/NAME/sweep.db`` (SQLite, one row per run) and the directory lock.

Every write is one transaction (``with conn:``), so a crash of caffegen leaves either the old row or
the new one, never half of it. WAL mode lets ``caffegen status`` read while a sweep writes.
"""
from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError
from ..paths import exclusive

# A run's life: pending -> running -> done | diverged | early-stopped | timeout | pruned | failed | interrupted.
FINAL = ("done", "diverged", "early-stopped", "timeout", "pruned")   # skipped on re-run
RETRY = ("failed", "interrupted", "running", "pending")    # (re)started on re-run, from a snapshot if any
STATUSES = FINAL + RETRY

COLUMNS: dict[str, str] = {
    "variant": "TEXT PRIMARY KEY",
    "params": "TEXT NOT NULL",
    "axes": "TEXT NOT NULL",
    "status": "TEXT NOT NULL",
    "reason": "TEXT",
    "best_top1": "REAL",
    "best_top5": "REAL",
    "best_iter": "INTEGER",
    "final_top1": "REAL",
    "final_top5": "REAL",
    "final_loss": "REAL",
    "first_loss": "REAL",
    "last_iter": "INTEGER",
    "max_iter": "INTEGER",
    "wall_s": "REAL",
    "attempts": "INTEGER NOT NULL DEFAULT 0",
    "started_at": "TEXT",
    "ended_at": "TEXT",
    "pid": "INTEGER",         # the caffe process training the run now (None when none)...
    "pid_start": "INTEGER",   # ...and its start time (/proc/PID/stat), so that a reused pid is never taken for it
    "ordinal": "INTEGER",
    "grp": "TEXT",            # the grid point a repeat belongs to (its variant name without the seed)
    "seed": "INTEGER",        # the repeat's random_seed (None: not a repeated sweep)
    "test_images": "INTEGER", # images one test pass evaluates (test_iter x TEST batch): the n of its top-1
}


@dataclass
class RunRow:
    variant: str
    params: dict[str, Any]
    axes: dict[str, Any]
    status: str
    values: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.values.get(key)


class Store:
    """Thin wrapper over sweep.db. The driver opens it to write; ``caffegen status`` and ``caffegen report`` open it
    ``readonly``: in WAL mode readers never wait for the writer, and each row they read is one committed
    transaction (never half a row)."""

    def __init__(self, path: Path, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            self.conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30,
                                        isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            return
        self.conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        cols = ", ".join(f"{k} {v}" for k, v in COLUMNS.items())
        with self.transaction():
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({cols})")
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            have = {r["name"] for r in self.conn.execute("PRAGMA table_info(runs)")}
            for name, kind in COLUMNS.items():  # a sweep.db of an older caffegen: add what it lacks
                if name not in have:
                    self.conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind.replace(' PRIMARY KEY', '')}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    # -- meta
    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else default

    # -- runs
    def register(self, variant: str, params: dict, axes: dict, max_iter: int, ordinal: int, *,
                 group: str | None = None, seed: int | None = None, test_images: int | None = None) -> None:
        """Add a pending run, or check that an existing one has the same parameters."""
        existing = self.get(variant)
        if existing is not None:
            if existing.params != json.loads(json.dumps(params, sort_keys=True, default=str)):
                diff = _first_difference(existing.params, params)
                raise InputError(f"{self.path.parent}: run {variant} exists with different parameters ({diff}); "
                                 "use a new --out directory or delete that run's folder")
            if existing["test_images"] != test_images or existing["grp"] != group:  # (a store of an older caffegen)
                self.update(variant, grp=group, seed=seed, test_images=test_images)
            return
        with self.transaction() as c:
            c.execute("INSERT INTO runs(variant, params, axes, status, max_iter, ordinal, grp, seed, test_images) "
                      "VALUES (?,?,?,?,?,?,?,?,?)",
                      (variant, json.dumps(params, sort_keys=True, default=str),
                       json.dumps(axes, sort_keys=True, default=str), "pending", max_iter, ordinal, group, seed,
                       test_images))

    def update(self, variant: str, **values: Any) -> None:
        bad = set(values) - set(COLUMNS)
        if bad:
            raise KeyError(f"unknown column(s) {sorted(bad)}")
        sets = ", ".join(f"{k} = ?" for k in values)
        with self.transaction() as c:
            c.execute(f"UPDATE runs SET {sets} WHERE variant = ?", (*values.values(), variant))

    def get(self, variant: str) -> RunRow | None:
        row = self.conn.execute("SELECT * FROM runs WHERE variant = ?", (variant,)).fetchone()
        return _row(row) if row else None

    def all(self) -> list[RunRow]:
        """Every run, in one read (one snapshot of the database, however the driver writes meanwhile)."""
        return [_row(r) for r in self.conn.execute("SELECT * FROM runs ORDER BY ordinal, variant")]


def _row(r: sqlite3.Row) -> RunRow:
    values = dict(r)
    return RunRow(variant=values["variant"], params=json.loads(values["params"]), axes=json.loads(values["axes"]),
                  status=values["status"], values=values)


def _first_difference(old: Any, new: Any, path: str = "") -> str:
    new = json.loads(json.dumps(new, sort_keys=True, default=str))
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
    return f"{path}: {old!r} then, {new!r} now"


def open_store(sweep_dir: Path, readonly: bool = False) -> Store:
    return Store(Path(sweep_dir) / "sweep.db", readonly=readonly)


def read_sweep(sweep_dir: Path) -> tuple[list[RunRow], dict[str, Any]]:
    """Every row and the spec record of a sweep folder, read-only (safe while the sweep writes it); one error line
    when the folder holds no sweep."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / "sweep.db").exists():
        raise InputError(f"{sweep_dir}: no sweep.db here (not a sweep folder, or the sweep has not started)")
    store = open_store(sweep_dir, readonly=True)
    try:
        return store.all(), store.meta("spec") or {}
    finally:
        store.close()


def sweep_lock(sweep_dir: Path):
    """Hold ``sweep_dir/.lock`` for the sweep's lifetime; a second sweep on the same folder refuses."""
    return exclusive(Path(sweep_dir) / ".lock", f"another sweep is running on {sweep_dir} (pid {{pid}}); "
                     "watch it with `caffegen status`")
