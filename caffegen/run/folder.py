"""A run folder on disk: its snapshots (which are whole, which to keep, which to resume from) and its record,
``manifest.json``. The names are :mod:`caffegen.layout`'s.

Caffe writes a snapshot as ``<prefix>_iter_N.caffemodel``, then ``<prefix>_iter_N.solverstate`` (which names the
caffemodel); a kill or a full disk during the write leaves a truncated file or half a pair, which
:func:`usable_snapshot` skips and :func:`settle_snapshots` removes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import InputError
from ..layout import EVAL_DIR, EVAL_SUMMARY, MANIFEST, SNAPSHOT_DIR, parse_snapshot_name
from ..logs.curves import TOP1, is_loss_metric
from ..paths import write_atomic

__all__ = ["snapshots", "check_snapshot", "usable_snapshot", "best_snapshot_iters",
           "prune_snapshots", "settle_snapshots", "snapshot_record", "find_snapshot", "read_manifest",
           "write_manifest", "read_eval_summary"]


def _pairs(run_dir: Path) -> dict[int, dict[str, Path]]:
    found: dict[int, dict[str, Path]] = {}
    for p in (Path(run_dir) / SNAPSHOT_DIR).glob("*_iter_*"):
        named = parse_snapshot_name(p.name)
        if named:
            found.setdefault(named[0], {})[named[1]] = p
    return found


def snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    """(iteration, .solverstate path) of every snapshot in ``run_dir/snapshots``, oldest first."""
    return sorted((it, files["solverstate"]) for it, files in _pairs(run_dir).items() if "solverstate" in files)


def check_snapshot(state: Path) -> str | None:
    """Why this snapshot pair cannot be resumed from (None when it can): the solverstate and the caffemodel it names
    must both read as whole protobuf messages, for the iteration in the file name. HDF5 snapshots are taken as
    they are."""
    from google.protobuf.message import DecodeError

    from ..toolchain import caffe_pb2

    if state.name.endswith(".h5"):
        return None
    pb2 = caffe_pb2()
    it = parse_snapshot_name(state.name)[0]
    msg = pb2.SolverState()
    try:
        msg.ParseFromString(state.read_bytes())
    except (OSError, DecodeError) as exc:
        return f"{state.name} is truncated or corrupt ({exc})"
    if msg.iter != it:
        return f"{state.name} holds iteration {msg.iter}, not {it}"
    model = state.parent.parent / msg.learned_net if msg.learned_net else state.with_suffix(".caffemodel")
    net = pb2.NetParameter()
    try:
        net.ParseFromString(model.read_bytes())
    except (OSError, DecodeError) as exc:
        return f"{model.name} is missing, truncated or corrupt ({exc})"
    if not any(layer.blobs for layer in net.layer):
        return f"{model.name} holds no weights"
    return None


def usable_snapshot(run_dir: Path) -> tuple[Path | None, list[str]]:
    """The newest snapshot a run can resume from, and why each newer one could not be used."""
    why = []
    for _, state in reversed(snapshots(run_dir)):
        problem = check_snapshot(state)
        if problem is None:
            return state, why
        why.append(problem)
    return None, why


def best_snapshot_iters(tests: Sequence[tuple[int, float]], available: Iterable[int], k: int,
                        metric: str = TOP1) -> list[int]:
    """The ``k`` snapshot iterations nearest the best test values, best first. Caffe writes snapshot N just before
    the test pass it logs at iteration N, so with ``snapshot`` = ``test_interval`` (the sweep's default) each
    snapshot holds exactly the weights a test pass scored; otherwise a snapshot counts with the test pass nearest to
    it (the earlier one on a tie). Equal scores: the earlier snapshot first (as ``best_iter``)."""
    scored = [(it, v) for it, v in tests if v is not None and v == v]
    if k <= 0 or not scored:
        return []
    sign = 1.0 if is_loss_metric(metric) else -1.0

    def score(snap: int) -> float:
        it, v = min(scored, key=lambda t: (abs(t[0] - snap), t[0]))
        return sign * v

    return sorted(set(available), key=lambda snap: (score(snap), snap))[:k]


def prune_snapshots(run_dir: Path, keep: int = 1, protect: Iterable[int] = ()) -> None:
    """While caffe runs: delete all but the ``keep`` newest snapshot pairs (the newest may be being written) and the
    ``protect``ed iterations (the best so far)."""
    pairs, protect = _pairs(run_dir), set(protect)
    for it in sorted(pairs)[:-keep]:
        if it not in protect:
            for p in pairs[it].values():
                p.unlink(missing_ok=True)


def settle_snapshots(run_dir: Path, keep: int = 1, protect: Iterable[int] = ()) -> None:
    """After caffe has exited: keep the ``keep`` newest usable pairs and the usable ``protect``ed ones; delete the
    other pairs and the broken pieces a kill or a full disk left (which also gives the space back)."""
    pairs, protect = _pairs(run_dir), set(protect)
    kept = 0
    for it in sorted(pairs, reverse=True):
        files = pairs[it]
        whole = "solverstate" in files and check_snapshot(files["solverstate"]) is None
        if whole and kept < keep:
            kept += 1
            continue
        if whole and it in protect:
            continue
        for p in files.values():
            p.unlink(missing_ok=True)


def snapshot_record(run_dir: Path, tests: Sequence[tuple[int, float]], best: Iterable[int]) -> list[dict[str, Any]]:
    """What ``manifest.json`` says of each kept snapshot: its iteration, files, the test value at that iteration (when
    a test pass ran there) and why it is kept (``best``, ``newest``)."""
    pairs, best = _pairs(run_dir), list(best)
    at = dict(tests)
    newest = max(pairs, default=None)
    out = []
    for it in sorted(pairs):
        files = pairs[it]
        kept = (["best"] if it in best else []) + (["newest"] if it == newest else [])
        out.append({"iteration": it, "caffemodel": _rel(files.get("caffemodel"), run_dir),
                    "solverstate": _rel(files.get("solverstate"), run_dir), "test_value": at.get(it),
                    "kept_as": kept, **({"rank": best.index(it) + 1} if it in best else {})})
    return out


def _rel(p: Path | None, run_dir: Path) -> str | None:
    return str(p.relative_to(run_dir)) if p is not None else None


def find_snapshot(run_dir: Path, which: str = "best") -> tuple[int, Path]:
    """(iteration, .caffemodel) of a run's ``best`` snapshot (by the manifest's record, else the newest), its
    ``last``, or iteration ``N``; one-line InputError naming what is there otherwise."""
    run_dir = Path(run_dir)
    models = {it: files["caffemodel"] for it, files in _pairs(run_dir).items() if "caffemodel" in files}
    if not models:
        raise InputError(f"{run_dir}: no snapshot (.caffemodel) in {run_dir / SNAPSHOT_DIR}")
    have = ", ".join(map(str, sorted(models)))
    if which == "last":
        it = max(models)
    elif which == "best":
        ranked = sorted((s for s in read_manifest(run_dir).get("snapshots", []) if s.get("rank")),
                        key=lambda s: s["rank"])
        it = next((s["iteration"] for s in ranked if s["iteration"] in models), max(models))
    else:
        try:
            it = int(which)
        except ValueError:
            raise InputError(f"--snapshot must be best, last or an iteration, got {which!r}") from None
        if it not in models:
            raise InputError(f"{run_dir.name} has no snapshot at iteration {it} (it has: {have})")
    return it, models[it]


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> Path:
    """``manifest.json``, replaced atomically (a reader never sees half of it)."""
    return write_atomic(Path(run_dir) / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")


def read_eval_summary(run_dir: Path) -> dict | None:
    """What ``caffegen evaluate`` left in the run's ``eval/summary.json``, or None when it has not run."""
    p = Path(run_dir) / EVAL_DIR / EVAL_SUMMARY
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None
