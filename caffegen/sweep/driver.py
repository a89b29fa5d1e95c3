"""The sweep driver: data -> render + validate every variant -> run them in slots -> store -> report.

One thread, one loop: launch while slots are free, read each running log, apply the stop policy
(:mod:`caffegen.sweep.monitor`), record every state change in ``sweep.db`` and ``manifest.json``.
Re-running the same command resumes: final runs are skipped, the others continue from their newest
``.solverstate``.
"""
from __future__ import annotations

import math
import signal
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..data.sources import prepare_data
from ..errors import CaffegenError
from ..logs.curves import TOP5
from ..logs.follower import LogTail
from ..paths import sha256_file
from ..prototxt.files import write_variant
from ..prototxt.render import render_net
from ..toolchain import CaffeInstall
from .executor import Executor, Handle, Job, LocalExecutor, Slot
from .monitor import Decision, decide
from .progress import run_view
from .runs import RunPlan, newest_solverstate, plan_run, prune_snapshots, read_manifest, write_manifest
from .spec import RunSettings, SweepSpec
from .store import FINAL, Store, open_store, sweep_lock

STOP_GRACE_S = 120.0   # after SIGINT, how long a run may take to snapshot before it is killed


@dataclass
class Active:
    plan: RunPlan
    slot: Slot
    handle: Handle
    tail: LogTail
    started: float
    overhead_s: float
    decision: Decision | None = None
    stop_sent_at: float | None = None
    interrupted_by_user: bool = False
    pruned_at: float = 0.0

    @property
    def name(self) -> str:
        return self.plan.variant.name


@dataclass
class SweepResult:
    out_dir: Path
    counts: dict[str, int]
    failed: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    report: Path | None = None

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.failed else 0


# --------------------------------------------------------------------------- driver


