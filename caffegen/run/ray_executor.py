"""Runs on a Ray cluster: the same :class:`~caffegen.run.executor.Executor` as the local one, one Ray actor per
``caffe train``, so the driver (store, stop policy, pruning, resume) does not change.

Logs flow through the file system: every node sees the sweep folder at the same absolute path (NFS, Lustre, a
Kubernetes RWX volume); the actor starts caffe there with its output appended to the run's ``train.log``, and the
driver reads that file as it reads a local run's. Stopping works as locally: the actor is threaded, so a SIGINT
(caffe snapshots and stops) or SIGKILL reaches caffe's process group while the actor's ``run`` waits on it.

A run whose actor dies with its node (a raylet killed, a machine gone) is *lost*: ``poll()`` returns
:data:`~caffegen.run.executor.LOST` and ``handle.lost`` says why, and the driver queues it again; the retry
resumes from the run's newest snapshot on another node (never one it was lost on, while there is another). Ray itself is imported only here, and only
when a sweep or ``caffegen doctor`` asks for it (``pip install 'caffegen[ray]'``).
"""
from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import CaffegenError, InputError
from .executor import LOST, Job, Slot
from .processes import launch_prefix

RAY_MIN = (2, 9)
QUIET_S = 3.0         # a lost run's log must stay unchanged this long before its retry starts...
QUIET_MAX_S = 120.0   # ...(a caffe of a half-dead node may still be writing its SIGINT snapshot), at most this long
SIGNAL_WAIT_S = 5.0   # how long kill() waits for the actor to confirm (the driver may exit right after)
PROBE_TIMEOUT_S = 120.0
NOT_FORWARDED = ("PYTHONPATH",)   # driver-side paths: each node has its own
CHILD_KILL = "RAY_kill_child_processes_on_worker_exit"   # Ray's worker SIGKILLs its children as it exits (default)


def require_ray() -> ModuleType:
    """Ray, or one line with the fix: ``--backend ray`` without Ray is a usage error (exit 2)."""
    try:
        import ray
    except ImportError as exc:
        raise InputError(f"--backend ray needs Ray, which is not importable here ({exc}): "
                         "pip install 'caffegen[ray]'") from None
    try:
        have = tuple(int(p) for p in ray.__version__.split(".")[:2])
    except ValueError:
        have = RAY_MIN
    if have < RAY_MIN:
        raise InputError(f"--backend ray needs Ray >= {'.'.join(map(str, RAY_MIN))}, this is {ray.__version__}: "
                         "pip install 'caffegen[ray]'")
    return ray


REACH_TIMEOUT_S = 5.0


def reachable(address: str | None) -> None:
    """A cluster answers at ``address`` (HOST:PORT, or ray://HOST:PORT): one InputError line when nothing listens
    there, instead of Ray's client waiting minutes on its own time-outs. ``auto`` and None are Ray's to resolve."""
    if not address or address == "auto":
        return
    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--address {address!r}: give the cluster's HOST:PORT (the head node's GCS, 6379 by "
                         "default), ray://HOST:10001, or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S):
            pass
    except OSError as exc:
        raise InputError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}): start one "
                         "with `ray start --head` on that machine, or give the address its head node printed") from None


def connect(address: str | None) -> tuple[ModuleType, str]:
    """Join the cluster at ``address`` ("auto": the one ``ray start`` made on this machine), or with None the one
    ``$RAY_ADDRESS`` names (``ray job submit`` sets it), else start a local Ray instance, as Ray Tune does.
    Returns Ray and a description of where it connected."""
    ray = require_ray()
    target = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return ray, target or "a local Ray instance"
    kwargs: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.WARNING, namespace="caffegen")
    if target is None:   # our own instance: no dashboard, no usage report from a sweep on a laptop
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if launch_prefix():   # (its raylet and workers inherit this: see RayExecutor.runtime_env)
            os.environ.setdefault(CHILD_KILL, "0")
        kwargs.update(address="local", include_dashboard=False)
        # (its notice that token authentication is on by default is not news to a sweep's user: it stays on)
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    else:
        kwargs.update(address=target)
    # ray.init installs a SIGTERM handler that exits at once (and, for its own local instance, one that kills it):
    # the sweep's own handlers (snapshot every run, then exit 143) must stay in charge.
    main = threading.current_thread() is threading.main_thread()
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)} if main else {}
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CaffegenError(f"cannot join the Ray cluster at {target}: {first}") from None
    finally:
        for sig, handler in kept.items():
            if handler is not None:
                signal.signal(sig, handler)
    return ray, target or "a local Ray instance"


