"""From a spec to runs: the data prepared once, every variant made a concrete :class:`RunPlan`, each distinct net
checked once before any run starts, and where the sweep's runs come from (the grid as it is, or an Optuna study)."""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any, Callable, Protocol

from ..data.sources import augmented, prepare_data
from ..layout import SWEEP_DB, TRAIN_LOG
from ..run.folder import read_manifest
from .runs import RunPlan, plan_run
from .search import Study, TrialSource, trial_name
from .strategies import RunShape
from .spec import RunSettings, SweepSpec, Variant, grid_space, point
from ..logs.curves import is_loss_metric
from ..run.status import FINAL
from .store import Store


class Planner:
    """Makes the plans of one sweep folder. Use :meth:`plans` first (it prepares the data), then :meth:`make` for
    each run asked for later (a sampled trial), and :meth:`check` before a run's first launch."""

    def __init__(self, spec: SweepSpec, out_dir: Path, run: RunSettings, log: Callable[[str], None]) -> None:
        self.spec, self.out_dir, self.run, self.log = spec, Path(out_dir), run, log
        self._checked: set[str] = set()
        self._data: Any = None
        self._lists: dict[str, Any] = {}  # augmentation (as JSON) -> the lists its variants read, made once each
        self._solvers: dict[str, Any] = {}  # a point's parameters (as JSON) -> its SolverOptions (False: refused)

    def plans(self) -> tuple[list[RunPlan], RunPlan]:
        """Every grid variant made concrete (none for a sampler: its trials are made as they are asked for), and each
        distinct net checked once (caffe_pb2, pycaffe, the weights) before any run starts: a net that cannot train is
        one error line, not a column of failed runs. Also the reference plan (the first, or the spec's own point)
        that names the sweep's metric and net."""
        self._data = prepare_data(self.spec.data, self.out_dir, self.log, self.spec.source)
        plans = [self.make(v) for v in self.spec.variants]
        reference = plans[0] if plans else self.make(
            Variant(name="reference", axes={}, net=dict(self.spec.net), solver=dict(self.spec.solver)))
        notes: list[str] = [n for n in dict.fromkeys(p.coverage_note for p in [*plans, reference]) if n]
        for plan in [*plans, reference]:
            notes += [n for n in self.check(plan) if n not in notes]
        for note in notes:
            self.log(f"caffegen: note: {note}")
        return plans, reference

    def make(self, v: Variant) -> RunPlan:
        d = self.spec.data
        return plan_run(v, self._data_for(v), gpu=bool(self.run.gpus),
                        lmdb=(d.train_lmdb, d.val_lmdb) if d.train_lmdb else None, base_solver=self.spec.base_solver)

    def trial(self, number: int, params: dict[str, Any]) -> RunPlan:
        """The plan of a study's trial: the spec's point at the sampled values."""
        name = trial_name(number, params)
        net, solver = point(self.spec, params, name=name)
        return self.make(Variant(name=name, axes=params, net=net, solver=solver, group=name))

    def decay_left(self, params: dict[str, Any], it: int) -> float:
        """Decades of lr decay a run of the spec at these parameters still has ahead at iteration ``it`` (what the
        noise pruner compares runs by); 0 for a point the options refuse."""
        key = json.dumps(params, sort_keys=True, default=str)
        solver = self._solvers.get(key)
        if solver is None:
            from ..errors import InputError
            from ..prototxt.basesolver import load_solver, variant_solver
            from ..prototxt.options import SolverOptions

            try:
                _, values = point(self.spec, params)
                base = load_solver(self.spec.base_solver) if self.spec.base_solver else None
                solver = SolverOptions(**variant_solver(values, base)[0])
            except InputError:
                solver = False
            self._solvers[key] = solver
        return solver.decay_left(it) if solver else 0.0

    def check(self, plan: RunPlan) -> list[str]:
        """Build the plan's net with pycaffe once per distinct net (its notes the first time)."""
        if plan.net_text in self._checked:
            return []
        with tempfile.TemporaryDirectory(prefix="caffegen-check-") as tmp:
            notes = plan.write(Path(tmp), pycaffe_check=True).notes
        self._checked.add(plan.net_text)
        return notes

    def _data_for(self, v: Variant) -> Any:
        value = v.data.get("augment", self.spec.data.augment)
        key = json.dumps(value, sort_keys=True)
        if self._data is not None and key not in self._lists:
            self._lists[key] = augmented(self._data, value, self.out_dir, self.log, self.spec.source)
        return self._lists.get(key, self._data)


