"""``caffegen doctor``: is the Caffe that caffegen would drive usable, and if not, what fixes it.

Each check yields a :class:`Check`; the set is usable when no check with ``required=True`` failed.
pycaffe is imported in a child process: a broken ``_caffe.so`` can abort a process, and the doctor
must survive to report it.
"""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

from .errors import CaffeNotFound
from .paths import cache_root
from .toolchain import build as _build
from .toolchain.locate import CaffeInstall, find


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def _pycaffe_probe(inst: CaffeInstall) -> tuple[bool, str]:
    """Import pycaffe in a child and run a one-layer net forward in CPU mode."""
    code = (
        "import os, tempfile; os.environ.setdefault('GLOG_minloglevel', '2')\n"
        "import caffe, numpy as np\n"
        "caffe.set_mode_cpu()\n"
        "p = os.path.join(tempfile.mkdtemp(), 'n.prototxt')\n"
        "open(p, 'w').write('layer { name: \"x\" type: \"Input\" top: \"x\" input_param { shape { dim: 1 dim: 2 } } }\\n'\n"
        "  'layer { name: \"y\" type: \"Power\" bottom: \"x\" top: \"y\" power_param { scale: 2 } }\\n')\n"
        "n = caffe.Net(p, caffe.TEST); n.blobs['x'].data[...] = 1.5; n.forward()\n"
        "assert float(n.blobs['y'].data.sum()) == 6.0\n"
        "print(os.path.dirname(caffe.__file__))\n"
    )
    env = inst.env()
    env["PYTHONPATH"] = str(inst.python_path) if inst.python_path else env.get("PYTHONPATH", "")
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    except subprocess.TimeoutExpired:
        return False, "import caffe timed out after 120 s"
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return False, (lines[-1] if lines else f"exit {proc.returncode}")
    return True, proc.stdout.strip()


def run_checks() -> list[Check]:
    """All checks, in the order they are printed."""
    checks: list[Check] = []
    cache = cache_root() / "caffe"
    try:
        inst = find()
    except CaffeNotFound as exc:
        checks.append(Check("caffe binary", False, str(exc), fix="make caffe   (or export CAFFE_ROOT=/path/to/caffe)"))
        checks.append(Check("cache", cache.exists(), str(cache), required=False))
        return checks
    checks.append(Check("caffe binary", True, f"{inst.binary}  [{inst.origin}]"))
    version = inst.version
    checks.append(Check("caffe version", not version.startswith("unknown"), version,
                        fix=f"{inst.binary} --version fails: rebuild with `make caffe` or check its libraries (ldd)"))
    try:
        from .toolchain import caffe_pb2

        pb2 = caffe_pb2()
        checks.append(Check("caffe_pb2", True, f"{getattr(pb2, '__file__', '?')}"))
    except Exception as exc:  # noqa: BLE001 - any failure here is a finding to report
        checks.append(Check("caffe_pb2", False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                            fix="set CAFFEGEN_PYCAFFE to the folder holding caffe/proto/caffe_pb2.py"))
    ok, detail = _pycaffe_probe(inst)
    checks.append(Check("pycaffe (CPU mode)", ok, detail,
                        fix="reinstall caffegen's dependencies (`make setup`) or rebuild Caffe (`make caffe`)"))
    gpus = _build.visible_gpus()
    gpu_build = inst.gpu_build
    if gpu_build and not gpus:
        mode = "CUDA build; no GPU seen: CPU mode only here (never call caffe.set_mode_gpu() or " \
               "`caffe train -gpu` without a GPU: it aborts the process)"
    else:
        mode = ("CUDA build" if gpu_build else "CPU-only build") + (f"; GPUs seen: {'; '.join(gpus)}" if gpus
                                                                    else "; no GPU seen")
    checks.append(Check("GPU mode", True, mode, required=False))
    cuda_entry = _build.entry_for(_build.BuildFlags(gpu=True, cuda_arch=_build.gpu_arch()))
    if not gpu_build and not gpus and cuda_entry.complete():
        checks.append(Check("CUDA build", True, f"{cuda_entry.root} (not used: no GPU visible; "
                            f"CAFFE_ROOT={cuda_entry.root} selects it)", required=False))
    if gpu_build and gpus:
        proc = subprocess.run([str(inst.binary), "device_query", "-gpu", "0"], capture_output=True, text=True,
                              env=inst.env(), timeout=120)
        checks.append(Check("caffe device_query", proc.returncode == 0,
                            "GPU 0 answers" if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["?"])[-1],
                            fix="check the NVIDIA driver and CUDA libraries (nvidia-smi, ldd)", required=False))
    elif gpus and not gpu_build:
        checks.append(Check("GPU build", False, "a GPU is here but this Caffe is CPU-only",
                            fix="make setup CAFFE_GPU=1", required=False))
    checks.append(Check("BLAS", inst.blas != "unknown", inst.blas, required=False))
    from .logs import native

    lib = native.load()
    checks.append(Check("log scanner", lib is not None,
                        f"native: {native.library_path()}" if lib is not None else str(native.last_error),
                        fix="install a C compiler (apt-get install gcc); caffegen parse still works, slower",
                        required=False))
    entries = sorted(p.name for p in cache.iterdir() if p.is_dir()) if cache.exists() else []
    checks.append(Check("cache", True, f"{cache} ({len(entries)} build{'s' if len(entries) != 1 else ''}"
                        + (f": {', '.join(entries)}" if entries else "") + ")", required=False))
    return checks


