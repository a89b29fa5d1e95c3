"""The sweep driver: data -> render + validate every variant -> run them in slots -> store -> report.

One thread, one loop: launch while slots are free, read each running log, apply the stop policy
(:mod:`caffegen.sweep.monitor`), record every state change in ``sweep.db`` and ``manifest.json``.
Re-running the same command resumes: final runs are skipped, the others continue from their newest
``.solverstate``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import CaffegenError, InputError
from ..parse import LogFollower
from ..toolchain import CaffeInstall
from .executor import Executor, Handle, Job, LocalExecutor, Slot
from .monitor import Decision, LogTail, decide
from .spec import RunSettings, SweepSpec, Variant, expand
from .store import FINAL, Store, open_store, sweep_lock

TOP1 = "accuracy_at_1"
TOP5 = "accuracy_at_5"
SNAPSHOT_PREFIX = "snapshots/snap"
STOP_GRACE_S = 120.0   # after SIGINT, how long a run may take to snapshot before it is killed


@dataclass
class RunView:
    """What the progress display shows for one run."""

    variant: str
    status: str
    iteration: int = 0
    max_iter: int = 0
    loss: float | None = None
    top1: float | None = None
    eta_s: float | None = None
    reason: str = ""


@dataclass
class Active:
    variant: Variant
    slot: Slot
    handle: Handle
    tail: LogTail
    started: float
    overhead_s: float
    decision: Decision | None = None
    stop_sent_at: float | None = None
    interrupted_by_user: bool = False
    pruned_at: float = 0.0
    start_iter: int | None = None      # iteration the log stood at when this attempt began (for the ETA)


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


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class PreparedData:
    train_list: Path
    val_list: Path
    root_folder: str
    num_classes: int
    labels: list[str]


def prepare_data(spec: SweepSpec, out_dir: Path, log: Callable[[str], None]) -> PreparedData:
    """Lists for the sweep, in ``out_dir/lists`` (demo images are generated once into the cache)."""
    from ..data import lists as L

    d = spec.data
    lists_dir = out_dir / "lists"
    if d.train_list:
        train, val = Path(d.train_list).expanduser(), Path(d.val_list or "").expanduser()
        for p in (train, val):
            if not p.is_file():
                raise InputError(f"{spec.source}: [data] list file not found: {p}")
        labels = _labels_from_lists(train, val)
        return PreparedData(train.resolve(), val.resolve(), d.root_folder, len(labels), labels)
    if d.demo is not None:
        root = demo_dataset(d.demo, log)
    else:
        root = Path(d.root or "").expanduser()
        if not root.exists():
            raise InputError(f"{spec.source}: [data] root not found: {root}")
    train_path, val_path, labels_path = (lists_dir / "list_train_shuffle.txt", lists_dir / "list_val_shuffle.txt",
                                         lists_dir / "labels.txt")
    if not (train_path.exists() and val_path.exists() and labels_path.exists()):
        listset = L.scan(root, val_fraction=d.val_fraction, seed=d.seed, classes=d.classes, per_class=d.per_class)
        for path, reason in listset.skipped:
            log(f"warning: skipped {path}: {reason}")
        L.write_lists(listset, lists_dir)
    labels = [ln for ln in labels_path.read_text(encoding="utf-8").splitlines() if ln.strip()]  # line i: label i
    return PreparedData(train_path.resolve(), val_path.resolve(), "", len(labels), labels)


def _labels_from_lists(*paths: Path) -> list[str]:
    labels: set[int] = set()
    for p in paths:
        for ln in p.read_text(encoding="utf-8").splitlines():
            if ln.strip():
                try:
                    labels.add(int(ln.rsplit(" ", 1)[1]))
                except (IndexError, ValueError):
                    raise InputError(f"{p}: line {ln!r} is not 'path label'") from None
    n = max(labels) + 1 if labels else 0
    return [str(i) for i in range(n)]


def demo_dataset(params: dict[str, Any], log: Callable[[str], None]) -> Path:
    """The demo image set for ``params``, generated once into ``<cache>/demo/<hash>``."""
    from ..data import demo
    from ..toolchain.build import cache_root

    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    root = cache_root() / "demo" / key
    done = root / ".complete"
    if not done.exists():
        log(f"[data] generating the demo image set into {root}")
        tmp = root.with_name(root.name + ".tmp")
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        demo.generate(tmp, **params)
        shutil.rmtree(root, ignore_errors=True)
        os.replace(tmp, root)
        done.write_text(json.dumps(params))
    return root


# --------------------------------------------------------------------------- render


def build_options(variant: Variant, data: PreparedData, gpu: bool) -> tuple[Any, Any]:
    """NetOptions + SolverOptions of one variant, with the data and run-folder conventions filled in."""
    from ..render import NetOptions, SolverOptions

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
    return NetOptions(**net), SolverOptions(**solver)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_SNAP_RE = re.compile(r"_iter_(\d+)\.solverstate(\.h5)?$")


def _snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for p in (run_dir / "snapshots").glob("*.solverstate*"):
        m = _SNAP_RE.search(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def newest_solverstate(run_dir: Path) -> Path | None:
    found = _snapshots(run_dir)
    return found[-1][1] if found else None


def prune_snapshots(run_dir: Path, keep: int = 1) -> None:
    """Delete all but the ``keep`` newest snapshot pairs (.solverstate + .caffemodel)."""
    for _, state in _snapshots(run_dir)[:-keep]:
        model = state.with_name(_SNAP_RE.sub(lambda m: f"_iter_{m.group(1)}.caffemodel" + (m.group(2) or ""),
                                             state.name))
        for p in (state, model):
            p.unlink(missing_ok=True)


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
        variants = expand(self.spec)
        with sweep_lock(self.out_dir):
            store = open_store(self.out_dir)
            try:
                store.set_meta("spec", {"name": self.spec.name, "source": self.spec.source,
                                        "fingerprint": self.spec.fingerprint(), "metric": self.run.metric})
                data = prepare_data(self.spec, self.out_dir, self.log)
                gpu = bool(self.run.gpus)
                plans = []
                for i, v in enumerate(variants):
                    net, solver = build_options(v, data, gpu)
                    params = {"net": dataclasses.asdict(net), "solver": _identity(dataclasses.asdict(solver))}
                    store.register(v.name, params, v.axes, solver.max_iter, i)
                    plans.append((v, net, solver))
                previous = signal.signal(signal.SIGINT, self._on_sigint)
                try:
                    return self._loop(store, plans)
                finally:
                    signal.signal(signal.SIGINT, previous)
            finally:
                store.close()

    def _loop(self, store: Store, plans: list) -> SweepResult:
        pending = [p for p in plans if (store.get(p[0].name).status not in FINAL)]
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
                    v, net, solver = pending.pop(0)
                    slot = free.pop(0)
                    try:
                        active[v.name] = self._start(store, v, net, solver, slot)
                    except CaffegenError as exc:
                        store.update(v.name, status="failed", reason=str(exc), ended_at=_now())
                        self.log(f"[sweep] {v.name}: failed before launch: {exc}")
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
                store.update(a.variant.name, status="interrupted", reason="abandoned by a second Ctrl-C",
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
    def _start(self, store: Store, v: Variant, net, solver, slot: Slot) -> Active:
        from ..render import render_net, write_variant

        t0 = time.perf_counter()
        run_dir = self.out_dir / v.name
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "snapshots").mkdir(exist_ok=True)
        net_key = hashlib.sha256(render_net(net).encode()).hexdigest()
        paths = write_variant(run_dir, net, solver, validate=True, pycaffe_check=net_key not in self._validated_nets)
        self._validated_nets.add(net_key)
        argv = [str(self.caffe.binary), "train", "-solver", "solver.prototxt", "-sigint_effect", "stop"]
        resume = newest_solverstate(run_dir)
        if resume is not None:
            argv += ["-snapshot", str(resume.relative_to(run_dir))]
        log_path = run_dir / "train.log"
        row = store.get(v.name)
        attempts = (row["attempts"] or 0) + 1 if row else 1
        tail = LogTail(log_path, LogFollower())
        if log_path.exists():
            if resume is None:           # nothing to resume from: start the log afresh
                log_path.unlink()
            else:
                tail.read()              # a resumed run keeps its earlier curve
        manifest = {
            "variant": v.name, "axes": v.axes, "params": {"net": dataclasses.asdict(net),
                                                         "solver": dataclasses.asdict(solver)},
            "files": {k: {"path": p.name, "sha256": _sha256(p)} for k, p in paths.items()},
            "caffe": {"binary": str(self.caffe.binary), "version": self.caffe.version, "origin": self.caffe.origin},
            "command": argv, "random_seed": solver.random_seed, "host": socket.gethostname(),
            "slot": dataclasses.asdict(slot), "attempt": attempts, "resumed_from": str(resume) if resume else None,
            "started_at": _now(), "status": "running",
        }
        _write_json(run_dir / "manifest.json", manifest)
        job = Job(v.name, argv, run_dir, log_path, env=self.caffe.env())
        handle = self.executor.launch(job, slot)
        overhead = time.perf_counter() - t0
        store.update(v.name, status="running", reason=None, started_at=manifest["started_at"], pid=handle.pid,
                     attempts=attempts)
        self.log(f"[sweep] started {v.name}" + (f" (resumed from {resume.name})" if resume else ""))
        return Active(v, slot, handle, tail, time.time(), overhead)

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
                self.log(f"[sweep] {a.variant.name}: {d.status}: {d.reason}")
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
        row = store.get(a.variant.name)
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
        store.update(a.variant.name, **summary)
        mpath = a.tail.path.parent / "manifest.json"
        manifest = json.loads(mpath.read_text()) if mpath.exists() else {}
        manifest.update({"status": status, "reason": reason, "exit_status": rc, "ended_at": summary["ended_at"],
                         "wall_s": summary["wall_s"], "overhead_s": round(overhead, 4),
                         "result": {k: summary[k] for k in ("best_top1", "best_top5", "best_iter", "final_top1",
                                                           "final_top5", "final_loss", "last_iter")}})
        _write_json(mpath, manifest)
        self.log(f"[sweep] {a.variant.name}: {status}" + (f": {reason}" if reason and status == "failed" else "")
                 + (f"  top-1 {summary['best_top1']:.3f}" if summary["best_top1"] is not None else ""))

    def _show(self, store: Store, active: dict[str, Active], total: int, final: bool = False) -> None:
        if self.display is None:
            return
        views = []
        for r in store.all():
            view = RunView(r.variant, r.status, r["last_iter"] or 0, r["max_iter"] or 0, r["final_loss"],
                           r["best_top1"], None, r["reason"] or "")
            a = active.get(r.variant)
            if a is not None:
                f = a.tail.follower
                elapsed = time.time() - a.started
                view.iteration = f.iteration or 0
                view.loss = f.last_loss
                view.top1 = f.last_test.get(self.run.metric)
                if a.start_iter is None:
                    a.start_iter = view.iteration
                done_iters = view.iteration - a.start_iter
                if done_iters > 0:
                    view.eta_s = (view.max_iter - view.iteration) * elapsed / done_iters
            views.append(view)
        self.display.update(views, total, final=final)


def _identity(solver: dict) -> dict:
    """Solver fields that define a run (device placement does not)."""
    return {k: v for k, v in solver.items() if k not in ("solver_mode", "device_id")}


def _finite(x: float | None) -> float | None:
    import math

    return x if x is not None and math.isfinite(x) else None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def run_sweep(spec: SweepSpec, out_dir: Path | None = None, run: RunSettings | None = None,
              caffe: CaffeInstall | None = None, display: Any = None,
              log: Callable[[str], None] = print) -> SweepResult:
    """Run (or resume) every variant of ``spec`` in ``out_dir`` (default ``runs/<spec.name>``)."""
    from ..toolchain import locate

    out = Path(out_dir) if out_dir else Path("runs") / spec.name
    return Driver(spec, out, run or spec.run, caffe or locate(), display=display, log=log).execute()
