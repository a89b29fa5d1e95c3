"""A real multi-node Ray cluster on 127.0.0.1 for the tests and bench/cluster: one ``ray start --head`` and any
number of ``ray start --address`` worker nodes, each its own process group and temp dir, every process tracked so
that :meth:`LocalCluster.stop` leaves nothing running (``ray stop`` is not used: it stops every Ray on the machine).

Each node gets its own temp dir (Ray >= 2.x allows ``--temp-dir`` per node) under one short root in /tmp: Ray's
Unix sockets live there, and a socket path may not exceed 107 bytes. The cluster uses token authentication with a
token of its own (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN``), whatever ``~/.ray/auth_token`` holds: every process
that joins it (a ``caffegen sweep``, the tests' own driver) must get :attr:`LocalCluster.env`.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = [sys.executable, "-m", "ray.scripts.scripts"]
# The GCS notices a dead raylet after period x threshold: seconds here, not Ray's default ~30 s.
FAST_FAILURE_DETECTION = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "1000",
                          "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_of_session(sid: int) -> list[int]:
    """Every live process of session ``sid``: a node's ``ray start`` and all it started, Ray's workers too (they get
    process groups of their own, not sessions). caffe has a session of its own: it dies with its actor. Zombies (dead,
    not yet reaped by their parent: the ``ray start`` this helper waits for last) do not count."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid and _state(int(entry.name)) != "Z":
                    out.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                pass
    return out


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2]
    except (OSError, ValueError, IndexError):
        return "?"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def ancestors(pid: int) -> list[int]:
    chain = []
    while True:
        ppid = parent(pid)
        if not ppid or ppid in chain:
            return chain
        chain.append(ppid)
        pid = ppid


class Node:
    """One ``ray start --block`` process (its session holds the node's raylet, GCS on the head, agents, workers)."""

    def __init__(self, name: str, proc: subprocess.Popen, temp_dir: Path, port: int) -> None:
        self.name, self.proc, self.temp_dir, self.port = name, proc, temp_dir, port   # port: its node manager's

    def raylet(self) -> int | None:
        for pid in _pids_of_session(self.proc.pid):
            if "/raylet" in _cmdline(pid).split(" ")[0] or _cmdline(pid).startswith("raylet"):
                return pid
        return None

    def kill(self) -> None:
        """SIGKILL every process of the node's session (a node's machine gone)."""
        for pid in _pids_of_session(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


class LocalCluster:
    def __init__(self, cpus_per_node: int = 1, fast_failure_detection: bool = True) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="cgray", dir="/tmp"))
        self.cpus = cpus_per_node
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **self.auth,
                    **(FAST_FAILURE_DETECTION if fast_failure_detection else {})}
        self.head: Node | None = None
        self.workers: list[Node] = []
        self._count = 0
        self._ray = None

    def _ports(self) -> list[str]:
        return ["--object-manager-port", str(free_port()),
                "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
                "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port())]

    def _start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Node:
        temp = self.root / name
        temp.mkdir()
        log = open(self.root / f"{name}.log", "wb")
        port = free_port()
        cmd = RAY + ["start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(self.cpus),
                     "--num-gpus", "0", "--temp-dir", str(temp), "--disable-usage-stats", "--node-manager-port",
                     str(port), *self._ports(), *args]
        proc = subprocess.Popen(cmd, env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        log.close()
        return Node(name, proc, temp, port)

    def start(self, workers: int = 1, timeout: float = 120) -> LocalCluster:
        self.head = self._start("head", ["--head", "--port", str(self.port), "--include-dashboard=false",
                                         "--ray-client-server-port", str(free_port())])
        for _ in range(workers):
            self.add_worker(wait=False)
        self.wait_nodes(1 + workers, timeout)
        return self

    def add_worker(self, wait: bool = True, timeout: float = 120, env: dict[str, str] | None = None) -> Node:
        """A worker node; ``env``: what its processes (and so its Ray workers) see beyond the cluster's own."""
        self._count += 1
        node = self._start(f"w{self._count}", ["--address", self.address], env)
        self.workers.append(node)
        if wait:
            self.wait_nodes(1 + len(self.alive_workers()), timeout)
        return node

    def alive_workers(self) -> list[Node]:
        return [w for w in self.workers if w.proc.poll() is None]

    def ray(self):
        """Ray, connected to this cluster as a driver of its own (the tests' window on it: nodes, their ids)."""
        if self._ray is None:
            os.environ.update(self.auth)   # (read by Ray when it connects)
            import ray

            ray.init(address=self.address, namespace="caffegen-tests", log_to_driver=False,
                     logging_level=30)  # logging.WARNING
            self._ray = ray
        return self._ray

    def nodes(self) -> list[dict]:
        """The alive nodes, each with the name of ours it is ("head", "w1"...)."""
        out = []
        for n in self.ray().nodes():
            if not n.get("Alive"):
                continue
            name = next((x.name for x in [self.head, *self.workers] if x and n.get("NodeManagerPort") == x.port), "?")
            out.append({**n, "name": name})
        return out

    def node_id(self, node: Node) -> str:
        return next(n["NodeID"] for n in self.nodes() if n["name"] == node.name)

    def wait_nodes(self, n: int, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for node in [self.head, *self.workers]:
                if node is self.head and node.proc.poll() is not None:
                    raise RuntimeError(f"ray head exited: {(self.root / 'head.log').read_text()[-2000:]}")
            try:
                if len(self.nodes()) == n:
                    return
            except Exception:  # noqa: BLE001 - the head may not be up yet
                if self._ray is not None and time.time() > deadline - 5:
                    raise
            time.sleep(0.2)
        raise TimeoutError(f"{n} Ray nodes were not up within {timeout} s (logs in {self.root})")

    def ensure_workers(self, n: int = 1) -> None:
        """Exactly ``n`` alive worker nodes (a test that killed one leaves the next test a whole cluster)."""
        while len(self.alive_workers()) < n:
            self.add_worker(wait=False)
        self.wait_nodes(1 + n)

    def stop(self) -> None:
        """Whatever happened: disconnect, then end every session we started and anything left naming our temp dir
        (SIGTERM, then SIGKILL)."""
        if self._ray is not None:
            try:
                self._ray.shutdown()
            except Exception:  # noqa: BLE001
                pass
            self._ray = None
        for key, value in self.auth.items():
            if os.environ.get(key) == value:
                os.environ.pop(key)
        nodes = [n for n in [*self.workers, self.head] if n is not None]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for n in nodes:
                for pid in _pids_of_session(n.proc.pid):
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
            deadline = time.time() + 10
            while time.time() < deadline and any(_pids_of_session(n.proc.pid) for n in nodes):
                time.sleep(0.1)
        for n in nodes:
            try:
                n.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for entry in Path("/proc").iterdir():   # a process that left our groups but still names our temp dir
            if entry.name.isdigit() and str(self.root) in _cmdline(int(entry.name)):
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.root, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """Processes of ours still running (should be none after stop())."""
        out = []
        for n in [self.head, *self.workers]:
            if n is not None:
                out += [_cmdline(p) for p in _pids_of_session(n.proc.pid)]
        return out


def caffes(under: Path) -> dict[int, Path]:
    """{pid: run folder} of the caffe processes whose working directory is inside ``under``."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "exe").resolve().name not in ("caffe", "caffe.bin"):
                continue
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd.is_relative_to(under):
            out[int(entry.name)] = cwd
    return out


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())
