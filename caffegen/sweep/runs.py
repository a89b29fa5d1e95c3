"""One run of a sweep on disk: what it trains (:func:`plan_run`, :class:`RunPlan`), its record
(``manifest.json``), its snapshots.

A run folder ``runs/NAME/<variant>/`` holds the rendered ``train_val.prototxt``, ``solver.prototxt`` and
``deploy.prototxt``, caffe's whole output in ``train.log``, ``snapshots/`` (the pairs nearest the best test top-1,
``keep_best`` of them, plus the newest, for resume) and ``manifest.json`` (which says which iteration each kept
snapshot is, and why it is kept). Caffe runs with the folder as its working directory, so every path in the solver is relative.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..data.sources import PreparedData
from ..errors import InputError
from ..logs.curves import TOP1, TOP5, is_loss_metric
from ..paths import write_atomic
from ..prototxt.basesolver import load_solver, variant_solver
from ..prototxt.files import Written, count_list, resolve_test_iter, write_user_variant, write_variant
from ..prototxt.options import NetOptions, SolverOptions, coverage_note, test_iter_for
from ..prototxt.render import render_net
from ..prototxt.usernet import DataSources, UserNet, WiredNet, describe, sha256_of, wire
from .spec import Variant

__all__ = ["RunPlan", "plan_run", "SNAPSHOT_PREFIX", "snapshots", "check_snapshot", "usable_snapshot",
           "newest_solverstate", "best_snapshot_iters", "prune_snapshots", "settle_snapshots", "snapshot_record",
           "find_snapshot", "read_manifest", "write_manifest"]

SNAPSHOT_PREFIX = "snapshots/snap"
MANIFEST = "manifest.json"


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
    solver["net"] = "train_val.prototxt"          # caffe runs with cwd = the run folder
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


# --------------------------------------------------------------------------- snapshots
# Caffe writes a snapshot as <prefix>_iter_N.caffemodel, then <prefix>_iter_N.solverstate (which names the
# caffemodel); a kill or a full disk during the write leaves a truncated file or half a pair.

_SNAP_RE = re.compile(r"_iter_(\d+)\.(solverstate|caffemodel)(\.h5)?$")


def _pairs(run_dir: Path) -> dict[int, dict[str, Path]]:
    found: dict[int, dict[str, Path]] = {}
    for p in (Path(run_dir) / "snapshots").glob("*_iter_*"):
        m = _SNAP_RE.search(p.name)
        if m:
            found.setdefault(int(m.group(1)), {})[m.group(2)] = p
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
    it = int(_SNAP_RE.search(state.name).group(1))
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


def newest_solverstate(run_dir: Path) -> Path | None:
    found = snapshots(run_dir)
    return found[-1][1] if found else None


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
        raise InputError(f"{run_dir}: no snapshot (.caffemodel) in {run_dir / 'snapshots'}")
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


# --------------------------------------------------------------------------- manifest

def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> Path:
    """``manifest.json``, replaced atomically (a reader never sees half of it)."""
    return write_atomic(Path(run_dir) / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")