def _alive_nodes(ray: ModuleType) -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]


# --------------------------------------------------------------------------- the actor (runs on a node)


class CaffeRun:
    """One ``caffe train`` on the node Ray placed this actor on (made remote with ``max_concurrency`` > 1, so
    :meth:`signal` runs while :meth:`run` waits)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._pending: int | None = None   # a signal that arrived before caffe started
        self._ready = threading.Event()
        self._info: dict[str, Any] = {}

    def _where(self) -> dict[str, Any]:
        import ray

        node = ray.get_runtime_context().get_node_id()
        # the address the node registered with (ray start --node-ip-address), not a guess from this process
        ip = next((n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node), None)
        return {"id": node, "ip": ip or ray.util.get_node_ip_address(), "host": socket.gethostname(),
                "gpus": [str(g) for g in ray.get_gpu_ids()]}

    def run(self, argv: list[str], cwd: str, log: str, extra_env: dict[str, str], threads: int, gpu: bool,
            submitted: float) -> int:
        """Start caffe as the local executor does (this node's Caffe, cwd = the run folder, output appended to its
        log, the die-with-parent prefix, its own session) and wait for it: its exit status."""
        from ..toolchain.locate import find

        try:
            inst = find()   # this node's Caffe (CaffeNotFound: the driver retries the run on another node)
            env = inst.env(threads)
            env.update({k: v for k, v in extra_env.items() if k not in NOT_FORWARDED})
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = str(threads)
            cmd = [str(inst.binary), *argv[1:]] + (["-gpu", "0"] if gpu else [])  # Ray set CUDA_VISIBLE_DEVICES
            with self._lock:
                if self._pending == signal.SIGKILL:
                    return -signal.SIGKILL
                # Ray's workers block SIGINT, and a child inherits the forking thread's mask through exec: caffe
                # would never see its stop signal (-sigint_effect stop) nor its death signal. A clean mask for it.
                kept = signal.pthread_sigmask(signal.SIG_SETMASK, set())
                try:
                    with open(log, "ab") as out:
                        self._proc = subprocess.Popen(launch_prefix() + cmd, cwd=cwd, env=env, stdout=out,
                                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                      start_new_session=True)
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, kept)
                self._info = {**self._where(), "caffe": str(inst.binary), "pid": self._proc.pid,
                              "launch_s": round(time.time() - submitted, 3)}
                if self._pending is not None:
                    self._signal(self._pending)
        finally:
            self._ready.set()
        return self._proc.wait()

    def started(self, timeout: float = 3600.0) -> dict[str, Any]:
        """Where caffe runs (node id, ip, host, GPUs, binary, pid) and the seconds from the driver's launch to
        caffe's start, once it has started."""
        self._ready.wait(timeout)
        return dict(self._info) or self._where()

    def signal(self, sig: int) -> None:
        with self._lock:
            if self._proc is None:
                self._pending = signal.SIGKILL if sig == signal.SIGKILL else (self._pending or sig)
                return
            self._signal(sig)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------- the driver's side


