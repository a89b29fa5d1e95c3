"""The sweep driver: data -> render + validate every variant -> run them in slots -> store -> report.

One thread, one loop: launch while slots are free, step each run's :class:`~caffegen.run.trainer.Training` (it reads
the log and applies the stop policy), tell the run source each test pass (a pruner), record every state change in
``sweep.db`` and ``manifest.json``. Re-running the same command resumes: final runs are skipped, the others
continue from their newest ``.solverstate``.
"""
from __future__ import annotations

import errno
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import CaffegenError, InputError, ValidationError
from ..layout import REPORT_HTML, default_out
from ..logs.curves import is_loss_metric, metric_label
from ..paths import sha256_file
from ..run.backends import make_executor
from ..run.executor import Executor, Slot
from ..run.folder import read_manifest, write_manifest
from ..run.stops import Decision
from ..run.processes import launch_prefix
from ..run.status import FAILED, FINAL, INTERRUPTED, PENDING, PRUNED, RUNNING
from ..run.trainer import StopSignals, Training, resume_point
from ..toolchain import CaffeInstall
from .leftovers import settle_leftovers
from .planning import Planner, RunSource, net_record, run_source
from .progress import run_view
from .chain import RunChain
from .runs import RunPlan
from .spec import RunSettings, SweepSpec
from .store import Store, open_store, record_spec, sweep_lock

LIVE_REPORT_S = 30.0   # the live report is rewritten at most this often


