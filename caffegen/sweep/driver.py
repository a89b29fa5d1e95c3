"""The sweep driver: data -> render + validate every variant -> run them in slots -> store -> report.

One thread, one loop: launch while slots are free, read each running log, apply the stop policy
(:mod:`caffegen.sweep.monitor`), record every state change in ``sweep.db`` and ``manifest.json``.
Re-running the same command resumes: final runs are skipped, the others continue from their newest
``.solverstate``.
"""
from __future__ import annotations

import errno
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import CaffegenError, InputError, ValidationError
from ..logs.follower import LogTail
from ..paths import sha256_file
from ..toolchain import CaffeInstall
from .executor import LOST, Executor, Handle, Job, LocalExecutor, Slot
from .monitor import Decision, decide
from .progress import run_view
from .leftovers import settle_leftovers
from .planning import Planner, net_record, run_source
from .processes import launch_prefix
from .runs import (RunPlan, best_snapshot_iters, prune_snapshots, read_manifest, settle_snapshots,
                   snapshot_record, snapshots, usable_snapshot,
                   write_manifest)
from .spec import RunSettings, SweepSpec
from .store import FINAL, Store, open_store, sweep_lock

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # each asks the sweep to snapshot and stop
LIVE_REPORT_S = 30.0   # the live report is rewritten at most this often


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
    reported: int = 0       # the last test pass told to the study

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
    signal: int = signal.SIGINT      # what stopped it, when interrupted: 130 / 143 / 129, as shells report it
    error: str | None = None         # a reason the whole sweep stopped (a full disk)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 128 + int(self.signal)
        return 1 if self.failed or self.error else 0


# --------------------------------------------------------------------------- driver