class RayHandle:
    """A run on the cluster. ``pid``/``started`` are None: there is no local process for the driver's leftover
    check to find (Ray kills a dead driver's actors, and caffe dies with its actor)."""

    pid: int | None = None
    started: int | None = None

    def __init__(self, ray: ModuleType, actor: Any, job: Job, avoid: set[str], broken: set[str]) -> None:
        self._ray = ray
        self._actor = actor
        self._log = job.log
        self._avoid = avoid            # the nodes this run was lost on: its retries go elsewhere
        self._broken = broken          # the nodes no caffe could start on (no Caffe there...): no run goes there
        self._run_ref: Any = None
        self._info_ref: Any = None
        self._node: dict[str, Any] | None = None
        self._rc: int | None = None
        self._lost_at: float | None = None
        self._log_state: tuple[int, float] | None = None
        self._quiet_since = 0.0
        self._started_caffe = True     # False when the actor failed before caffe ran: no log to wait for
        self.lost: str | None = None   # why the run was lost (its node died...), once poll() returned LOST

    @property
    def node(self) -> dict[str, Any] | None:
        """The Ray node the run is on: {"id", "ip", "host", "gpus", "caffe", "pid", "launch_s"}; None until known."""
        if self._node is None and self._info_ref is not None:
            ready, _ = self._ray.wait([self._info_ref], timeout=0)
            if ready:
                try:
                    self._node = self._ray.get(self._info_ref)
                except self._ray.exceptions.RayError:
                    self._info_ref = None
        return self._node

    def poll(self) -> int | None:
        if self._rc is not None:
            return self._rc
        self.node  # noqa: B018 - resolved while the actor is alive, to name the node if it dies
        if self._lost_at is None:
            ready, _ = self._ray.wait([self._run_ref], timeout=0)
            if not ready:
                return None
            try:
                rc = self._ray.get(self._run_ref)
            except self._ray.exceptions.RayError as exc:
                if self._node is None and self._info_ref is not None:   # (where it was: it may just be answering)
                    self._ray.wait([self._info_ref], timeout=2)
                    self.node  # noqa: B018
                self.lost, self._lost_at = self._why(exc), time.time()
                self._started_caffe = not isinstance(exc, self._ray.exceptions.RayTaskError)  # run() raised first
                if self._node is not None:
                    (self._avoid if self._started_caffe else self._broken).add(self._node["id"])
            else:
                self._rc = int(rc)
                self._release()
                return self._rc
        if self._started_caffe and not self._quiet():
            return None
        self._rc = LOST
        self._release()
        return LOST

    def _quiet(self) -> bool:
        """True once the log has not changed for QUIET_S (or QUIET_MAX_S passed): no caffe writes the folder."""
        try:
            st = self._log.stat()
            state = (st.st_size, st.st_mtime)
        except OSError:
            state = (-1, 0.0)
        now = time.time()
        if state != self._log_state:
            self._log_state, self._quiet_since = state, now
        return now - self._quiet_since >= QUIET_S or now - (self._lost_at or now) >= QUIET_MAX_S

    def _why(self, exc: BaseException) -> str:
        """One line: the node that died, else the actor's or the task's own error."""
        ray = self._ray
        node = self._node
        where = f"node {node['ip']} ({node['id'][:8]})" if node else "its node"
        cause = getattr(exc, "cause", None)
        if isinstance(exc, ray.exceptions.RayTaskError) and cause is not None:
            return f"on {where}: {cause}"
        if node is not None:
            try:
                dead = not any(n["NodeID"] == node["id"] for n in _alive_nodes(ray))
            except Exception:  # noqa: BLE001 - the GCS may be unreachable too: say what is known
                dead = False
            if dead:
                return f"{where} died while it ran ({type(exc).__name__})"
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return f"its Ray actor on {where} died ({type(exc).__name__}: {first})"

    def _release(self) -> None:
        try:
            self._ray.kill(self._actor, no_restart=True)   # frees its CPUs/GPU share for the next run
        except Exception:  # noqa: BLE001 - already dead
            pass

    def _send(self, sig: int) -> Any:
        if self._rc is not None or self._lost_at is not None:
            return None
        return self._actor.signal.remote(int(sig))

    def interrupt(self) -> None:
        self._send(signal.SIGINT)

    def kill(self) -> None:
        ref = self._send(signal.SIGKILL)
        if ref is not None:   # the driver may exit next: make sure the kill got there
            self._ray.wait([ref], timeout=SIGNAL_WAIT_S)


@dataclass
class _Plan:
    slots: int
    cpus: int        # per run: Ray's num_cpus and caffe's BLAS threads
    gpus: float      # per run: Ray's num_gpus (1/K with K runs per GPU)