def usable(checks: list[Check]) -> bool:
    return all(c.ok for c in checks if c.required)


def format_checks(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        mark = "ok  " if c.ok else ("FAIL" if c.required else "warn")
        lines.append(f"{mark}  {c.name:<{width}}  {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"      {'':<{width}}  fix: {c.fix}")
    return "\n".join(lines)


def problems(checks: list[Check]) -> list[str]:
    """One line per failed required check, with its fix."""
    return [f"{c.name}: {c.detail} -> fix: {c.fix}" for c in checks if c.required and not c.ok]


# --------------------------------------------------------------------------- caffegen doctor --backend ray


@dataclass(frozen=True)
class ClusterReport:
    """Every node of a Ray cluster as ``caffegen doctor --backend ray`` found it (one probe task per node)."""

    where: str
    nodes: list[dict]
    driver_version: str | None     # the Caffe of this machine (the driver validates nets with it), if any

    def problems(self) -> list[str]:
        """A node without Caffe, or Caffe versions that differ (between nodes or from the driver's): one line each."""
        out = []
        for n in self.nodes:
            if "error" in n:
                out.append(f"node {n['ip']} ({n['id'][:8]}): {n['error']} -> fix: build Caffe at the same cache path "
                           "on every node, or set CAFFEGEN_CAFFE_BIN / CAFFE_ROOT in the node's environment "
                           "(docs/cluster.md)")
        versions = {n["version"] for n in self.nodes if "version" in n}
        if self.driver_version:
            versions.add(self.driver_version)
        if len(versions) > 1:
            each = ", ".join(f"{n['ip']} {n['version']}" for n in self.nodes if "version" in n)
            out.append(f"Caffe versions differ: {each}" + (f", this machine {self.driver_version}"
                                                           if self.driver_version else "")
                       + " -> fix: one Caffe build on every node (runs must be comparable)")
        return out

    def table(self) -> str:
        head = ("node", "ip", "host", "CPUs", "GPUs", "caffe", "GPUs seen", "binary")
        rows = [head]
        for n in self.nodes:
            seen = len(n.get("gpus_seen", []))
            rows.append((n["id"][:8], n["ip"], n.get("host", "?"), f"{n['cpus']:g}", f"{n['gpus']:g}",
                         n.get("version", "MISSING"), str(seen) if seen else "none",
                         n.get("caffe", n.get("error", ""))))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]
        cpus = sum(n["cpus"] for n in self.nodes)
        gpus = sum(n["gpus"] for n in self.nodes)
        lines.append(f"{len(self.nodes)} node{'s' if len(self.nodes) != 1 else ''} ({self.where}): {cpus:g} CPUs, "
                     f"{gpus:g} GPUs; this machine's Caffe: {self.driver_version or 'none'}")
        return "\n".join(lines)


def cluster_report(address: str | None) -> ClusterReport:
    """Probe every alive node of the Ray cluster at ``address`` (None: ``$RAY_ADDRESS``, else a local instance)."""
    from .run.ray_executor import survey

    where, nodes = survey(address)
    try:
        driver_version: str | None = find().version
    except CaffeNotFound:
        driver_version = None
    return ClusterReport(where, nodes, driver_version)
