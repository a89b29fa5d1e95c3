"""``caffegen extend``: continue a run from its newest usable snapshot to a new max_iter.

Only ``max_iter`` changes in the run's ``solver.prototxt`` (the old file is kept beside it); every policy keeps its
parameters as they were written, so the schedule continues as it was defined: ``step`` keeps dividing every
stepsize, ``multistep`` stays at its last rate after its last stepvalue, ``exp``/``inv`` run on along their curves,
``sigmoid`` keeps its centre, ``fixed`` is fixed. ``poly`` is the exception Caffe makes: it computes
``base_lr * (1 - iter/max_iter)^power`` from the solver's own max_iter, so the decay that was left is stretched to
the new end, and the lr at the restore iteration rises from about 0 to ``base_lr * (1 - old/new)^power``. A schedule
Caffe lacks (a chain) is extended as :func:`caffegen.sweep.chain.extended` says: linear, cosine and one-cycle are
defined by the run's length, so their part not yet trained is stretched to the new end; sgdr's and triangular's
cycles go on; a plateau keeps deciding. The run's manifest records each extension (from which iteration, the old and
new max_iter, what happened to the schedule).
"""
from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import InputError, Interrupted
from ..layout import SOLVER, is_sweep_dir, parse_snapshot_name
from ..logs.curves import metric_label
from ..paths import write_atomic
from ..prototxt.schedule import learning_rate
from ..run.folder import read_manifest, write_manifest
from ..run.status import INTERRUPTED, RUNNING
from ..run.trainer import Training, follow, local_slot, resume_point
from ..sweep.chain import RunChain, extended
from ..sweep.spec import RunSettings
from ..sweep.store import Store, open_store, read_sweep, sweep_lock
from ..toolchain import CaffeInstall

__all__ = ["extend_run", "Extended", "policy_note"]


@dataclass
class Extended:
    run: str
    from_iter: int
    old_max_iter: int
    new_max_iter: int
    status: str
    reason: str | None
    best_top1: float | None


def policy_note(solver, from_iter: int, new_max: int) -> str:
    """What extending does to this solver's lr schedule (recorded in the manifest, printed)."""
    from ..prototxt.policies import REGISTRY

    policy, old = solver.lr_policy, solver.max_iter
    if not REGISTRY[policy].stretched:
        return f"{policy}: its parameters are kept as written; the schedule continues as it was defined"
    params = {k: tuple(getattr(solver, k)) if k == "stepvalue" else getattr(solver, k) for k in REGISTRY[policy].fields}
    before = learning_rate(policy, from_iter, solver.base_lr, **params, max_iter=old)
    after = learning_rate(policy, from_iter, solver.base_lr, **params, max_iter=new_max)
    return (f"{policy}: Caffe computes it from max_iter itself, so the remaining decay is stretched to {new_max}: "
            f"the lr at iteration {from_iter} goes from {before:.3g} to {after:.3g}")


def _solver_options(run_dir: Path):
    """The run's SolverOptions as its manifest records them (None: a run of an older caffegen or a user net's
    extra fields that SolverOptions cannot take)."""
    from ..prototxt.options import SolverOptions

    values = (read_manifest(run_dir).get("params") or {}).get("solver")
    if not values:
        return None
    try:
        return SolverOptions(**values)
    except (InputError, TypeError):
        return None


def _record_end(store: Store, training: Training, chain: RunChain | None, status: str, reason: str | None) -> dict:
    """How the extension ended, into the sweep's store and the run's manifest; the run's results."""
    run_dir = training.run_dir
    results = training.results()
    store.update(run_dir.name, status=status, reason=reason, pid=None, pid_start=None,
                 ended_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **results)
    manifest = read_manifest(run_dir)
    manifest.update(status=status, reason=reason, pid=None, pid_start=None,
                    result={k: results[k] for k in ("best_top1", "best_top5", "best_iter", "final_top1",
                                                    "final_top5", "final_loss", "last_iter")},
                    snapshots=training.snapshot_record(), **({"segments": chain.segments()} if chain else {}))
    manifest["extensions"][-1]["status"] = status
    write_manifest(run_dir, manifest)
    return results


