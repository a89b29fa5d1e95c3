"""The sweep-level store: ``runs/NAME/sweep.db`` (SQLite, one row per run), the spec record, and the directory lock.

Every write is one transaction, so a crash of caffegen leaves either the old row or the new one, never half of it.
WAL mode lets ``caffegen status`` read while a sweep writes.

The store is an index, not the only copy: every run folder holds its ``manifest.json`` (parameters, status, result,
pid) and the sweep folder its ``spec.json``. A ``sweep.db`` damaged by a full disk, a crash of the file system or
a bad copy is refused by the readers with one line (:class:`DamagedStore`), and :func:`rebuild_store` (what a rerun
of the sweep does by itself) puts it aside and makes a new one from the run folders: every finished run keeps its
outcome, unfinished ones resume.
"""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import InputError
from ..layout import LOCK, MANIFEST, SPEC_RECORD, SWEEP_DB
from ..logs.curves import TOP1, TOP5, is_loss_metric
from ..paths import exclusive, write_atomic
from ..run.status import INTERRUPTED, PENDING, RUNNING, STATUSES

__all__ = ["Store", "RunRow", "SweepRecord", "DamagedStore", "open_store", "read_sweep", "record_spec",
           "rebuild_store", "sweep_lock", "COLUMNS"]

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
        self.rebuilt = False   # made anew from the run folders (rebuild_store): a study must be restored too
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
            if not existing.params:   # rebuilt from a manifest of an older caffegen, which had no identity
                self.update(variant, params=json.dumps(params, sort_keys=True, default=str))
            elif existing.params != json.loads(json.dumps(params, sort_keys=True, default=str)):
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
                       json.dumps(axes, sort_keys=True, default=str), PENDING, max_iter, ordinal, group, seed,
                       test_images))

    def restore(self, manifest: dict[str, Any], ordinal: int) -> None:
        """A row made from a run folder's manifest (:func:`rebuild_store`)."""
        result = manifest.get("result") or {}
        status = manifest.get("status") or PENDING
        if status not in STATUSES:
            status = INTERRUPTED
        pid = manifest.get("pid") if status == RUNNING else None
        params = manifest.get("identity") or {}
        solver = (manifest.get("params") or {}).get("solver") or {}
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO runs(variant, params, axes, status, max_iter, ordinal, grp, seed, "
                      "test_images) VALUES (?,?,?,?,?,?,?,?,?)",
                      (manifest["variant"], json.dumps(params, sort_keys=True, default=str),
                       json.dumps(manifest.get("axes") or {}, sort_keys=True, default=str), status,
                       manifest.get("max_iter") or solver.get("max_iter"), ordinal,
                       manifest.get("group") or manifest["variant"], manifest.get("seed"),
                       manifest.get("test_images")))
        self.update(manifest["variant"], reason=manifest.get("reason"), attempts=manifest.get("attempt") or 0,
                    started_at=manifest.get("started_at"), ended_at=manifest.get("ended_at"),
                    wall_s=manifest.get("wall_s"), pid=pid, pid_start=manifest.get("pid_start") if pid else None,
                    **{k: result.get(k) for k in ("best_top1", "best_top5", "best_iter", "final_top1", "final_top5",
                                                  "final_loss", "last_iter")})

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


class DamagedStore(InputError):
    """``sweep.db`` cannot be read (truncated, overwritten): one line naming it and the fix."""


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """A store that is not a whole SQLite database (not a busy or locked one, which is a wait, not a damage)."""
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return "malformed" in text or "not a database" in text or "disk i/o" in text
    return True


def damage_note(sweep_dir: Path, exc: BaseException) -> str:
    """The one line a reader of a damaged store says."""
    record = read_spec_record(sweep_dir)
    spec = record.get("source") or "SPEC"
    return (f"{Path(sweep_dir) / SWEEP_DB} is damaged ({exc}); every run folder is intact: `caffegen sweep {spec} "
            f"--out {sweep_dir}` rebuilds it from them (the damaged file is kept aside) and resumes what was "
            "unfinished")


def open_store(sweep_dir: Path, readonly: bool = False, *, rebuild: bool = False,
               log: Callable[[str], None] | None = None) -> Store:
    """The sweep's store. A damaged one is a :class:`DamagedStore` line, or with ``rebuild`` (the driver, which
    holds the sweep's lock) rebuilt from the run folders."""
    sweep_dir = Path(sweep_dir)
    try:
        store = Store(sweep_dir / SWEEP_DB, readonly=readonly)
        try:
            if not readonly:
                check = store.conn.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise sqlite3.DatabaseError(f"database disk image is malformed: {check}")
            store.conn.execute("SELECT count(*) FROM runs").fetchone()
        except BaseException:
            store.close()
            raise
        return store
    except sqlite3.DatabaseError as exc:
        if not _damaged(exc):
            raise
        if not rebuild:
            raise DamagedStore(damage_note(sweep_dir, exc)) from None
        return rebuild_store(sweep_dir, reason=str(exc), log=log)