@dataclass
class Active:
    """A run of the sweep whose caffe is running now."""

    plan: RunPlan
    slot: Slot
    training: Training
    tested: int = 0         # its test passes seen so far (a new one makes the live report due)

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
                 live_report: bool = False, tensorboard: Path | None = None) -> None:
        self.spec = spec
        self.out_dir = Path(out_dir)
        self.run = run
        self.caffe = caffe
        self.executor = executor or make_executor(run)
        self.display = display
        self.log = log
        self.poll_s = poll_s
        self.signals = StopSignals(log)
        self._disk_full: str | None = None
        self.force = force
        self.live_report = live_report
        self.tensorboard = tensorboard   # the live report also exports a TensorBoard log here
        self._report_due = False
        self._report_at = 0.0
        self._report_proc: subprocess.Popen | None = None
        self.planner = Planner(spec, self.out_dir, run, log)
        self._ordinal = -1
        self.source: RunSource | None = None
        self.metric: str | None = run.metric    # the ranking metric and top-5 of the sweep's net (set in execute)
        self.top5: str | None = None
        self._retry: list[RunPlan] = []               # runs lost with their node, to start again first
        self._lost: dict[str, list[dict]] = {}        # variant -> its lost attempts in this sweep (manifest)

    @property
    def stopping(self) -> bool:
        """A signal asked the sweep to stop, or the disk filled up."""
        return self.signals.requested is not None or self._disk_full is not None

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
            store = open_store(self.out_dir, rebuild=True, log=self.log)
            try:
                plans, first = self.planner.plans()
                self.metric, self.top5 = self.run.metric or first.metric, first.top5
                search = self.spec.search
                record_spec(store, self.out_dir, {
                    "name": self.spec.name, "source": self.spec.source, "fingerprint": self.spec.fingerprint(),
                    "metric": self.metric, "maximize": not is_loss_metric(self.metric), "top5": self.top5,
                    "net": net_record(first), "val_images": first.val_images, "seeds": list(self.spec.seeds),
                    "keep_best": self.run.keep_best, "search": asdict(search) if search else None,
                    "run": {k: getattr(self.run, k) for k in ("diverge_factor", "early_stop", "timeout", "stop_grace",
                                                              "keep_best", "metric")}})
                for plan in plans:
                    self._register(store, plan)
                settle_leftovers(store, self.out_dir, force=self.force, stop_grace=self.run.stop_grace, log=self.log)
                source = run_source(self.planner, store, plans, first, self.metric,
                                    register=lambda p: self._register(store, p))
                if self.live_report:
                    self.log(f"[sweep] report: {self.out_dir / REPORT_HTML} (rewritten after each test pass while "
                             "the sweep runs)")
                with self.signals:
                    return self._loop(store, source, total=len(plans) or (search.trials if search else 0))
            finally:
                store.close()

    def _register(self, store: Store, plan: RunPlan) -> None:
        v = plan.variant
        self._ordinal += 1
        store.register(v.name, plan.identity, v.axes, plan.solver.max_iter, self._ordinal, group=v.group or v.name,
                       seed=v.seed, test_images=plan.test_images)

    def _loop(self, store: Store, source: RunSource, total: int) -> SweepResult:
        rows_before = store.all()
        skipped = sum(r.status in FINAL for r in rows_before)
        if skipped:
            self.log(f"[sweep] {skipped} of {max(total, len(rows_before))} runs already finished in {self.out_dir}")

        self.source = source
        free = list(self.executor.slots())
        active: dict[str, Active] = {}
        source.spent = lambda: (sum(r["wall_s"] or 0.0 for r in store.all())
                                + sum(time.time() - a.training.started for a in active.values()))
        abandoned = False
        try:
            while ((source.remaining() or self._retry) and not self.stopping) or active:
                while free and not self.stopping:
                    plan = self._retry.pop(0) if self._retry else source.next_plan()
                    if plan is None:
                        break
                    slot = free.pop(0)
                    try:
                        active[plan.variant.name] = self._start(store, plan, slot)
                    except CaffegenError as exc:
                        self._record(store, plan.variant.name, status=FAILED, reason=str(exc), ended_at=_now())
                        self.log(f"[sweep] {plan.variant.name}: failed before launch: {exc}")
                        free.append(slot)
                    except (OSError, sqlite3.OperationalError) as exc:
                        if not self._disk_error(exc):
                            raise
                        free.append(slot)
                for name in list(active):
                    a = active[name]
                    if self._watch(store, a):
                        del active[name]
                        free.append(a.slot)
                        free.sort(key=lambda s: s.index)
                if self.stopping:
                    for a in active.values():
                        a.training.stop(self.signals.requested or signal.SIGINT)
                self._show(store, active, total)
                self._refresh_report()
                if active:
                    time.sleep(self.poll_s)
        except KeyboardInterrupt:
            abandoned = True
            why = f"abandoned by a second {signal.Signals(self.signals.requested or signal.SIGINT).name}"
            for a in active.values():
                a.training.abandon(why)
            for a in active.values():
                self._record(store, a.name, status=INTERRUPTED, ended_at=_now(), pid=None, pid_start=None, reason=why)
        if self._report_proc is not None:  # the final report must not be overwritten by a late live one
            self._report_proc.wait()
        rows = store.all()
        counts: dict[str, int] = {}
        for r in rows:
            counts[r.status] = counts.get(r.status, 0) + 1
        failed = [(r.variant, r["reason"] or "") for r in rows if r.status == FAILED]
        failed += getattr(source, "failed", [])
        self._show(store, {}, total, final=True)
        interrupted = (self.signals.requested is not None or abandoned) and not self._disk_full
        return SweepResult(self.out_dir, counts, failed, interrupted=interrupted,
                           signal=self.signals.requested or signal.SIGINT, error=self._disk_full)

    # -- one run
    def _start(self, store: Store, plan: RunPlan, slot: Slot) -> Active:
        v = plan.variant
        run_dir = self.out_dir / v.name
        run_dir.mkdir(parents=True, exist_ok=True)
        for note in self.planner.check(plan):  # a sampled net.* value makes a net plans() has not built yet
            self.log(f"caffegen: note: {note}")
        written = plan.write(run_dir, pycaffe_check=False)
        solver = written.solver
        resume, broken = resume_point(run_dir, note=lambda line: self.log(f"caffegen: note: {line}"))
        weights = plan.user.weights if plan.user else None
        row = store.get(v.name)
        attempts = (row["attempts"] or 0) + 1 if row else 1
        chain = RunChain(plan.solver, run_dir, metric=self.metric, maximize=not is_loss_metric(self.metric or "")) \
            if plan.solver.is_chain else None

        def launched(handle) -> None:   # each segment of a chain is a new caffe: the store says who trains the run
            if chain is not None and chain.segments() and len(chain.segments()) > 1:
                self._record(store, v.name, pid=handle.pid, pid_start=handle.started)
                manifest = read_manifest(run_dir)
                manifest.update(pid=handle.pid, pid_start=handle.started, segments=chain.segments())
                write_manifest(run_dir, manifest)

        stops = self.run.stops(self.metric, judge=lambda it, value: self._judge(v.name, it, value))
        training = Training(run_dir, self.caffe, self.executor, slot, metric=self.metric, stops=stops,
                            stop_grace=self.run.stop_grace, name=v.name, resume=resume, weights=weights,
                            keep_best=self.run.keep_best, top5=self.top5, attempt=attempts, chain=chain,
                            on_launch=launched)
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
            "command": training.argv, "random_seed": solver.random_seed, "host": socket.gethostname(),
            "slot": asdict(slot), "attempt": attempts, "resumed_from": str(resume) if resume else None,
            "started_at": _now(), "status": RUNNING,
            # what a rebuilt store needs (store.rebuild_store): the run's identity and its row's keys
            "identity": plan.identity, "max_iter": plan.solver.max_iter, "ordinal": row["ordinal"] if row else None,
            "group": v.group or v.name, "seed": v.seed, "test_images": plan.test_images,
            "trial": self.source.trial_of(v.name),
            **({"chain": {"schedule": solver.lr_policy, "params": solver.policy_params()}} if chain else {}),
        }
        training.start()
        manifest.update(pid=training.handle.pid, pid_start=training.handle.started,
                        **({"segments": chain.segments(), "command": training.argv} if chain else {}))
        write_manifest(run_dir, manifest)
        store.update(v.name, status=RUNNING, reason=None, started_at=manifest["started_at"], pid=training.handle.pid,
                     pid_start=training.handle.started, attempts=attempts)
        self.log(f"[sweep] started {v.name}" + (f" (resumed from {resume.name})" if resume else ""))
        return Active(plan, slot, training, tested=len(training.follower.test_rows_seen()))

    def _judge(self, name: str, it: int, value: float) -> Decision | None:
        """A whole test pass of a run, told to the run source: a pruner may stop it (with a snapshot)."""
        if not self.source.test_pass(name, it, value):
            return None
        d = Decision(PRUNED, f"pruned at iteration {it} ({metric_label(self.metric)} {value:.3f}): "
                     f"{self.source.prune_reason(name, it, value)}", kill=False)
        self.log(f"[sweep] {name}: {d.reason}")
        return d

    def _watch(self, store: Store, a: Active) -> bool:
        """Step the run; on exit record the outcome. True when the run ended."""
        t = a.training
        had_decision = t.decision is not None
        ended = t.poll()
        tested = len(t.follower.test_rows_seen())
        if tested != a.tested:
            a.tested, self._report_due = tested, True
        if t.decision is not None and not had_decision and t.decision.status != PRUNED:
            self.log(f"[sweep] {a.name}: {t.decision.status}: {t.decision.reason}")
        if not ended:
            return False
        if t.lost:
            return self._lost_run(store, a)
        status, reason = t.outcome
        try:
            self._finish(store, a, status, reason)
        except (OSError, sqlite3.OperationalError) as exc:
            if not self._disk_error(exc):
                raise
        return True

    def _lost_run(self, store: Store, a: Active) -> bool:
        """A run lost with its node (a Ray node died; nothing of its outcome is known): queued again at once, to
        resume from its newest snapshot wherever there is room, up to ``[run] retries`` times in this sweep; then
        failed with the reason. Attempts are counted in the store by ``_start``, as for any restart."""
        t = a.training
        reason = getattr(t.handle, "lost", None) or "lost with its node"
        row = store.get(a.name)
        lost = self._lost.setdefault(a.name, [])
        lost.append({"attempt": row["attempts"], "node": getattr(t.handle, "node", None), "reason": reason,
                     "at": _now()})
        try:
            if len(lost) > self.run.retries:
                self._finish(store, a, FAILED, f"lost {len(lost)} times (retries = {self.run.retries}), last: "
                             f"{reason}")
                return True
            wall = (row["wall_s"] or 0.0) + (time.time() - t.started)
            store.update(a.name, status=PENDING, reason=f"lost: {reason}; retrying", pid=None, pid_start=None,
                         wall_s=round(wall, 3))
            manifest = read_manifest(t.run_dir)
            manifest.update({"status": PENDING, "reason": f"lost: {reason}", **self._where(a)})
            write_manifest(t.run_dir, manifest)
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
        return {"node": getattr(a.training.handle, "node", None),
                **({"lost": self._lost[a.name]} if a.name in self._lost else {})}

    def _refresh_report(self) -> None:
        """After a test pass, rewrite the live report.html in a child process (at most every LIVE_REPORT_S, one at
        a time): the driver's loop never waits on matplotlib."""
        if not (self.live_report and self._report_due) or time.time() - self._report_at < LIVE_REPORT_S:
            return
        if self._report_proc is not None and self._report_proc.poll() is None:
            return
        self._report_due, self._report_at = False, time.time()
        tb = ["--tensorboard", str(self.tensorboard)] if self.tensorboard else []
        self._report_proc = subprocess.Popen(
            launch_prefix() + [sys.executable, "-m", "caffegen", "report", str(self.out_dir), "--live", *tb],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    def _disk_error(self, exc: BaseException) -> bool:
        """A write of the driver's own hit a full disk: stop the sweep cleanly (each running caffe is asked to
        snapshot and stop; sweep.db keeps its last committed state). False for any other error."""
        if not (isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "full" in str(exc)):
            return False
        if self._disk_full is None:
            self._disk_full = f"the disk holding {self.out_dir} is full ({exc}); free space and rerun to resume"
            self.log(f"caffegen: error: {self._disk_full}")
        return True

    def _record(self, store: Store, variant: str, **values: Any) -> None:
        """A store update that a full disk turns into a clean stop instead of a crash."""
        try:
            store.update(variant, **values)
        except (OSError, sqlite3.OperationalError) as exc:
            if not self._disk_error(exc):
                raise

    def _finish(self, store: Store, a: Active, status: str, reason: str | None) -> None:
        t = a.training
        row = store.get(a.name)
        wall = (row["wall_s"] or 0.0) + (time.time() - t.started)
        results = t.results()
        summary = dict(status=status, reason=reason, ended_at=_now(), pid=None, pid_start=None,
                       wall_s=round(wall, 3), **results)
        store.update(a.name, **summary)
        if status in FINAL:
            self.source.end(a.name, status, summary["best_top1"])
        manifest = read_manifest(t.run_dir)
        manifest.update({"status": status, "reason": reason, "exit_status": t.rc, "ended_at": summary["ended_at"],
                         "pid": None, "pid_start": None,
                         "wall_s": summary["wall_s"], "overhead_s": round(t.overhead_s, 4),
                         "result": {k: summary[k] for k in ("best_top1", "best_top5", "best_iter", "final_top1",
                                                           "final_top5", "final_loss", "last_iter")},
                         "snapshots": t.snapshot_record(),
                         **({"segments": t.chain.segments()} if t.chain is not None else {})})
        manifest.update(self._where(a))
        write_manifest(t.run_dir, manifest)
        self.log(f"[sweep] {a.name}: {status}" + (f": {reason}" if reason and status == FAILED else "")
                 + (f"  {metric_label(self.metric)} {summary['best_top1']:.3f}" if summary["best_top1"] is not None
                    else ""))

    def _show(self, store: Store, active: dict[str, Active], total: int, final: bool = False) -> None:
        if self.display is None:
            return
        views = []
        for r in store.all():
            a = active.get(r.variant)
            views.append(run_view(r, a.training.follower if a else None, self.metric))
        self.display.update(views, total, final=final)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def run_sweep(spec: SweepSpec, out_dir: Path | None = None, run: RunSettings | None = None,
              caffe: CaffeInstall | None = None, display: Any = None,
              log: Callable[[str], None] = print, force: bool = False, live_report: bool = False,
              tensorboard: Path | None = None) -> SweepResult:
    """Run (or resume) every variant of ``spec`` in ``out_dir`` (default ``runs/<spec.name>``); ``force`` kills a
    caffe that an earlier, dead driver left training a run of it (else it is asked to stop, and waited for);
    ``live_report`` rewrites report.html while the sweep runs (and a TensorBoard log into ``tensorboard``)."""
    from ..toolchain import locate

    out = Path(out_dir) if out_dir else default_out(spec.name)
    return Driver(spec, out, run or spec.run, caffe or locate(), display=display, log=log, force=force,
                  live_report=live_report, tensorboard=tensorboard).execute()
