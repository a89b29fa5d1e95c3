"""What one run of a sweep trains: a variant made concrete (:func:`plan_run`, :class:`RunPlan`): the template net's
options or the user's net wired to the sweep's data, and the solver with the run-folder conventions (every path
relative to the run folder, where caffe runs; snapshots under :data:`~caffegen.layout.SNAPSHOT_PREFIX`). The folder
itself, its snapshots and manifest, is :mod:`caffegen.run.folder`'s.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.sources import PreparedData
from ..layout import SNAPSHOT_PREFIX, TRAIN_VAL
from ..logs.curves import TOP1, TOP5
from ..prototxt.basesolver import load_solver, variant_solver
from ..prototxt.files import Written, count_list, resolve_test_iter, write_user_variant, write_variant
from ..prototxt.options import NetOptions, SolverOptions, coverage_note, test_iter_for
from ..prototxt.render import render_net
from ..prototxt.usernet import DataSources, UserNet, WiredNet, describe, sha256_of, wire
from .spec import Variant

__all__ = ["RunPlan", "plan_run"]


@dataclass(frozen=True)
class RunPlan:
    """One variant made concrete: the solver it trains with, and either the template net's options or the
    user's net wired to the sweep's data."""

    variant: Variant
    solver: SolverOptions
    net: NetOptions | None = None                   # the template net
    user: UserNet | None = None                     # or the user's own net...
    wired: WiredNet | None = None                   # ...as wired for this run
    base_solver: str | None = None                  # [solver] base, if any
    extras: dict[str, Any] = field(default_factory=dict)  # SolverParameter fields SolverOptions does not know
    val_images: int | None = None                   # lines of the val list, when it can be counted

    @property
    def test_batch(self) -> int:
        return self.wired.test_batch if self.wired else self.net.test_batch

    @property
    def test_images(self) -> int | None:
        """Images one test pass evaluates (test_iter x TEST batch): the n of every top-1's interval."""
        return self.solver.test_iter * self.test_batch if self.solver.test_iter else None

    @property
    def coverage_note(self) -> str | None:
        """Said once per sweep when a test pass does not see each val image exactly once."""
        return coverage_note(self.val_images, self.solver.test_iter, self.test_batch) if self.solver.test_iter \
            else None

    @property
    def metric(self) -> str | None:
        """The test output that ranks this run: the template's top-1, or the user net's main top-1."""
        return self.wired.metric if self.wired else TOP1

    @property
    def top5(self) -> str | None:
        return self.wired.top5 if self.wired else TOP5

    @property
    def net_text(self) -> str:
        """What the run trains (runs with the same text share one pycaffe check)."""
        return self.wired.text if self.wired else render_net(self.net)

    @property
    def identity(self) -> dict[str, Any]:
        """The parameters that define the run (device placement does not): a rerun must match them exactly. A user
        net counts with the hashes of its files, so an edited net or weights file is not resumed as the same run."""
        solver = {k: v for k, v in dataclasses.asdict(self.solver).items() if k not in ("solver_mode", "device_id")}
        data = {"data": self.variant.data} if self.variant.data else {}
        if self.user is None:
            return {"net": dataclasses.asdict(self.net), "solver": solver, **data}
        return {"net": describe(self.user), "solver": {**solver, **self.extras},
                "base_solver": {"path": self.base_solver, "sha256": sha256_of(self.base_solver)}, **data}

    def write(self, run_dir: Path, pycaffe_check: bool = True) -> Written:
        """Render, validate and write the run's prototxt files into ``run_dir``."""
        if self.wired is None:
            return write_variant(run_dir, self.net, self.solver, validate=True, pycaffe_check=pycaffe_check)
        base = load_solver(self.base_solver) if self.base_solver else None
        return write_user_variant(run_dir, self.wired, self.solver, base=base, extras=self.extras,
                                  weights=self.user.weights, pycaffe_check=pycaffe_check)


def _sweep_solver(values: dict[str, Any], gpu: bool) -> dict[str, Any]:
    """The run-folder conventions every sweep solver follows."""
    solver = dict(values)
    solver["net"] = TRAIN_VAL          # caffe runs with cwd = the run folder
    solver["snapshot_prefix"] = SNAPSHOT_PREFIX
    solver.setdefault("random_seed", 0)
    # Periodic snapshots make an interrupted or killed run resumable; only the newest is kept.
    if not solver.get("snapshot"):
        solver["snapshot"] = solver.get("test_interval") or max(1, int(solver.get("max_iter", 10000)) // 5)
    if gpu:
        solver["solver_mode"] = "GPU"
    return solver


def plan_run(variant: Variant, data: PreparedData | None, gpu: bool, *, lmdb: tuple[str, str] | None = None,
             base_solver: str | None = None) -> RunPlan:
    """NetOptions (or the wired user net) + SolverOptions of one variant, with the data and run-folder conventions
    filled in."""
    if "prototxt" not in variant.net:
        net = dict(variant.net)
        net.setdefault("num_classes", data.num_classes)
        net["train_source"] = str(data.train_list)
        net["val_source"] = str(data.val_list)
        net.setdefault("root_folder", data.root_folder)
        options = NetOptions(**net)
        solver, _ = resolve_test_iter(SolverOptions(**_sweep_solver(variant.solver, gpu)), options)
        return RunPlan(variant, solver, net=options, val_images=count_list(data.val_list))
    user = UserNet(**variant.net)
    sources = None
    if data is not None or lmdb is not None:
        sources = DataSources(train_list=str(data.train_list) if data else None,
                              val_list=str(data.val_list) if data else None,
                              root_folder=data.root_folder if data else "",
                              num_classes=data.num_classes if data else None,
                              train_lmdb=lmdb[0] if lmdb else None, val_lmdb=lmdb[1] if lmdb else None)
    wired = wire(user, sources)
    base = load_solver(base_solver) if base_solver else None
    options, extras = variant_solver(variant.solver, base)
    images = count_list(wired.val_list) if wired.val_list else None
    if "test_iter" not in variant.solver and images:  # one test pass over the val list the net now reads
        options["test_iter"] = test_iter_for(images, wired.test_batch)
    return RunPlan(variant, SolverOptions(**_sweep_solver(options, gpu)), user=user, wired=wired,
                   base_solver=base_solver, extras=extras, val_images=images)