@dataclass(frozen=True)
class SweepRecord:
    """What a sweep recorded of itself (``sweep.db``'s meta, ``spec.json``): its name, the ranking metric and its
    direction, the net, the search. Every reader asks it, so a fallback is defined once."""

    raw: dict[str, Any]

    @property
    def name(self) -> str | None:
        return self.raw.get("name")

    @property
    def metric(self) -> str:
        """What ranks the runs (a store of an older caffegen recorded none: caffegen's top-1)."""
        return self.raw.get("metric") or TOP1

    @property
    def top5(self) -> str:
        return self.raw.get("top5") or TOP5

    @property
    def maximize(self) -> bool:
        """Higher is better for the metric (accuracy); False for a loss or an error."""
        return not is_loss_metric(self.metric)

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    def run_settings(self):
        """The sweep's own ``[run]`` stop settings, as it recorded them (defaults for a store of an older caffegen):
        what ``caffegen extend`` follows a run of it with."""
        from .spec import RunSettings

        fields = {f for f in RunSettings.__dataclass_fields__}
        return RunSettings(**{k: v for k, v in (self.raw.get("run") or {}).items() if k in fields})


def read_spec_record(sweep_dir: Path) -> dict[str, Any]:
    """``spec.json`` of a sweep folder ({} when there is none: a sweep of an older caffegen)."""
    try:
        return json.loads((Path(sweep_dir) / SPEC_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def record_spec(store: Store, sweep_dir: Path, record: dict[str, Any]) -> None:
    """The spec record, in the store and in ``spec.json`` beside it (what a rebuilt store starts from)."""
    store.set_meta("spec", record)
    write_atomic(Path(sweep_dir) / SPEC_RECORD, json.dumps(record, indent=2, default=str) + "\n")


def read_sweep(sweep_dir: Path) -> tuple[list[RunRow], SweepRecord]:
    """Every row and the spec record of a sweep folder, read-only (safe while the sweep writes it); one error line
    when the folder holds no sweep or its store is damaged."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / SWEEP_DB).exists():
        raise InputError(f"{sweep_dir}: no {SWEEP_DB} here (not a sweep folder, or the sweep has not started)")
    store = open_store(sweep_dir, readonly=True)
    try:
        return store.all(), SweepRecord(store.meta("spec") or {})
    except sqlite3.DatabaseError as exc:
        if not _damaged(exc):
            raise
        raise DamagedStore(damage_note(sweep_dir, exc)) from None
    finally:
        store.close()


def rebuild_store(sweep_dir: Path, *, reason: str = "", log: Callable[[str], None] | None = None) -> Store:
    """Put a damaged ``sweep.db`` aside (``sweep.db.damaged-<time>``, with its -wal/-shm) and make a new store from
    the sweep folder: the spec record from ``spec.json``, one row per run folder from its ``manifest.json``
    (parameters, status, result, attempts, the pid training it). A run the manifest says was running is
    ``running`` with its pid, so the one-writer check still finds a caffe left training it. The Optuna study of a
    ``[search]`` is not in the run folders: :meth:`caffegen.sweep.search.Study.rebuild` makes it anew."""
    sweep_dir = Path(sweep_dir)
    db = sweep_dir / SWEEP_DB
    aside = db.with_name(f"{SWEEP_DB}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        part = Path(str(db) + suffix)
        if part.exists():
            part.replace(Path(str(aside) + suffix))
    store = Store(db)
    record = read_spec_record(sweep_dir)
    if record:
        store.set_meta("spec", record)
    manifests = []
    for folder in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if manifest.get("variant") == folder.name:
            manifests.append(manifest)
    manifests.sort(key=lambda m: (m.get("ordinal", 1 << 30), m.get("started_at") or "", m["variant"]))
    for ordinal, m in enumerate(manifests):
        store.restore(m, ordinal)
    store.rebuilt = True
    if log:
        log(f"caffegen: note: {db} was damaged ({reason}); kept it as {aside.name} and rebuilt the store from "
            f"{len(manifests)} run folders")
    return store


def sweep_lock(sweep_dir: Path):
    """Hold ``sweep_dir/.lock`` for the sweep's lifetime; a second sweep on the same folder refuses."""
    return exclusive(Path(sweep_dir) / LOCK, f"another sweep is running on {sweep_dir} (pid {{pid}}); "
                     "watch it with `caffegen status`")
