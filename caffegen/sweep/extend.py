"""``caffegen extend``: continue a run from its newest usable snapshot to a new max_iter.

Only ``max_iter`` changes in the run's ``solver.prototxt`` (the old file is kept beside it); every policy keeps its
parameters as they were written, so the schedule continues as it was defined: ``step`` keeps dividing every
stepsize, ``multistep`` stays at its last rate after its last stepvalue, ``exp``/``inv`` run on along their curves,
``sigmoid`` keeps its centre, ``fixed`` is fixed. ``poly`` is the exception Caffe makes: it computes
``base_lr * (1 - iter/max_iter)^power`` from the solver's own max_iter, so the decay that was left is stretched to
the new end, and the lr at the restore iteration rises from about 0 to ``base_lr * (1 - old/new)^power``. The run's
manifest records each extension (from which iteration, the old and new max_iter, what happened to the policy).
"""
from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import CaffegenError, InputError
from ..logs.curves import TOP1
from ..logs.follower import LogTail
from ..paths import write_atomic
from ..prototxt.schedule import learning_rate
from ..toolchain import CaffeInstall
from .executor import Job, LocalExecutor
from .monitor import decide
from .runs import (best_snapshot_iters, read_manifest, settle_snapshots, snapshot_record, snapshots, usable_snapshot,
                   write_manifest)
from .store import open_store, sweep_lock

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
    policy, old = solver.lr_policy, solver.max_iter
    if policy != "poly":
        return f"{policy}: its parameters are kept as written; the schedule continues as it was defined"
    before = learning_rate("poly", from_iter, solver.base_lr, power=solver.power, max_iter=old)
    after = learning_rate("poly", from_iter, solver.base_lr, power=solver.power, max_iter=new_max)
    return (f"poly: Caffe computes it from max_iter itself, so the remaining decay is stretched to {new_max}: the "
            f"lr at iteration {from_iter} goes from {before:.3g} to {after:.3g}")