def extend_run(run_dir: Path, iters: int, caffe: CaffeInstall, *, log: Callable[[str], None] = print,
               gpus: tuple[int, ...] = (), settings: RunSettings | None = None) -> Extended:
    """Continue ``run_dir`` (a sweep's run folder) to ``iters`` iterations, followed as the sweep follows its runs:
    the same stop policy (``settings``, by default the sweep's own ``[run]`` settings as it recorded them: divergence
    kill, early stop, timeout) and the same signals (Ctrl-C, SIGTERM, SIGHUP: snapshot and stop). Its sweep's store and the manifest say how it ended.
    The sweep folder is locked meanwhile: no sweep runs on it while a run of it is extended."""
    from google.protobuf import text_format

    from ..prototxt.validate import parse_text

    run_dir = Path(run_dir)
    sweep_dir = run_dir.parent
    if not (run_dir / SOLVER).is_file() or not is_sweep_dir(sweep_dir):
        raise InputError(f"{run_dir}: not a run folder of a sweep (no {SOLVER}, or no sweep store beside it)")
    with sweep_lock(sweep_dir):
        state, _ = resume_point(run_dir, note=lambda line: log(f"caffegen: note: {line}"))
        if state is None:
            raise InputError(f"{run_dir}: no usable snapshot to continue from")
        from_iter = parse_snapshot_name(state.name)[0]
        path = run_dir / SOLVER
        solver = parse_text(path.read_text(encoding="utf-8"), "solver", str(path))
        if iters <= from_iter:
            raise InputError(f"{run_dir.name} is at iteration {from_iter}: --iters must be above it, got {iters}")
        opts = _solver_options(run_dir)
        chain_plan = None
        if opts is not None and opts.is_chain:    # a schedule Caffe lacks: what extending it means, done
            new_opts, pieces, note = extended(opts, from_iter, iters)
            old_max, chain_plan = opts.max_iter, (new_opts, pieces)
        else:
            old_max, note = solver.max_iter, policy_note(solver, from_iter, iters)
        store = open_store(sweep_dir)
        try:
            _, record = read_sweep(sweep_dir)
            settings = settings or record.run_settings()
            row = store.get(run_dir.name)
            attempts = ((row["attempts"] or 0) if row else 0) + 1
            write_atomic(run_dir / f"solver.max_iter{old_max}.prototxt", path.read_bytes())
            solver.max_iter = iters
            write_atomic(path, text_format.MessageToString(solver))
            executor, slot = local_slot(gpus)
            metric = settings.metric or record.metric
            chain = RunChain(chain_plan[0], run_dir, metric=metric, maximize=record.maximize,
                             pieces=chain_plan[1]) if chain_plan else None
            training = Training(run_dir, caffe, executor, slot, metric=metric, stops=settings.stops(metric),
                                stop_grace=settings.stop_grace, resume=state,
                                keep_best=int(record.get("keep_best", settings.keep_best)), top5=record.top5,
                                attempt=attempts, chain=chain)
            log(f"[extend] {run_dir.name}: from {state.name} (iteration {from_iter}) to max_iter {iters} "
                f"(was {old_max}); {note}")
            manifest = read_manifest(run_dir)
            manifest.setdefault("extensions", []).append(
                {"from_iter": from_iter, "snapshot": state.name, "old_max_iter": old_max, "new_max_iter": iters,
                 "policy": note, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            training.start()
            manifest.update(status=RUNNING, command=training.argv, attempt=attempts, max_iter=iters,
                            pid=training.handle.pid, pid_start=training.handle.started)
            write_manifest(run_dir, manifest)
            store.update(run_dir.name, status=RUNNING, max_iter=iters, pid=training.handle.pid,
                         pid_start=training.handle.started, attempts=attempts, reason=None)
            status, reason = follow(training, log=log)
            results = _record_end(store, training, chain, status, reason)
        finally:
            store.close()
    top1 = results["best_top1"]
    if status == INTERRUPTED:
        raise Interrupted(f"extend {run_dir.name}: {reason}; rerun the same command to continue",
                          training.stopped_by or signal.SIGINT)
    log(f"[extend] {run_dir.name}: {status}" + (f": {reason}" if reason else "")
        + (f"  {metric_label(training.metric)} {top1:.3f}" if top1 is not None else ""))
    return Extended(run_dir.name, from_iter, old_max, iters, status, reason, top1)