class Driver:
    """Runs one sweep directory. Use :func:`run_sweep`."""

    def __init__(self, spec: SweepSpec, out_dir: Path, run: RunSettings, caffe: CaffeInstall,
                 executor: Executor | None = None, display: Any = None,
                 log: Callable[[str], None] = print, poll_s: float = 0.25) -> None:
        self.spec = spec
        self.out_dir = Path(out_dir)
        self.run = run
        self.caffe = caffe
        self.executor = executor or LocalExecutor(jobs=run.jobs, gpus=run.gpus, per_gpu=run.per_gpu)
        self.display = display
        self.log = log
        self.poll_s = poll_s
        self._stop_requested = False
        self._validated_nets: set[str] = set()

    # -- signals
    def _on_sigint(self, signum, frame) -> None:  # noqa: ARG002
        if self._stop_requested:
            raise KeyboardInterrupt  # second Ctrl-C: give up waiting for snapshots
        self._stop_requested = True
        self.log("caffegen: stopping: asking each running caffe to snapshot (Ctrl-C again to abandon)")

    def execute(self) -> SweepResult:
        with sweep_lock(self.out_dir):
            store = open_store(self.out_dir)
            try:
                store.set_meta("spec", {"name": self.spec.name, "source": self.spec.source,
                                        "fingerprint": self.spec.fingerprint(), "metric": self.run.metric})
                data = prepare_data(self.spec.data, self.out_dir, self.log, self.spec.source)
                plans = [plan_run(v, data, gpu=bool(self.run.gpus)) for v in self.spec.variants]
                for i, plan in enumerate(plans):
                    store.register(plan.variant.name, plan.identity, plan.variant.axes, plan.solver.max_iter, i)
                previous = signal.signal(signal.SIGINT, self._on_sigint)
                try:
                    return self._loop(store, plans)
                finally:
                    signal.signal(signal.SIGINT, previous)
            finally:
                store.close()

    def _loop(self, store: Store, plans: list[RunPlan]) -> SweepResult:
        pending = [p for p in plans if store.get(p.variant.name).status not in FINAL]
        skipped = len(plans) - len(pending)
        if skipped:
            self.log(f"[sweep] {skipped} of {len(plans)} runs already finished in {self.out_dir}; "
                     f"{len(pending)} to go")
        free = list(self.executor.slots())
        active: dict[str, Active] = {}
        total = len(plans)
        try:
            while (pending and not self._stop_requested) or active:
                while pending and free and not self._stop_requested:
                    plan = pending.pop(0)
                    slot = free.pop(0)
                    try:
                        active[plan.variant.name] = self._start(store, plan, slot)
                    except CaffegenError as exc:
                        store.update(plan.variant.name, status="failed", reason=str(exc), ended_at=_now())
                        self.log(f"[sweep] {plan.variant.name}: failed before launch: {exc}")
                        free.append(slot)
                for name in list(active):
                    a = active[name]
                    finished = self._watch(store, a)
                    if finished:
                        del active[name]
                        free.append(a.slot)
                        free.sort(key=lambda s: s.index)
                if self._stop_requested:
                    for a in active.values():
                        if a.stop_sent_at is None:
                            a.interrupted_by_user = True
                            a.handle.interrupt()
                            a.stop_sent_at = time.time()
                self._show(store, active, total)
                if active:
                    time.sleep(self.poll_s)
        except KeyboardInterrupt:
            for a in active.values():
                a.handle.kill()
                store.update(a.name, status="interrupted", reason="abandoned by a second Ctrl-C",
                             ended_at=_now(), pid=None)
            self._stop_requested = True
        rows = store.all()
        counts: dict[str, int] = {}
        for r in rows:
            counts[r.status] = counts.get(r.status, 0) + 1
        failed = [(r.variant, r["reason"] or "") for r in rows if r.status == "failed"]
        self._show(store, {}, total, final=True)
        return SweepResult(self.out_dir, counts, failed, interrupted=self._stop_requested)

    # -- one run
    def _start(self, store: Store, plan: RunPlan, slot: Slot) -> Active:
        t0 = time.perf_counter()
        v, net = plan.variant, plan.net
        run_dir = self.out_dir / v.name
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "snapshots").mkdir(exist_ok=True)
        net_text = render_net(net)  # one pycaffe build per distinct net: the shapes do not depend on the solver
        written = write_variant(run_dir, net, plan.solver, validate=True,
                                pycaffe_check=net_text not in self._validated_nets)
        self._validated_nets.add(net_text)
        solver = written.solver
        argv = [str(self.caffe.binary), "train", "-solver", "solver.prototxt", "-sigint_effect", "stop"]
        resume = newest_solverstate(run_dir)
        if resume is not None:
            argv += ["-snapshot", str(resume.relative_to(run_dir))]
        log_path = run_dir / "train.log"
        row = store.get(v.name)
        attempts = (row["attempts"] or 0) + 1 if row else 1
        tail = LogTail(log_path)
        if log_path.exists():
            if resume is None:           # nothing to resume from: start the log afresh
                log_path.unlink()
            else:
                tail.read()              # a resumed run keeps its earlier curve
        manifest = {
            "variant": v.name, "axes": v.axes, "params": {"net": asdict(net), "solver": asdict(solver)},
            "files": {k: {"path": p.name, "sha256": sha256_file(p)} for k, p in written.paths.items()},
            "caffe": {"binary": str(self.caffe.binary), "version": self.caffe.version, "origin": self.caffe.origin},
            "command": argv, "random_seed": solver.random_seed, "host": socket.gethostname(),
            "slot": asdict(slot), "attempt": attempts, "resumed_from": str(resume) if resume else None,
            "started_at": _now(), "status": "running",
        }
        write_manifest(run_dir, manifest)
        job = Job(v.name, argv, run_dir, log_path, env=self.caffe.env())
        handle = self.executor.launch(job, slot)
        overhead = time.perf_counter() - t0
        store.update(v.name, status="running", reason=None, started_at=manifest["started_at"], pid=handle.pid,
                     attempts=attempts)
        self.log(f"[sweep] started {v.name}" + (f" (resumed from {resume.name})" if resume else ""))
        return Active(plan, slot, handle, tail, time.time(), overhead)

    def _watch(self, store: Store, a: Active) -> bool:
        """Read the log, apply the stop policy; on exit record the outcome. True when the run ended."""
        t0 = time.perf_counter()
        a.tail.read()
        f = a.tail.follower
        rc = a.handle.poll()
        if rc is None and a.decision is None and not a.interrupted_by_user:
            d = decide(f, elapsed=time.time() - a.started, diverge_factor=self.run.diverge_factor,
                       patience=self.run.early_stop, metric=self.run.metric, timeout=self.run.timeout)
            if d is not None:
                a.decision = d
                a.stop_sent_at = time.time()
                (a.handle.kill if d.kill else a.handle.interrupt)()
                self.log(f"[sweep] {a.name}: {d.status}: {d.reason}")
        if rc is None and a.stop_sent_at is not None and time.time() - a.stop_sent_at > STOP_GRACE_S:
            a.handle.kill()
        if rc is None and time.time() - a.pruned_at > 10:
            prune_snapshots(a.tail.path.parent, keep=2)  # the newest may still be being written
            a.pruned_at = time.time()
        a.overhead_s += time.perf_counter() - t0   # log parsing + policy: orchestration, not caffe
        if rc is None:
            return False
        t1 = time.perf_counter()
        a.tail.flush()
        prune_snapshots(a.tail.path.parent)
        if a.decision is not None:
            status, reason = a.decision.status, a.decision.reason
        elif a.interrupted_by_user:
            status, reason = "interrupted", "stopped by Ctrl-C" + (" (snapshot kept)" if rc == 0 else "")
        elif rc == 0:
            status, reason = "done", None
        else:
            status = "failed"
            why = f.fatal_line or (f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}")
            reason = f"{why} (see {a.tail.path})"
        self._finish(store, a, status, reason, rc, overhead=a.overhead_s + time.perf_counter() - t1)
        return True

    def _finish(self, store: Store, a: Active, status: str, reason: str | None, rc: int, overhead: float) -> None:
        f = a.tail.follower
        row = store.get(a.name)
        wall = (row["wall_s"] or 0.0) + (time.time() - a.started)
        best1 = f.best_test(self.run.metric)
        best5 = f.best_test(TOP5)
        summary = dict(
            status=status, reason=reason, ended_at=_now(), pid=None, wall_s=round(wall, 3),
            best_top1=_finite(best1[0]) if best1 else None, best_iter=best1[1] if best1 else None,
            best_top5=_finite(best5[0]) if best5 else None,
            final_top1=_finite(f.last_test.get(self.run.metric)), final_top5=_finite(f.last_test.get(TOP5)),
            final_loss=_finite(f.last_loss), first_loss=_finite(f.first_loss), last_iter=f.iteration,
        )
        store.update(a.name, **summary)
        manifest = read_manifest(a.tail.path.parent)
        manifest.update({"status": status, "reason": reason, "exit_status": rc, "ended_at": summary["ended_at"],
                         "wall_s": summary["wall_s"], "overhead_s": round(overhead, 4),
                         "result": {k: summary[k] for k in ("best_top1", "best_top5", "best_iter", "final_top1",
                                                           "final_top5", "final_loss", "last_iter")}})
        write_manifest(a.tail.path.parent, manifest)
        self.log(f"[sweep] {a.name}: {status}" + (f": {reason}" if reason and status == "failed" else "")
                 + (f"  top-1 {summary['best_top1']:.3f}" if summary["best_top1"] is not None else ""))

    def _show(self, store: Store, active: dict[str, Active], total: int, final: bool = False) -> None:
        if self.display is None:
            return
        views = []
        for r in store.all():
            a = active.get(r.variant)
            views.append(run_view(r, a.tail.follower if a else None, self.run.metric))
        self.display.update(views, total, final=final)


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def run_sweep(spec: SweepSpec, out_dir: Path | None = None, run: RunSettings | None = None,
              caffe: CaffeInstall | None = None, display: Any = None,
              log: Callable[[str], None] = print) -> SweepResult:
    """Run (or resume) every variant of ``spec`` in ``out_dir`` (default ``runs/<spec.name>``)."""
    from ..toolchain import locate

    out = Path(out_dir) if out_dir else Path("runs") / spec.name
    return Driver(spec, out, run or spec.run, caffe or locate(), display=display, log=log).execute()