def run_source(planner: Planner, store: Store, plans: list[RunPlan], reference: RunPlan, metric: str,
               register: Callable[[RunPlan], None]) -> RunSource:
    """Where the runs come from: the grid as it is, or an Optuna study (a sampler and/or a pruner) that optimises
    ``metric`` in its direction."""
    spec, out_dir = planner.spec, planner.out_dir
    search = spec.search
    if search is None or not search.uses_study:
        return GridSource([p for p in plans if store.get(p.variant.name).status not in FINAL])
    solver = reference.solver.effective(reference.test_batch)
    shape = RunShape(max_iter=solver["max_iter"], test_interval=solver["test_interval"],
                     test_images=reference.test_images, decay_left=planner.decay_left)
    study = Study(search, out_dir, spec.name, maximize=not is_loss_metric(metric),
                  min_resource=reference.solver.test_interval or 1, shape=shape)
    final = {r.variant: (r.status, r["best_top1"]) for r in store.all() if r.status in FINAL}
    source = TrialSource(study, grid=plans if not search.sampled else None,
                         budget=search.trials if search.sampled else None, make=planner.trial,
                         register=register, final=final, grid_space=grid_space(spec),
                         restore=trial_records(store, out_dir, metric) if store.rebuilt else None)
    if store.rebuilt:
        planner.log(f"caffegen: note: the Optuna study was rebuilt from the run folders ({study.started()} trials: "
                    "parameters, reported test passes and states; trial timings are not kept in run folders)")
    what = f"{search.sampler} sampler, {search.trials} trials" if search.sampled else "the grid"
    planner.log(f"[sweep] Optuna study {spec.name!r} in {out_dir / SWEEP_DB}: {what}, "
                f"pruner {search.pruner}; {study.started()} trials started before")
    return source


def trial_records(store: Store, out_dir: Path, metric: str) -> list[dict[str, Any]]:
    """Each run's trial as its folder records it (manifest: trial number, parameters; log: the test passes it
    reported), for :meth:`~caffegen.sweep.search.Study.restore`."""
    from ..logs import parse_log

    records = []
    for row in store.all():
        manifest = read_manifest(out_dir / row.variant)
        if manifest.get("trial") is None:
            continue
        log = out_dir / row.variant / TRAIN_LOG
        steps = []
        if log.exists():
            steps = [(it, v) for it, v in parse_log(log).resolved().test.series(metric) if it > 0 and math.isfinite(v)]
        point = {**row.axes, **({"random_seed": row["seed"]} if row["seed"] is not None else {})}
        records.append({"number": manifest["trial"], "variant": row.variant, "params": point, "status": row.status,
                        "value": row["best_top1"], "steps": steps})
    return records


class RunSource(Protocol):
    """Where a sweep's runs come from, as the driver asks: :class:`GridSource` (a grid, in order, no pruning) or
    :class:`~caffegen.sweep.search.TrialSource` (an Optuna study: a sampler and/or a pruner)."""

    spent: Callable[[], float] | None   # set by the driver: the seconds the runs have trained so far

    def remaining(self) -> bool:
        """More runs may come (pending ones, or a budget not yet spent)."""

    def next_plan(self) -> RunPlan | None:
        """The next run to start (None: none now)."""

    def test_pass(self, name: str, iteration: int, value: float) -> bool:
        """A run's test pass: True when the run is to stop here (pruned)."""

    def prune_reason(self, name: str, iteration: int, value: float) -> str:
        """Why the run was pruned at that pass, in a phrase."""

    def trial_of(self, name: str) -> int | None:
        """The run's trial number (None: not a trial)."""

    def end(self, name: str, status: str, best: float | None) -> None:
        """The run reached a final status."""


class GridSource:
    """The runs of a grid without a study: in order, no pruning (a :class:`RunSource`)."""

    spent: Callable[[], float] | None = None

    def __init__(self, plans: list[RunPlan]):
        self.pending = list(plans)

    def remaining(self) -> bool:
        return bool(self.pending)

    def next_plan(self) -> RunPlan | None:
        return self.pending.pop(0) if self.pending else None

    def test_pass(self, name: str, iteration: int, value: float) -> bool:  # noqa: ARG002
        return False

    def prune_reason(self, name: str, iteration: int, value: float) -> str:  # noqa: ARG002
        return ""

    def trial_of(self, name: str) -> int | None:  # noqa: ARG002
        return None

    def end(self, name: str, status: str, best: float | None) -> None:
        pass


def net_record(plan: RunPlan) -> dict[str, Any]:
    """What the manifest and the store say of the net a run trains."""
    if plan.wired is None:
        return {"kind": "template", "name": plan.net.name or "caffegen baseline (templates/train_val.prototxt.j2)"}
    user = plan.identity["net"]
    return {"kind": "user", "name": plan.wired.name, "file": user["prototxt"], "sha256": user["sha256"],
            "weights": user["weights"], "weights_sha256": user["weights_sha256"],
            "heads": [h.top1 for h in plan.wired.heads if h.top1], "reduced": plan.wired.reduced}
