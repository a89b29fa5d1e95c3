"""The one way caffegen runs a caffe: :func:`train_argv` is its only ``caffe train`` command line, and
:class:`Training` launches it in a run folder (through an :class:`~caffegen.run.executor.Executor`, so it dies with
the driver), follows its log, applies its stop rules (:mod:`caffegen.run.stops`), keeps the snapshots worth keeping
and says how it ended (:func:`caffegen.run.status.ended`). The sweep driver steps many Trainings in its event loop;
``extend``, ``lr-find``, ``sanity`` and ``tune`` follow one with :func:`follow`, which honours the same signals as
the sweep (:class:`StopSignals`).
"""
from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from ..layout import SNAPSHOT_DIR, SOLVER, TRAIN_LOG, parse_snapshot_name
from ..logs.follower import LogFollower, LogTail
from ..toolchain import CaffeInstall
from .executor import LOST, Executor, Handle, Job, LocalExecutor, Slot
from .folder import best_snapshot_iters, prune_snapshots, settle_snapshots, snapshot_record, snapshots, usable_snapshot
from .stops import STOP_GRACE_S, Decision, StopRule
from .status import INTERRUPTED, ended

__all__ = ["train_argv", "Training", "follow", "StopSignals", "resume_point", "disk_full", "local_slot",
           "PRUNE_EVERY_S"]

PRUNE_EVERY_S = 10.0   # while caffe runs, old snapshots are deleted at most this often (the newest two kept)


class Chain(Protocol):
    """The segments of a run whose schedule Caffe lacks (``caffegen.sweep.chain.RunChain``): each a ``caffe train``
    of its own solver, resumed from the previous one's snapshot."""

    def start(self, at: int, tests: Sequence[tuple[int, float]] = ()) -> Any: ...   # .solver, .start, .end

    def next(self, at: int, tests: Sequence[tuple[int, float]] = ()) -> Any: ...    # None: the run is done


def train_argv(caffe: CaffeInstall, *, solver: str = SOLVER, snapshot: str | None = None,
               weights: str | None = None) -> list[str]:
    """``caffe train`` as caffegen always starts it: SIGINT and SIGHUP make caffe snapshot and stop (the driver's
    Ctrl-C, a pruner's or early stop's request, the launcher's signal when the driver dies), resumed from
    ``snapshot`` (its solver state: iteration and momentum) or started from ``weights`` (fine-tuning)."""
    argv = [str(caffe.binary), "train", "-solver", solver, "-sigint_effect", "stop", "-sighup_effect", "stop"]
    if snapshot is not None:
        argv += ["-snapshot", snapshot]
    elif weights:
        argv += ["-weights", weights]
    return argv


def resume_point(run_dir: Path, note: Callable[[str], None] | None = None) -> tuple[Path | None, list[str]]:
    """The newest whole snapshot of ``run_dir`` to resume from (None: start afresh), and what was wrong with each
    newer one (truncated by a kill or a full disk); those broken pieces are removed."""
    state, broken = usable_snapshot(run_dir)
    for problem in broken:
        if note:
            note(f"{run_dir.name}: {problem}: " + (f"resuming from {state.name} instead" if state else
                                                  "no usable snapshot left, restarting from iteration 0"))
    if broken:
        settle_snapshots(run_dir, keep=2)
    return state, broken