def extend_run(run_dir: Path, iters: int, caffe: CaffeInstall, *, log: Callable[[str], None] = print,
               gpus: tuple[int, ...] = (), diverge_factor: float = 10.0, stop_grace: float = 120.0) -> Extended:
    """Continue ``run_dir`` (a sweep's run folder) to ``iters`` iterations; its sweep's store and the manifest say
    so. The sweep folder is locked meanwhile: no sweep runs on it while a run of it is extended."""
    from google.protobuf import text_format

    from ..prototxt.validate import parse_text

    run_dir = Path(run_dir)
    sweep_dir = run_dir.parent
    if not (run_dir / "solver.prototxt").is_file() or not (sweep_dir / "sweep.db").is_file():
        raise InputError(f"{run_dir}: not a run folder of a sweep (no solver.prototxt, or no sweep.db beside it)")
    with sweep_lock(sweep_dir):
        state, broken = usable_snapshot(run_dir)
        for problem in broken:
            log(f"caffegen: note: {problem}")
        if state is None:
            raise InputError(f"{run_dir}: no usable snapshot to continue from")
        from_iter = int(state.stem.rsplit("_", 1)[1].split(".")[0])
        path = run_dir / "solver.prototxt"
        solver = parse_text(path.read_text(encoding="utf-8"), "solver", str(path))
        if iters <= from_iter:
            raise InputError(f"{run_dir.name} is at iteration {from_iter}: --iters must be above it, got {iters}")
        old_max, note = solver.max_iter, policy_note(solver, from_iter, iters)
        write_atomic(run_dir / f"solver.max_iter{old_max}.prototxt", path.read_bytes())
        solver.max_iter = iters
        write_atomic(path, text_format.MessageToString(solver))
        store = open_store(sweep_dir)
        try:
            metric = (store.meta("spec") or {}).get("metric") or TOP1
            row = store.get(run_dir.name)
            attempts = ((row["attempts"] or 0) if row else 0) + 1
            argv = [str(caffe.binary), "train", "-solver", "solver.prototxt", "-sigint_effect", "stop",
                    "-snapshot", str(state.relative_to(run_dir))]
            log(f"[extend] {run_dir.name}: from {state.name} (iteration {from_iter}) to max_iter {iters} "
                f"(was {old_max}); {note}")
            manifest = read_manifest(run_dir)
            manifest.setdefault("extensions", []).append(
                {"from_iter": from_iter, "snapshot": state.name, "old_max_iter": old_max, "new_max_iter": iters,
                 "policy": note, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            manifest.update(status="running", command=argv, attempt=attempts)
            write_manifest(run_dir, manifest)
            executor = LocalExecutor(jobs=1, gpus=gpus[:1], per_gpu=1)
            handle = executor.launch(Job(run_dir.name, argv, run_dir, run_dir / "train.log", env=caffe.env()),
                                     executor.slots()[0])
            store.update(run_dir.name, status="running", max_iter=iters, pid=handle.pid, pid_start=handle.started,
                         attempts=attempts, reason=None)
            status, reason = _follow(handle, LogTail(run_dir / "train.log"), metric, diverge_factor, stop_grace, log)
            tail = LogTail(run_dir / "train.log")
            tail.flush()
            f = tail.follower
            tests = f.test_history(metric)
            keep_best = int((store.meta("spec") or {}).get("keep_best", 1))
            best_snaps = best_snapshot_iters(tests, [it for it, _ in snapshots(run_dir)], keep_best, metric)
            settle_snapshots(run_dir, keep=1 if status == "done" else 2, protect=best_snaps)
            best = f.best_test(metric)
            top1 = best[0] if best and math.isfinite(best[0]) else None
            store.update(run_dir.name, status=status, reason=reason, pid=None, pid_start=None, last_iter=f.iteration,
                         best_top1=top1, best_iter=best[1] if best else None,
                         final_top1=f.last_test.get(metric), final_loss=f.last_loss,
                         ended_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            manifest = read_manifest(run_dir)
            manifest.update(status=status, reason=reason, snapshots=snapshot_record(run_dir, tests, best_snaps))
            manifest["extensions"][-1]["status"] = status
            write_manifest(run_dir, manifest)
        finally:
            store.close()
    log(f"[extend] {run_dir.name}: {status}" + (f": {reason}" if reason else "")
        + (f"  top-1 {top1:.3f}" if top1 is not None else ""))
    return Extended(run_dir.name, from_iter, old_max, iters, status, reason, top1)


def _follow(handle, tail: LogTail, metric: str, diverge_factor: float, stop_grace: float,
            log: Callable[[str], None]) -> tuple[str, str | None]:
    """Watch the extended run as the sweep would (divergence kill, Ctrl-C = snapshot and stop); its outcome."""
    stopped, decision, started = None, None, time.time()
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):  # noqa: ARG001
        nonlocal stopped
        if stopped is not None:
            raise KeyboardInterrupt
        stopped = time.time()
        log("caffegen: stopping: asking caffe to snapshot (Ctrl-C again to abandon)")
        handle.interrupt()

    signal.signal(signal.SIGINT, on_sigint)
    try:
        while (rc := handle.poll()) is None:
            tail.read()
            if decision is None and stopped is None:
                decision = decide(tail.follower, elapsed=time.time() - started, diverge_factor=diverge_factor,
                                  patience=0, metric=metric, timeout=None)
                if decision is not None:
                    (handle.kill if decision.kill else handle.interrupt)()
                    log(f"[extend] {decision.status}: {decision.reason}")
            if stopped is not None and time.time() - stopped > stop_grace:
                handle.kill()
            time.sleep(0.25)
    except KeyboardInterrupt:
        handle.kill()
        return "interrupted", "abandoned by a second Ctrl-C"
    finally:
        signal.signal(signal.SIGINT, previous)
    if decision is not None:
        return decision.status, decision.reason
    if stopped is not None:
        return "interrupted", "stopped by Ctrl-C" + (" (snapshot kept)" if rc == 0 else "")
    if rc == 0:
        return "done", None
    tail.flush()
    why = tail.follower.fatal_line or (f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}")
    return "failed", f"{why} (see {tail.path})"


def winner_runs(sweep_dir: Path) -> list[Path]:
    """The run folders of a sweep's winning variant (each of its repeats)."""
    from ..report.analysis import group_runs, load_runs, rank

    runs, _ = load_runs(sweep_dir)
    ranked = [v for v in rank(group_runs(runs)) if v.score is not None]
    if not ranked:
        raise CaffegenError(f"{sweep_dir}: no run has a test result yet: no winner to extend")
    return [sweep_dir / r.variant for r in ranked[0].runs]

