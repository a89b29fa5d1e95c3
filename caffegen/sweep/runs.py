"""One run of a sweep on disk: what it trains (:func:`plan_run`), its record (``manifest.json``), its snapshots.

A run folder ``runs/NAME/<variant>/`` holds the rendered ``train_val.prototxt``, ``solver.prototxt`` and
``deploy.prototxt``, caffe's whole output in ``train.log``, ``snapshots/`` (the newest pair kept) and
``manifest.json``. Caffe runs with the folder as its working directory, so every path in the solver is relative.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.sources import PreparedData
from ..paths import write_atomic
from ..prototxt.options import NetOptions, SolverOptions
from .spec import Variant

__all__ = ["RunPlan", "plan_run", "SNAPSHOT_PREFIX", "snapshots", "newest_solverstate", "prune_snapshots",
           "read_manifest", "write_manifest"]

SNAPSHOT_PREFIX = "snapshots/snap"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class RunPlan:
    """One variant made concrete: the options it renders with, and what identifies it in the store."""

    variant: Variant
    net: NetOptions
    solver: SolverOptions

    @property
    def identity(self) -> dict[str, Any]:
        """The parameters that define the run (device placement does not): a rerun must match them exactly."""
        solver = {k: v for k, v in dataclasses.asdict(self.solver).items() if k not in ("solver_mode", "device_id")}
        return {"net": dataclasses.asdict(self.net), "solver": solver}


def plan_run(variant: Variant, data: PreparedData, gpu: bool) -> RunPlan:
    """NetOptions + SolverOptions of one variant, with the data and run-folder conventions filled in."""
    net = dict(variant.net)
    net.setdefault("num_classes", data.num_classes)
    net["train_source"] = str(data.train_list)
    net["val_source"] = str(data.val_list)
    net.setdefault("root_folder", data.root_folder)
    solver = dict(variant.solver)
    solver["net"] = "train_val.prototxt"          # caffe runs with cwd = the run folder
    solver["snapshot_prefix"] = SNAPSHOT_PREFIX
    solver.setdefault("random_seed", 0)
    # Periodic snapshots make an interrupted or killed run resumable; only the newest is kept.
    if not solver.get("snapshot"):
        solver["snapshot"] = solver.get("test_interval") or max(1, int(solver.get("max_iter", 10000)) // 5)
    if gpu:
        solver["solver_mode"] = "GPU"
    return RunPlan(variant, NetOptions(**net), SolverOptions(**solver))


# --------------------------------------------------------------------------- snapshots

_SNAP_RE = re.compile(r"_iter_(\d+)\.solverstate(\.h5)?$")


def snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    """(iteration, .solverstate path) of every snapshot in ``run_dir/snapshots``, oldest first."""
    found = []
    for p in (Path(run_dir) / "snapshots").glob("*.solverstate*"):
        m = _SNAP_RE.search(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def newest_solverstate(run_dir: Path) -> Path | None:
    found = snapshots(run_dir)
    return found[-1][1] if found else None


def prune_snapshots(run_dir: Path, keep: int = 1) -> None:
    """Delete all but the ``keep`` newest snapshot pairs (.solverstate + .caffemodel)."""
    for _, state in snapshots(run_dir)[:-keep]:
        model = state.with_name(_SNAP_RE.sub(lambda m: f"_iter_{m.group(1)}.caffemodel" + (m.group(2) or ""),
                                             state.name))
        for p in (state, model):
            p.unlink(missing_ok=True)


# --------------------------------------------------------------------------- manifest

def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> Path:
    """``manifest.json``, replaced atomically (a reader never sees half of it)."""
    return write_atomic(Path(run_dir) / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")