def disk_full(path: Path, below: int = 1 << 20) -> str | None:
    """"the disk holding PATH is full (N bytes free)" when less than ``below`` bytes are left there, else None."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    free = st.f_bavail * st.f_frsize
    return f"the disk holding {path} is full ({free} bytes free)" if free < below else None


def local_slot(gpus: Sequence[int] = (), share: int = 1) -> tuple[LocalExecutor, Slot]:
    """One local slot (the first GPU given, else the CPU's cores, or a ``share`` of them: the threads one of a
    sweep's ``share`` slots gets): where a probe or an extension runs."""
    executor = LocalExecutor(jobs=1 if gpus else max(1, share), gpus=tuple(gpus)[:1], per_gpu=1)
    return executor, executor.slots()[0]


class Training:
    """One ``caffe train`` in ``run_dir``, from launch to outcome. Call :meth:`start`, then :meth:`poll` until it
    returns True; :meth:`stop` asks caffe to snapshot and stop (a user's signal), :meth:`abandon` kills it.

    ``metric``: the ranking metric (the best snapshots, the results, what ``stops`` are told at each whole test
    pass); ``stops``: the :class:`~caffegen.run.stops.StopRule` list, asked in order; ``stop_grace``: seconds a
    caffe asked to stop may take to snapshot before it is killed.
    ``resume``: the snapshot to continue from (its log is kept and read: one curve across attempts); without one an
    old ``train.log`` is kept aside as ``train.log.attemptN`` (``fresh``: removed). ``chain``:
    a schedule Caffe lacks, trained segment after segment in the same log; ``on_launch``: told each caffe started (a
    new pid with every segment: who trains the run now)."""

    def __init__(self, run_dir: Path, caffe: CaffeInstall, executor: Executor, slot: Slot, *,
                 metric: str | None = None, stops: Sequence[StopRule] = (), stop_grace: float = STOP_GRACE_S,
                 name: str | None = None, resume: Path | None = None, weights: str | None = None, keep_best: int = 1,
                 top5: str | None = None, attempt: int = 1, fresh: bool = False, chain: Chain | None = None,
                 on_launch: Callable[[Handle], None] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.name = name or self.run_dir.name
        self.caffe, self.executor, self.slot = caffe, executor, slot
        self.metric, self.stops, self.stop_grace = metric, tuple(stops), stop_grace
        self.resume, self.weights = resume, weights
        self.keep_best, self.top5, self.attempt, self.fresh = keep_best, top5, attempt, fresh
        self.chain, self.on_launch = chain, on_launch
        self.segment: Any = None                 # the chain's segment training now
        self.log_path = self.run_dir / TRAIN_LOG
        self.tail = LogTail(self.log_path)
        self.argv = train_argv(caffe, snapshot=str(resume.relative_to(self.run_dir)) if resume else None,
                               weights=weights)
        self.handle: Handle | None = None
        self.started = 0.0
        self.decision: Decision | None = None
        self.stopped_by: int | None = None     # the user's signal that stopped it
        self.abandoned: str | None = None
        self.stop_sent_at: float | None = None
        self.rc: int | None = None
        self.reported = 0                      # the last whole test pass told to the stop rules
        self.overhead_s = 0.0                  # time spent reading the log and deciding (orchestration, not caffe)
        self.disk_note: str | None = None      # "the disk holding ... is full", when it was as caffe failed
        self._pruned_at = 0.0

    @property
    def follower(self) -> LogFollower:
        return self.tail.follower

    # -- life
    def start(self) -> Training:
        """Launch caffe (the run folder's prototxt files must be written)."""
        t0 = time.perf_counter()
        (self.run_dir / SNAPSHOT_DIR).mkdir(parents=True, exist_ok=True)
        if self.log_path.exists():
            if self.fresh:
                self.log_path.unlink()
            elif self.resume is None:        # nothing to resume from: start the log afresh (the old one kept aside)
                os.replace(self.log_path, self.run_dir / f"{TRAIN_LOG}.attempt{self.attempt - 1}")
            else:
                self.tail.read()             # a resumed run keeps its earlier curve
        self.reported = max((r["NumIters"] for r in self.follower.test_rows_seen()), default=0)
        if self.chain is not None:
            at = parse_snapshot_name(self.resume.name)[0] if self.resume else 0
            self.segment = self.chain.start(at, self._tests())
            self.argv = train_argv(self.caffe, solver=self.segment.solver,
                                   snapshot=str(self.resume.relative_to(self.run_dir)) if self.resume else None,
                                   weights=self.weights)
        self._launch()
        self.started = time.time()
        self.overhead_s += time.perf_counter() - t0
        return self

    def _launch(self) -> None:
        self.handle = self.executor.launch(Job(self.name, self.argv, self.run_dir, self.log_path,
                                               env=self.caffe.env()), self.slot)
        if self.on_launch is not None:
            self.on_launch(self.handle)

    def _tests(self) -> list[tuple[int, float]]:
        """(iteration, value) of each test pass of the ranking metric so far (a plateau decides on them)."""
        return self.follower.test_history(self.metric) if self.metric else []

    def _next_segment(self) -> bool:
        """A segment of a chain ended cleanly: start the next from its snapshot. False when the run is done."""
        state, _ = usable_snapshot(self.run_dir)
        at = parse_snapshot_name(state.name)[0] if state is not None else None
        if at is None or at < self.segment.end:
            return False                     # it did not reach its end (a failure is the outcome as it is)
        nxt = self.chain.next(at, self._tests())
        if nxt is None:
            return False
        self.segment = nxt
        self.argv = train_argv(self.caffe, solver=nxt.solver, snapshot=str(state.relative_to(self.run_dir)))
        self._launch()
        return True

    def poll(self) -> bool:
        """Read what caffe logged, tell the stop rules (each whole test pass, then the log so far); True once caffe
        has exited (then :attr:`outcome` says how it ended and the snapshots are settled)."""
        if self.rc is not None:
            return True
        t0 = time.perf_counter()
        rc = self.handle.poll()
        self.tail.read()                     # (after the poll: all a caffe that has exited wrote is read)
        f = self.follower
        if self.metric:
            rows = f.test_rows_seen()
            for row in rows[:-1] if rc is None else rows:   # whole test passes (the last may still be filling)
                it, value = row["NumIters"], row.get(self.metric)
                if it <= self.reported or value is None:
                    continue
                self.reported = it
                for rule in self.stops:
                    verdict = rule.on_test(it, value) if self._free() else None
                    if verdict is not None:
                        self._decided(verdict, rc)
        if rc is None and self._free():
            elapsed = time.time() - self.started
            for rule in self.stops:
                verdict = rule.on_log(f, elapsed)
                if verdict is not None:
                    self._decided(verdict, rc)
                    break
        if rc is None and self.stop_sent_at is not None and time.time() - self.stop_sent_at > self.stop_grace:
            self.handle.kill()
        if rc is None and time.time() - self._pruned_at > PRUNE_EVERY_S:  # the newest may be being written: keep 2
            prune_snapshots(self.run_dir, keep=2, protect=self.best_snapshots())
            self._pruned_at = time.time()
        if rc == 0 and self.chain is not None and self._free() and self._next_segment():
            self.overhead_s += time.perf_counter() - t0
            return False
        if rc is not None:
            self.rc = rc
            self.tail.flush()
            if not self.lost:
                self.disk_note = disk_full(self.run_dir) if rc != 0 else None  # before broken pieces give space back
                whole = rc == 0 and self.decision is None and self.stopped_by is None
                settle_snapshots(self.run_dir, keep=1 if whole else 2, protect=self.best_snapshots())
        self.overhead_s += time.perf_counter() - t0
        return rc is not None

    def _free(self) -> bool:
        return self.decision is None and self.stopped_by is None and self.abandoned is None

    def _decided(self, d: Decision, rc: int | None) -> None:
        self.decision = d
        if rc is None:
            self.stop_sent_at = time.time()
            (self.handle.kill if d.kill else self.handle.interrupt)()

    def stop(self, signum: int = signal.SIGINT) -> None:
        """The user asked to stop (``signum``: the signal they sent): caffe snapshots and exits."""
        if self.rc is None and self.stopped_by is None:
            self.stopped_by = int(signum)
            if self.stop_sent_at is None:
                self.stop_sent_at = time.time()
                self.handle.interrupt()

    def abandon(self, why: str) -> None:
        """Kill caffe now (a second signal: no waiting for its snapshot)."""
        self.abandoned = why
        if self.handle is not None and self.rc is None:
            self.handle.kill()

    # -- how it ended
    @property
    def lost(self) -> bool:
        """The run died with its cluster node (nothing of its outcome is known: the driver retries it)."""
        return self.rc == LOST and self.decision is None and self.stopped_by is None

    @property
    def outcome(self) -> tuple[str, str | None]:
        """(status, reason) once caffe has exited."""
        if self.abandoned is not None:
            return INTERRUPTED, self.abandoned
        decided = (self.decision.status, self.decision.reason) if self.decision else None
        return ended(self.rc if self.rc is not None else 0, decided=decided, stopped_by=self.stopped_by,
                     fatal_line=self.follower.fatal_line, log=self.log_path, disk_note=self.disk_note)

    def results(self) -> dict[str, Any]:
        """What the log says of the run: its best and final values of the ranking metric and of top-5, its first and
        final train loss, its last iteration (the store's result columns)."""
        f, metric, top5 = self.follower, self.metric, self.top5
        best1 = f.best_test(metric) if metric else None
        best5 = f.best_test(top5) if top5 else None
        return dict(best_top1=_finite(best1[0]) if best1 else None, best_iter=best1[1] if best1 else None,
                    best_top5=_finite(best5[0]) if best5 else None,
                    final_top1=_finite(f.last_test.get(metric)) if metric else None,
                    final_top5=_finite(f.last_test.get(top5)) if top5 else None,
                    final_loss=_finite(f.last_loss), first_loss=_finite(f.first_loss), last_iter=f.iteration)

    def best_snapshots(self) -> list[int]:
        """The snapshot iterations nearest the run's best test values (``keep_best`` of them)."""
        metric = self.metric
        tests = self.follower.test_history(metric) if metric else []
        return best_snapshot_iters(tests, [it for it, _ in snapshots(self.run_dir)], self.keep_best, metric or "")

    def snapshot_record(self) -> list[dict[str, Any]]:
        metric = self.metric
        return snapshot_record(self.run_dir, self.follower.test_history(metric) if metric else [],
                               self.best_snapshots())


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


class StopSignals:
    """While inside: SIGINT (Ctrl-C), SIGTERM (Slurm, systemd, docker stop, Kubernetes) and SIGHUP ask to stop
    (:attr:`requested` is the signal; each caffe is then asked to snapshot), and a second one raises
    KeyboardInterrupt (abandon: the caffe processes are killed). The sweep and every single-run command use it, so
    they honour the same signals."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, log: Callable[[str], None] = print, what: str = "each running caffe") -> None:
        self.log, self.what = log, what
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        if self.requested is not None:
            raise KeyboardInterrupt  # a second signal: give up waiting for snapshots
        self.requested = int(signum)
        name = signal.Signals(signum).name
        again = "Ctrl-C" if signum == signal.SIGINT else name
        self.log(f"caffegen: stopping on {name}: asking {self.what} to snapshot ({again} again to abandon)")

    def __enter__(self) -> StopSignals:
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def follow(training: Training, *, log: Callable[[str], None] = print, poll_s: float = 0.25) -> tuple[str, str | None]:
    """Run one Training to its end under :class:`StopSignals`; its (status, reason). A second signal kills caffe
    and says ``interrupted``."""
    with StopSignals(log, what="caffe") as signals:
        try:
            if training.handle is None:
                training.start()
            while not training.poll():
                if signals.requested is not None:
                    training.stop(signals.requested)
                time.sleep(poll_s)
        except KeyboardInterrupt:
            training.abandon(f"abandoned by a second {signal.Signals(signals.requested or signal.SIGINT).name}")
            while not training.poll():
                time.sleep(0.05)
    return training.outcome