class Driver:
    """Runs one sweep directory. Use :func:`run_sweep`."""

    def __init__(self, spec: SweepSpec, out_dir: Path, run: RunSettings, caffe: CaffeInstall,
                 executor: Executor | None = None, display: Any = None,
                 log: Callable[[str], None] = print, poll_s: float = 0.25, force: bool = False,
                 live_report: bool = False) -> None:
        self.spec = spec
        self.out_dir = Path(out_dir)
        self.run = run
        self.caffe = caffe
        self.executor = executor or make_executor(run)
        self.display = display
        self.log = log
        self.poll_s = poll_s
        self._stop_requested = False
        self._stop_signal = signal.SIGINT
        self._disk_full: str | None = None
        self.force = force
        self.live_report = live_report
        self._report_due = False
        self._report_at = 0.0
        self._report_proc: subprocess.Popen | None = None
        self.planner = Planner(spec, self.out_dir, run, log)
        self._ordinal = -1
        self.source: Any = None
        self.metric: str | None = run.metric    # the ranking metric and top-5 of the sweep's net (set in execute)
        self.top5: str | None = None
        self._retry: list[RunPlan] = []               # runs lost with their node, to start again first
        self._lost: dict[str, list[dict]] = {}        # variant -> its lost attempts in this sweep (manifest)

    # -- signals: SIGINT (Ctrl-C), SIGTERM (Slurm, systemd, docker stop, Kubernetes) and SIGHUP alike
    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        if self._stop_requested:
            raise KeyboardInterrupt  # a second signal: give up waiting for snapshots (the children are still killed)
        self._stop_requested = True
        self._stop_signal = signal.Signals(signum)
        again = "Ctrl-C" if signum == signal.SIGINT else self._stop_signal.name
        self.log(f"caffegen: stopping on {self._stop_signal.name}: asking each running caffe to snapshot "
                 f"({again} again to abandon)")

    def execute(self) -> SweepResult:
        created = self.out_dir.absolute()  # the outermost folder this sweep will create (None: it exists)
        while not created.parent.exists():
            created = created.parent
        created = None if created.exists() else created
        try:
            return self._execute()
        except (InputError, ValidationError):
            if created is not None:  # the spec's data or net could not be used: leave nothing behind
                shutil.rmtree(created, ignore_errors=True)
            raise

    def _execute(self) -> SweepResult:
        with sweep_lock(self.out_dir):
            store = open_store(self.out_dir)
            try:
                plans, first = self.planner.plans()
                self.metric, self.top5 = self.run.metric or first.metric, first.top5
                search = self.spec.search
                store.set_meta("spec", {"name": self.spec.name, "source": self.spec.source,
                                        "fingerprint": self.spec.fingerprint(), "metric": self.metric,
                                        "top5": self.top5, "net": net_record(first),
                                        "val_images": first.val_images, "seeds": list(self.spec.seeds),
                                        "keep_best": self.run.keep_best,
                                        "search": asdict(search) if search else None})
                for plan in plans:
                    self._register(store, plan)
                settle_leftovers(store, self.out_dir, force=self.force, stop_grace=self.run.stop_grace, log=self.log)
                source = run_source(self.planner, store, plans, first, register=lambda p: self._register(store, p))
                if self.live_report:
                    self.log(f"[sweep] report: {self.out_dir / 'report.html'} (rewritten after each test pass while "
                             "the sweep runs)")
                previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
                try:
                    return self._loop(store, source, total=len(plans) or (search.trials if search else 0))
                finally:
                    for sig, handler in previous.items():
                        signal.signal(sig, handler)
            finally:
                store.close()

    def _register(self, store: Store, plan: RunPlan) -> None:
        v = plan.variant
        self._ordinal += 1
        store.register(v.name, plan.identity, v.axes, plan.solver.max_iter, self._ordinal, group=v.group or v.name,
                       seed=v.seed, test_images=plan.test_images)

    def _loop(self, store: Store, source, total: int) -> SweepResult:
        rows_before = store.all()
        skipped = sum(r.status in FINAL for r in rows_before)
        if skipped:
            self.log(f"[sweep] {skipped} of {max(total, len(rows_before))} runs already finished in {self.out_dir}")

        self.source = source
        free = list(self.executor.slots())
        active: dict[str, Active] = {}
        try:
            while ((source.remaining() or self._retry) and not self._stop_requested) or active:
                while free and not self._stop_requested:
                    plan = self._retry.pop(0) if self._retry else source.next_plan()
                    if plan is None:
                        break
                    slot = free.pop(0)
                    try:
                        active[plan.variant.name] = self._start(store, plan, slot)
                    except CaffegenError as exc:
                        self._record(store, plan.variant.name, status="failed", reason=str(exc), ended_at=_now())
                        self.log(f"[sweep] {plan.variant.name}: failed before launch: {exc}")
                        free.append(slot)
                    except (OSError, sqlite3.OperationalError) as exc:
                        if not self._disk_error(exc):
                            raise
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
                self._refresh_report()
                if active:
                    time.sleep(self.poll_s)
        except KeyboardInterrupt:
            for a in active.values():
                a.handle.kill()
            for a in active.values():
                self._record(store, a.name, status="interrupted", ended_at=_now(), pid=None, pid_start=None,
                             reason=f"abandoned by a second {self._stop_signal.name}")
            self._stop_requested = True
        if self._report_proc is not None:  # the final report must not be overwritten by a late live one
            self._report_proc.wait()
        rows = store.all()
        counts: dict[str, int] = {}
        for r in rows:
            counts[r.status] = counts.get(r.status, 0) + 1
        failed = [(r.variant, r["reason"] or "") for r in rows if r.status == "failed"]
        failed += getattr(source, "failed", [])
        self._show(store, {}, total, final=True)
        return SweepResult(self.out_dir, counts, failed, interrupted=self._stop_requested and not self._disk_full,
                           signal=self._stop_signal, error=self._disk_full)

    # -- one run
    def _start(self, store: Store, plan: RunPlan, slot: Slot) -> Active:
        t0 = time.perf_counter()
        v = plan.variant
        run_dir = self.out_dir / v.name
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "snapshots").mkdir(exist_ok=True)
        for note in self.planner.check(plan):  # a sampled net.* value makes a net plans() has not built yet
            self.log(f"caffegen: note: {note}")
        written = plan.write(run_dir, pycaffe_check=False)
        solver = written.solver
        argv = [str(self.caffe.binary), "train", "-solver", "solver.prototxt", "-sigint_effect", "stop",
                "-sighup_effect", "stop"]
        resume, broken = usable_snapshot(run_dir)
        for problem in broken:
            self.log(f"caffegen: note: {v.name}: {problem}: " + (f"resuming from {resume.name} instead" if resume
                     else "no usable snapshot left, restarting from iteration 0"))
        if broken:
            settle_snapshots(run_dir, keep=2)
        weights = plan.user.weights if plan.user else None
        if resume is not None:
            argv += ["-snapshot", str(resume.relative_to(run_dir))]
        elif weights:
            argv += ["-weights", weights]
        log_path = run_dir / "train.log"
        row = store.get(v.name)
        attempts = (row["attempts"] or 0) + 1 if row else 1
        tail = LogTail(log_path)
        if log_path.exists():
            if resume is None:           # nothing to resume from: start the log afresh (the old one kept aside)
                os.replace(log_path, run_dir / f"train.log.attempt{attempts - 1}")
            else:
                tail.read()              # a resumed run keeps its earlier curve
        manifest = {
            "variant": v.name, "axes": v.axes,
            "params": {"net": asdict(plan.net) if plan.net else plan.identity["net"], "solver": asdict(solver),
                       **({"solver_extras": plan.extras} if plan.extras else {})},
            "net": net_record(plan), "base_solver": plan.identity.get("base_solver"),
            "start": ("resumed from its newest snapshot: -snapshot, not -weights (the run continues its own "
                      "training)" if resume is not None and weights else
                      f"fine-tuned from -weights {weights}" if weights else
                      "resumed from its newest snapshot" if resume is not None else
                      "restarted from iteration 0: " + "; ".join(broken) if broken else "from scratch"),
            "snapshots_discarded": broken,
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
                     pid_start=handle.started, attempts=attempts)
        self.log(f"[sweep] started {v.name}" + (f" (resumed from {resume.name})" if resume else ""))
        done_tests = [r["NumIters"] for r in tail.follower.test_rows_seen()]
        return Active(plan, slot, handle, tail, time.time(), overhead, reported=max(done_tests, default=0))

    def _watch(self, store: Store, a: Active) -> bool:
        """Read the log, apply the stop policy; on exit record the outcome. True when the run ended."""
        t0 = time.perf_counter()
        tested = len(a.tail.follower.test_rows_seen())
        a.tail.read()
        f = a.tail.follower
        rows = f.test_rows_seen()
        if len(rows) != tested:
            self._report_due = True
        rc = a.handle.poll()
        for row in rows[:-1] if rc is None else rows:  # whole test passes (the last one may still be filling)
            it, value = row["NumIters"], row.get(self.metric)
            if it <= a.reported or value is None:
                continue
            a.reported = it
            if a.decision is None and not a.interrupted_by_user and self.source.test_pass(a.name, it, value):
                a.decision = Decision("pruned", f"pruned at iteration {it} (top-1 {value:.3f}): behind the other "
                                      f"runs at this point ({self.spec.search.pruner})", kill=False)
                if rc is None:
                    a.stop_sent_at = time.time()
                    a.handle.interrupt()
                self.log(f"[sweep] {a.name}: {a.decision.reason}")
        if rc is None and a.decision is None and not a.interrupted_by_user:
            d = decide(f, elapsed=time.time() - a.started, diverge_factor=self.run.diverge_factor,
                       patience=self.run.early_stop, metric=self.metric, timeout=self.run.timeout)
            if d is not None:
                a.decision = d
                a.stop_sent_at = time.time()
                (a.handle.kill if d.kill else a.handle.interrupt)()
                self.log(f"[sweep] {a.name}: {d.status}: {d.reason}")
        if rc is None and a.stop_sent_at is not None and time.time() - a.stop_sent_at > self.run.stop_grace:
            a.handle.kill()
        if rc is None and time.time() - a.pruned_at > 10:  # the newest may still be being written: keep two
            prune_snapshots(a.tail.path.parent, keep=2, protect=self._best_snapshots(a))
            a.pruned_at = time.time()
        a.overhead_s += time.perf_counter() - t0   # log parsing + policy: orchestration, not caffe
        if rc is None:
            return False
        if rc == LOST and a.decision is None and not a.interrupted_by_user:
            return self._lost_run(store, a)
        t1 = time.perf_counter()
        a.tail.flush()
        run_dir = a.tail.path.parent
        full = disk_full(run_dir) if rc != 0 else None  # (before the broken snapshot pieces give space back)
        settle_snapshots(run_dir, keep=1 if rc == 0 and a.decision is None and not a.interrupted_by_user else 2,
                         protect=self._best_snapshots(a))
        if a.decision is not None:
            status, reason = a.decision.status, a.decision.reason
        elif a.interrupted_by_user:
            stopped = "stopped by Ctrl-C" if self._stop_signal == signal.SIGINT else f"stopped by {self._stop_signal.name}"
            status, reason = "interrupted", stopped + (" (snapshot kept)" if rc == 0 else "")
        elif rc == 0:
            status, reason = "done", None
        else:
            status = "failed"
            why = f.fatal_line or (f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}")
            reason = (f"{full}: " if full else "") + f"{why} (see {a.tail.path})"
        try:
            self._finish(store, a, status, reason, rc, overhead=a.overhead_s + time.perf_counter() - t1)
        except (OSError, sqlite3.OperationalError) as exc:
            if not self._disk_error(exc):
                raise
        return True

    def _lost_run(self, store: Store, a: Active) -> bool:
        """A run lost with its node (a Ray node died; nothing of its outcome is known): queued again at once, to
        resume from its newest snapshot wherever there is room, up to ``[run] retries`` times in this sweep; then
        failed with the reason. Attempts are counted in the store by ``_start``, as for any restart."""
        a.tail.flush()
        reason = getattr(a.handle, "lost", None) or "lost with its node"
        row = store.get(a.name)
        lost = self._lost.setdefault(a.name, [])
        lost.append({"attempt": row["attempts"], "node": getattr(a.handle, "node", None), "reason": reason,
                     "at": _now()})
        try:
            if len(lost) > self.run.retries:
                self._finish(store, a, "failed", f"lost {len(lost)} times (retries = {self.run.retries}), last: "
                             f"{reason}", LOST, overhead=a.overhead_s)
                return True
            wall = (row["wall_s"] or 0.0) + (time.time() - a.started)
            store.update(a.name, status="pending", reason=f"lost: {reason}; retrying", pid=None, pid_start=None,
                         wall_s=round(wall, 3))
            manifest = read_manifest(a.tail.path.parent)
            manifest.update({"status": "pending", "reason": f"lost: {reason}", **self._where(a)})
            write_manifest(a.tail.path.parent, manifest)
        except (OSError, sqlite3.OperationalError) as exc:
            if not self._disk_error(exc):
                raise
            return True
        self._retry.append(a.plan)
        self.log(f"[sweep] {a.name}: lost ({reason}); retrying from its newest snapshot "
                 f"({len(lost)} of {self.run.retries} retries)")
        return True

    def _where(self, a: Active) -> dict[str, Any]:
        """For the manifest: the cluster node the run ran on (None locally) and its attempts lost with a node."""
        return {"node": getattr(a.handle, "node", None), **({"lost": self._lost[a.name]} if a.name in self._lost
                                                            else {})}

    def _best_snapshots(self, a: Active) -> list[int]:
        """The snapshot iterations nearest the run's best test values (``keep_best`` of them)."""
        tests = a.tail.follower.test_history(self.metric) if self.metric else []
        return best_snapshot_iters(tests, [it for it, _ in snapshots(a.tail.path.parent)], self.run.keep_best,
                                   self.metric or "")

    def _refresh_report(self) -> None:
        """After a test pass, rewrite the live report.html in a child process (at most every LIVE_REPORT_S, one at
        a time): the driver's loop never waits on matplotlib."""
        if not (self.live_report and self._report_due) or time.time() - self._report_at < LIVE_REPORT_S:
            return
        if self._report_proc is not None and self._report_proc.poll() is None:
            return
        self._report_due, self._report_at = False, time.time()
        self._report_proc = subprocess.Popen(
            launch_prefix() + [sys.executable, "-m", "caffegen", "report", str(self.out_dir), "--live"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    def _disk_error(self, exc: BaseException) -> bool:
        """A write of the driver's own hit a full disk: stop the sweep cleanly (each running caffe is asked to
        snapshot and stop; sweep.db keeps its last committed state). False for any other error."""
        if not (isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "full" in str(exc)):
            return False
        if self._disk_full is None:
            self._disk_full = f"the disk holding {self.out_dir} is full ({exc}); free space and rerun to resume"
            self.log(f"caffegen: error: {self._disk_full}")
        self._stop_requested = True
        return True

    def _record(self, store: Store, variant: str, **values: Any) -> None:
        """A store update that a full disk turns into a clean stop instead of a crash."""
        try:
            store.update(variant, **values)
        except (OSError, sqlite3.OperationalError) as exc:
            if not self._disk_error(exc):
                raise

    def _finish(self, store: Store, a: Active, status: str, reason: str | None, rc: int, overhead: float) -> None:
        f = a.tail.follower
        row = store.get(a.name)
        wall = (row["wall_s"] or 0.0) + (time.time() - a.started)
        best1 = f.best_test(self.metric) if self.metric else None
        best5 = f.best_test(self.top5) if self.top5 else None
        summary = dict(
            status=status, reason=reason, ended_at=_now(), pid=None, pid_start=None, wall_s=round(wall, 3),
            best_top1=_finite(best1[0]) if best1 else None, best_iter=best1[1] if best1 else None,
            best_top5=_finite(best5[0]) if best5 else None,
            final_top1=_finite(f.last_test.get(self.metric)), final_top5=_finite(f.last_test.get(self.top5)),
            final_loss=_finite(f.last_loss), first_loss=_finite(f.first_loss), last_iter=f.iteration,
        )
        store.update(a.name, **summary)
        if status in FINAL:
            self.source.end(a.name, status, summary["best_top1"])
        manifest = read_manifest(a.tail.path.parent)
        manifest.update({"status": status, "reason": reason, "exit_status": rc, "ended_at": summary["ended_at"],
                         "wall_s": summary["wall_s"], "overhead_s": round(overhead, 4),
                         "result": {k: summary[k] for k in ("best_top1", "best_top5", "best_iter", "final_top1",
                                                           "final_top5", "final_loss", "last_iter")},
                         "snapshots": snapshot_record(a.tail.path.parent, f.test_history(self.metric) if self.metric
                                                      else [], self._best_snapshots(a))})
        manifest.update(self._where(a))
        write_manifest(a.tail.path.parent, manifest)
        self.log(f"[sweep] {a.name}: {status}" + (f": {reason}" if reason and status == "failed" else "")
                 + (f"  top-1 {summary['best_top1']:.3f}" if summary["best_top1"] is not None else ""))

    def _show(self, store: Store, active: dict[str, Active], total: int, final: bool = False) -> None:
        if self.display is None:
            return
        views = []
        for r in store.all():
            a = active.get(r.variant)
            views.append(run_view(r, a.tail.follower if a else None, self.metric))
        self.display.update(views, total, final=final)


def disk_full(path: Path, below: int = 1 << 20) -> str | None:
    """"the disk holding PATH is full (N bytes free)" when less than ``below`` bytes are left there, else None."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    free = st.f_bavail * st.f_frsize
    return f"the disk holding {path} is full ({free} bytes free)" if free < below else None


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def make_executor(run: RunSettings) -> Executor:
    """The executor ``[run] backend`` names: child processes on this machine, or Ray actors on a cluster."""
    if run.backend == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(address=run.address, jobs=run.jobs, gpu=bool(run.gpus), per_gpu=run.per_gpu)
    return LocalExecutor(jobs=run.jobs, gpus=run.gpus, per_gpu=run.per_gpu)


def run_sweep(spec: SweepSpec, out_dir: Path | None = None, run: RunSettings | None = None,
              caffe: CaffeInstall | None = None, display: Any = None,
              log: Callable[[str], None] = print, force: bool = False, live_report: bool = False) -> SweepResult:
    """Run (or resume) every variant of ``spec`` in ``out_dir`` (default ``runs/<spec.name>``); ``force`` kills a
    caffe that an earlier, dead driver left training a run of it (else it is asked to stop, and waited for);
    ``live_report`` rewrites report.html while the sweep runs."""
    from ..toolchain import locate

    out = Path(out_dir) if out_dir else Path("runs") / spec.name
    return Driver(spec, out, run or spec.run, caffe or locate(), display=display, log=log, force=force,
                  live_report=live_report).execute()
