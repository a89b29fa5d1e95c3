"""Find the Caffe that caffegen drives, once, and hand it to everything else.

Resolution order (first hit wins):

1. ``CAFFEGEN_CAFFE_BIN`` (a ``caffe`` binary) and optionally ``CAFFEGEN_PYCAFFE`` (the folder that
   holds the ``caffe`` Python package);
2. ``CAFFE_ROOT``: an existing BVLC / NVCaffe / Intel Caffe checkout or install (Make or CMake layout);
3. caffegen's own build in the cache (``make caffe``), the CUDA entry first when a GPU is visible;
4. a ``caffe`` on ``PATH``.

Nothing here imports pycaffe: :func:`caffe_pb2` loads the generated schema module on its own (fast,
no ``_caffe.so``), :func:`import_caffe` imports pycaffe when a caller really needs it.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..errors import CaffeNotFound
from ..paths import cache_root
from . import build as _build


@dataclass(frozen=True)
class CaffeInstall:
    """A usable Caffe: its ``caffe`` binary, its pycaffe folder, and where they came from."""

    binary: Path
    python_path: Path | None
    origin: str
    root: Path | None = None

    @property
    def tools(self) -> Path:
        return self.binary.parent

    def tool(self, name: str) -> Path:
        """Another Caffe tool beside the binary (``convert_imageset``, ``compute_image_mean``...)."""
        for cand in (self.tools / name, self.tools / f"{name}.bin"):
            if cand.exists():
                return cand
        found = shutil.which(name)
        if found:
            return Path(found)
        raise CaffeNotFound(f"Caffe tool {name!r} not found beside {self.binary}")

    @functools.cached_property
    def version(self) -> str:
        """What ``caffe --version`` prints, e.g. ``1.0.0``."""
        try:
            proc = subprocess.run([str(self.binary), "--version"], capture_output=True, text=True,
                                  timeout=60, env=self.env())
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"unknown ({exc})"
        m = re.search(r"caffe version\s+(\S+)", proc.stdout + proc.stderr)
        return m.group(1) if m else "unknown"

    @functools.cached_property
    def gpu_build(self) -> bool:
        """True when the binary was built with CUDA (it links libcudart)."""
        for lib in self._linked_libs():
            if "libcudart" in lib:
                return True
        return False

    def _linked_libs(self) -> list[str]:
        if not shutil.which("ldd"):
            return []
        libcaffe = [self.binary]
        proc = subprocess.run(["ldd", *map(str, libcaffe)], capture_output=True, text=True)
        libs = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
        for line in proc.stdout.splitlines():
            if "libcaffe" in line and "=>" in line:
                path = line.split("=>")[1].split("(")[0].strip()
                if path and Path(path).exists():
                    sub = subprocess.run(["ldd", path], capture_output=True, text=True)
                    libs += [ln.split()[0] for ln in sub.stdout.splitlines() if ln.strip()]
        return libs

    @functools.cached_property
    def blas(self) -> str:
        """The BLAS library the binary is linked against (openblas, mkl, atlas, cblas...)."""
        for lib in self._linked_libs():
            for name in ("openblas", "mkl", "atlas", "blis", "cblas", "blas"):
                if name in lib:
                    return lib
        return "unknown"

    def env(self, threads: int | None = None) -> dict[str, str]:
        """Environment for a caffe subprocess: glog to stderr (no temp-dir log files), thread caps."""
        env = dict(os.environ)
        env["GLOG_logtostderr"] = "1"
        if threads:
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = str(threads)
        if self.python_path:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.python_path), env.get("PYTHONPATH")]))
        return env


def _pycaffe_dir(*cands: Path) -> Path | None:
    for cand in cands:
        if (cand / "caffe" / "__init__.py").exists():
            return cand
    return None


def _from_root(root: Path) -> CaffeInstall | None:
    bins = [root / "build" / "tools" / "caffe", root / "build" / "tools" / "caffe.bin",
            root / ".build_release" / "tools" / "caffe.bin", root / "bin" / "caffe", root / "tools" / "caffe"]
    binary = next((b for b in bins if b.exists()), None)
    if binary is None:
        return None
    py = _pycaffe_dir(root / "python", root / "build" / "python", root / "build" / "install" / "python")
    return CaffeInstall(binary=binary, python_path=py, origin="CAFFE_ROOT", root=root)


def _from_cache() -> CaffeInstall | None:
    flags = [_build.BuildFlags(gpu=False)]
    if _build._gpu_visible():
        flags.insert(0, _build.BuildFlags(gpu=True, cuda_arch=_build.gpu_arch()))
    for f in flags:
        entry = _build.entry_for(f)
        if entry.complete():
            return CaffeInstall(binary=entry.binary, python_path=entry.python_path,
                                origin=f"caffegen cache ({entry.root.name})", root=entry.root)
    return None


def find() -> CaffeInstall:
    """Resolve Caffe as described in the module docstring; raise :class:`CaffeNotFound` with the fix."""
    explicit = os.environ.get("CAFFEGEN_CAFFE_BIN")
    if explicit:
        binary = Path(explicit).expanduser()
        if not binary.exists():
            raise CaffeNotFound(f"CAFFEGEN_CAFFE_BIN={explicit} does not exist")
        py = os.environ.get("CAFFEGEN_PYCAFFE")
        return CaffeInstall(binary=binary, python_path=Path(py).expanduser() if py else None,
                            origin="CAFFEGEN_CAFFE_BIN")
    root = os.environ.get("CAFFE_ROOT")
    if root:
        found = _from_root(Path(root).expanduser())
        if found is None:
            raise CaffeNotFound(f"CAFFE_ROOT={root} holds no build/tools/caffe, .build_release/tools/caffe.bin "
                                "or bin/caffe; build it there or unset CAFFE_ROOT")
        return found
    cached = _from_cache()
    if cached:
        return cached
    on_path = shutil.which("caffe")
    if on_path:
        py = os.environ.get("CAFFEGEN_PYCAFFE")
        return CaffeInstall(binary=Path(on_path), python_path=Path(py) if py else _importable_pycaffe(),
                            origin="PATH")
    raise CaffeNotFound("no Caffe found: run `make caffe` (builds it into "
                        f"{cache_root() / 'caffe'}) or set CAFFE_ROOT to an existing Caffe")


def _importable_pycaffe() -> Path | None:
    spec = importlib.util.find_spec("caffe")
    if spec and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]).parent
    return None


@functools.lru_cache(maxsize=1)
def locate() -> CaffeInstall:
    """The Caffe for this process (resolved once)."""
    return find()


@functools.lru_cache(maxsize=1)
def caffe_pb2() -> ModuleType:
    """Caffe's own protobuf schema module, loaded without importing pycaffe."""
    inst = locate()
    cands = []
    if inst.python_path:
        cands.append(inst.python_path / "caffe" / "proto" / "caffe_pb2.py")
    for cand in cands:
        if cand.exists():
            spec = importlib.util.spec_from_file_location("caffegen_caffe_pb2", cand)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    try:
        from caffe.proto import caffe_pb2 as module  # type: ignore[import-not-found]
    except ImportError as exc:
        raise CaffeNotFound(f"caffe_pb2 not importable ({exc}); set CAFFEGEN_PYCAFFE to the folder "
                            "that holds the caffe package") from exc
    return module


@functools.lru_cache(maxsize=1)
def import_caffe() -> ModuleType:
    """pycaffe itself (slow: loads _caffe.so, scikit-image). Quiet glog unless the user set its level."""
    inst = locate()
    if inst.python_path and str(inst.python_path) not in sys.path:
        sys.path.insert(0, str(inst.python_path))
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        import caffe  # type: ignore[import-not-found]
    except ImportError as exc:
        raise CaffeNotFound(f"pycaffe not importable from {inst.python_path}: {exc}") from exc
    return caffe