class RayExecutor:
    """One Ray actor per run, with ``num_cpus`` (CPU runs: the cluster's CPUs split between ``jobs`` runs, one CPU
    each by default) or ``num_gpus = 1/per_gpu`` (GPU runs) as its resources; Ray places it, the SPREAD strategy
    spreading runs over the nodes."""

    def __init__(self, address: str | None = None, jobs: int | None = None, gpu: bool = False,
                 per_gpu: int = 1) -> None:
        require_ray()
        self.address = address
        self.jobs = jobs
        self.gpu = gpu
        self.per_gpu = per_gpu
        self._ray: ModuleType | None = None
        self._cls: Any = None
        self._plan: _Plan | None = None
        self.where = ""
        self.runtime_env: dict[str, Any] | None = None
        self._avoid: dict[str, set[str]] = {}   # variant -> nodes it was lost on
        self._broken: set[str] = set()           # nodes where caffe could not be started at all

    def _connect(self) -> ModuleType:
        if self._ray is None:
            self._ray, self.where = connect(self.address)
            self._cls = self._ray.remote(max_concurrency=4, max_restarts=0, max_task_retries=0)(CaffeRun)
            # A Ray worker SIGKILLs its children as it exits (its driver or its node died): caffe would lose the
            # work since its last snapshot. Through caffegen's launcher caffe dies with its actor anyway, by SIGINT,
            # which snapshots first: so each actor's worker is told to leave it alone, in a runtime env (which
            # costs a fresh worker process per run, ~0.3 s) unless this environment already says how the nodes
            # are set up (the local instance: set in connect(); a cluster: started with RAY_kill_...=0).
            if launch_prefix() and CHILD_KILL not in os.environ:
                self.runtime_env = {"env_vars": {CHILD_KILL: "0"}}   # (merged with the job's own env_vars)
        return self._ray

    def plan(self) -> _Plan:
        """Slots and per-run resources from the cluster's alive nodes (as they are when the sweep starts)."""
        ray = self._connect()
        nodes = [n.get("Resources", {}) for n in _alive_nodes(ray)]
        cpus = [int(n.get("CPU", 0)) for n in nodes]
        if self.gpu:
            gpu_nodes = [n for n in nodes if n.get("GPU", 0) >= 1]
            total = sum(int(n["GPU"]) for n in gpu_nodes)
            if not total:
                raise InputError(f"the Ray cluster ({self.where}) has no GPUs: drop --gpus for CPU runs, or add "
                                 "GPU nodes")
            per_node = min(int(n.get("CPU", 0)) // (int(n["GPU"]) * self.per_gpu) for n in gpu_nodes)
            self._plan = _Plan(self.jobs or total * self.per_gpu, max(1, per_node), 1.0 / self.per_gpu)
        else:
            if not sum(cpus):
                raise InputError(f"the Ray cluster ({self.where}) has no CPUs for runs (nodes started with "
                                 "--num-cpus 0 only)")
            jobs = self.jobs or sum(cpus)
            self._plan = _Plan(jobs, max(1, min(sum(cpus) // jobs, max(cpus))), 0.0)
        return self._plan

    def slots(self) -> list[Slot]:
        p = self._plan or self.plan()
        return [Slot(i, 0 if self.gpu else None, p.cpus) for i in range(p.slots)]

    def _strategy(self, avoid: set[str]) -> Any:
        """SPREAD; but never a node the run was lost on, nor one where no caffe could start (a node alive without
        Caffe must not take run after run), while another node is alive."""
        if not avoid or not any(n["NodeID"] not in avoid for n in _alive_nodes(self._ray)):
            return "SPREAD"
        try:
            from ray.util.scheduling_strategies import NodeLabelSchedulingStrategy, NotIn
        except ImportError:
            return "SPREAD"
        return NodeLabelSchedulingStrategy(hard={"ray.io/node-id": NotIn(*sorted(avoid))})

    def launch(self, job: Job, slot: Slot) -> RayHandle:
        ray = self._connect()
        p = self._plan or self.plan()
        submitted = time.time()
        avoid = self._avoid.setdefault(job.variant, set())
        actor = self._cls.options(num_cpus=p.cpus, num_gpus=p.gpus,
                                  scheduling_strategy=self._strategy(avoid | self._broken),
                                  runtime_env=self.runtime_env).remote()
        handle = RayHandle(ray, actor, job, avoid, self._broken)
        extra = {k: v for k, v in job.env.items() if os.environ.get(k) != v}   # what caffegen adds for caffe
        handle._run_ref = actor.run.remote([str(a) for a in job.argv], str(Path(job.cwd).absolute()),
                                           str(Path(job.log).absolute()), extra, slot.threads, slot.gpu is not None,
                                           submitted)
        handle._info_ref = actor.started.remote()
        return handle


# --------------------------------------------------------------------------- caffegen doctor --backend ray


def _probe(mark: str | None = None, token: str | None = None) -> dict[str, Any]:
    """On one node: the Caffe caffegen would drive there, its version, the GPUs the node shows, and (``mark``)
    whether the node reads ``token`` in that file: the driver's folder is on a filesystem it shares."""
    from ..toolchain.build import visible_gpus
    from ..toolchain.locate import find

    out: dict[str, Any] = {"host": socket.gethostname(), "gpus_seen": visible_gpus()}
    if mark is not None:
        try:
            out["sees"] = Path(mark).read_text() == token
        except OSError:
            out["sees"] = False
    try:
        inst = find()
    except CaffegenError as exc:
        return {**out, "error": str(exc)}
    return {**out, "caffe": str(inst.binary), "origin": inst.origin, "version": inst.version,
            "gpu_build": inst.gpu_build}


def survey(address: str | None, mark: tuple[str, str] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """One task per alive node (pinned there with NodeAffinitySchedulingStrategy): where the cluster is, and per
    node its id, IP, CPUs, GPUs and what :func:`_probe` found (or ``error``); ``mark``: (a file, its text) each node
    is asked to read (``sees``)."""
    ray, where = connect(address)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    nodes = _alive_nodes(ray)
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
            *(mark or ())) for n in nodes]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
    out = []
    for n, ref in zip(nodes, refs):
        res = n.get("Resources", {})
        row: dict[str, Any] = {"id": n["NodeID"], "ip": n.get("NodeManagerAddress", "?"),
                               "cpus": res.get("CPU", 0), "gpus": res.get("GPU", 0)}
        if ref not in ready:
            row["error"] = f"did not answer within {PROBE_TIMEOUT_S:g} s"
        else:
            try:
                row.update(ray.get(ref))
            except ray.exceptions.RayError as exc:
                row["error"] = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        out.append(row)
    return where, out


SHARED_MARK = ".caffegen-shared"


def check_cluster(address: str | None, folder: Path, *, gpu: bool = False, jobs: int | None = None) -> str:
    """What a tune needs of a cluster before anything trains, one InputError line for the first that fails: every
    node that can take a run (CPUs; GPUs with ``gpu``) has a caffe caffegen can drive, and sees ``folder`` at the same
    path (the runs write their folders there: this backend moves no files, so the folder must be on a filesystem
    every node mounts, NFS or the like); the cluster has resources for runs at all. Returns a line: where, how many
    nodes, how many slots (``jobs``: the runs asked for at once, else the cluster's own count)."""
    folder = Path(folder).absolute()
    token = secrets.token_hex(8)
    mark = folder / SHARED_MARK
    mark.write_text(token)
    try:
        where, nodes = survey(address, (str(mark), token))
    finally:
        mark.unlink(missing_ok=True)
    doctor = f"`caffegen doctor --backend ray{f' --address {address}' if address else ''}` lists every node"
    for n in nodes:
        if not (n["gpus"] if gpu else n["cpus"]):
            continue      # takes no run (a head started with --num-cpus 0): needs nothing
        name = f"Ray node {n['id'][:8]} ({n.get('host') or n['ip']})"
        if n.get("error"):
            raise InputError(f"{name} has no caffe caffegen can drive ({n['error']}): install it there or take the "
                             f"node out of the cluster ({doctor})")
        if not n.get("sees"):
            raise InputError(f"{name} does not see {folder}: runs on a cluster write their folders where the driver "
                             "reads them, so --out must be on a filesystem every node mounts at the same path "
                             "(NFS or the like)")
    slots = RayExecutor(address=address, jobs=jobs, gpu=gpu).plan().slots    # no CPUs (GPUs) for runs: its own line
    return f"{where}: {len(nodes)} nodes, {slots} slots"
