"""Fetch, fix and build Caffe into a cache outside the checkout.

The source is the PyPI sdist ``brocolli-caffe==9.0.2`` (a complete Caffe 1.0 tree); its setup.py needs
conda, so it is downloaded as a plain archive, patched by :mod:`caffegen.toolchain.fixes`, given
caffegen's own CMakeLists.txt and built with CMake. The result lives in
``<cache>/caffe/<key>/`` where the key hashes the source, the fix-set, the CMake file and the flags, so
an unchanged set-up reuses it and any change builds a fresh entry beside the old one.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..paths import cache_root, package_file, sha256_file
from . import fixes as _fixes
from . import fixes_cuda as _fixes_cuda

SOURCE_PACKAGE = "brocolli-caffe"
SOURCE_VERSION = "9.0.2"
SOURCE_SHA256 = "c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a"
CMAKE_FILE = package_file("caffegen.toolchain", "cmake", "CMakeLists.txt")
# GPU builds only: read after project() through CMAKE_PROJECT_Caffe_INCLUDE; hashed into GPU keys only.
CUDA_CMAKE_FILE = package_file("caffegen.toolchain", "cmake", "cuda.cmake")

# Debian 12 packages the CPU build needs (headers + libraries); ~665 MB with --no-install-recommends.
# What the tests need beside the build: a real browser to read the pages in (make test installs it).
TEST_APT_PACKAGES: tuple[str, ...] = ("chromium",)
APT_PACKAGES: tuple[str, ...] = (
    "cmake", "build-essential", "libboost-system-dev", "libboost-thread-dev", "libboost-filesystem-dev",
    "libboost-regex-dev", "libboost-python-dev", "libprotobuf-dev", "protobuf-compiler",
    "libgoogle-glog-dev", "libgflags-dev", "libhdf5-dev", "libopenblas-dev", "liblmdb-dev",
    "libopencv-core-dev", "libopencv-imgproc-dev", "libopencv-imgcodecs-dev", "libopencv-highgui-dev",
    "libopencv-videoio-dev",
    "libblas3", "patchelf",   # the lean bundle's reference BLAS, and its $ORIGIN RUNPATHs (toolchain/bundle.py)
)


class BuildError(RuntimeError):
    """A set-up step failed; the message is one line that says what and where."""


@dataclass(frozen=True)
class BuildFlags:
    """What changes the binary. Part of the cache key."""

    gpu: bool = False
    cuda_arch: str = "90"
    python: str = f"{sys.version_info.major}.{sys.version_info.minor}"
    opencv: bool = True
    lmdb: bool = True
    build_type: str = "Release"
    pycaffe: bool = True          # build _caffe.so (the lean bundle variant does not)
    blas: str = "openblas"        # or "reference": Debian's netlib libblas3 (0.4 MB instead of OpenBLAS's 36 MB)

    def cmake_args(self) -> list[str]:
        args = [
            f"-DCMAKE_BUILD_TYPE={self.build_type}",
            f"-DCPU_ONLY={'OFF' if self.gpu else 'ON'}",
            f"-DUSE_OPENCV={'ON' if self.opencv else 'OFF'}",
            f"-DUSE_LMDB={'ON' if self.lmdb else 'OFF'}",
            f"-DBUILD_python={'ON' if self.pycaffe else 'OFF'}",
        ]
        if self.blas == "reference":  # found before CMakeLists' own find_library(openblas), which then keeps it
            args.append(f"-DBLAS_LIB={REFERENCE_BLAS}")
        if self.gpu:
            args += [f"-DCUDA_ARCH={self.cuda_arch}",
                     "-DCMAKE_PROJECT_Caffe_INCLUDE=<source>/caffegen_cuda.cmake",
                     "-DCUDA_EXTRA_ROOT=<cuda-libs>"]
        return args

    def as_dict(self) -> dict:
        d = {"gpu": self.gpu, "cuda_arch": self.cuda_arch if self.gpu else None, "python": self.python,
             "opencv": self.opencv, "lmdb": self.lmdb, "build_type": self.build_type,
             "machine": platform.machine()}
        # The lean knobs enter the key only when set, so the keys of existing builds do not move.
        if not self.pycaffe:
            d["pycaffe"] = False
        if self.blas != "openblas":
            d["blas"] = self.blas
        return d


# The lean variant that travels to a GPU host as a bundle (toolchain/bundle.py): no OpenCV (feed LMDB, HDF5 or
# DummyData instead of ImageData), no pycaffe (the host's Python is another version), the reference BLAS (cuBLAS
# does the GPU's work; OpenBLAS alone is 36 MB).
LEAN = {"opencv": False, "pycaffe": False, "blas": "reference"}
REFERENCE_BLAS = f"/usr/lib/{platform.machine()}-linux-gnu/blas/libblas.so.3"


def build_key(flags: BuildFlags, *, cuda_cmake: Path | None = None, cuda_wheels: tuple[str, ...] | None = None) -> str:
    """Hash of source version + fix-set + CMake file + flags: the cache entry's name. ``cuda_cmake`` and
    ``cuda_wheels`` stand for the CUDA-only inputs (default: the shipped cuda.cmake and the pinned wheels)."""
    h = hashlib.sha256()
    h.update(f"{SOURCE_PACKAGE}=={SOURCE_VERSION}:{SOURCE_SHA256}".encode())
    h.update(Path(_fixes.__file__).read_bytes())
    h.update(CMAKE_FILE.read_bytes())
    h.update(json.dumps(flags.as_dict(), sort_keys=True).encode())
    if flags.gpu:  # CUDA-only inputs: never part of the CPU key, so changing them leaves CPU builds alone
        h.update(Path(_fixes_cuda.__file__).read_bytes())
        h.update((cuda_cmake or CUDA_CMAKE_FILE).read_bytes())
        h.update(" ".join(cuda_wheels or CUDA_LIB_WHEELS).encode())
        h.update(" ".join(flags.cmake_args()).encode())
    kind = "cuda" if flags.gpu else "cpu"
    return f"{SOURCE_VERSION}-{kind}-{h.hexdigest()[:12]}"


@dataclass
class BuildEntry:
    """One cache entry: where the binary, libcaffe and pycaffe are."""

    root: Path

    @property
    def binary(self) -> Path:
        return self.root / "build" / "tools" / "caffe"

    @property
    def tools(self) -> Path:
        return self.root / "build" / "tools"

    @property
    def python_path(self) -> Path:
        return self.root / "build" / "python"

    @property
    def source(self) -> Path:
        return self.root / "src"

    @property
    def marker(self) -> Path:
        return self.root / "BUILD_OK.json"

    def complete(self) -> bool:
        pycaffe = self.info().get("flags", {}).get("pycaffe", True)
        return (self.marker.exists() and self.binary.exists()
                and (not pycaffe or (self.python_path / "caffe" / "_caffe.so").exists())
                and (self.python_path / "caffe" / "proto" / "caffe_pb2.py").exists())

    def info(self) -> dict:
        try:
            return json.loads(self.marker.read_text())
        except (OSError, ValueError):
            return {}


def entry_for(flags: BuildFlags, cache: Path | None = None) -> BuildEntry:
    return BuildEntry((cache or cache_root()) / "caffe" / build_key(flags))


# ---------------------------------------------------------------- apt


def missing_apt_packages(packages: tuple[str, ...] = APT_PACKAGES) -> list[str]:
    """Packages of ``packages`` that dpkg does not report as installed (all of them where dpkg is absent)."""
    if not shutil.which("dpkg-query"):
        return list(packages)
    out = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *packages],
                         capture_output=True, text=True)
    installed = {line.split()[0] for line in out.stdout.splitlines() if line.endswith(" installed")}
    return [p for p in packages if p not in installed]


def ensure_apt(packages: tuple[str, ...] = APT_PACKAGES, log: Callable[[str], None] = print) -> None:
    """Install the missing Debian packages (as root, or through passwordless sudo)."""
    missing = missing_apt_packages(packages)
    if not missing:
        return
    if not shutil.which("apt-get"):
        raise BuildError("apt-get not found: install the equivalents of " + " ".join(missing)
                         + " or point CAFFE_ROOT at an existing Caffe build")
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
            prefix = ["sudo", "-n"]
        else:
            raise BuildError("missing Debian packages and not root: run  sudo apt-get install -y "
                             "--no-install-recommends " + " ".join(missing))
    log(f"[setup] apt-get install {len(missing)} packages: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
        proc = subprocess.run(prefix + cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise BuildError(f"{' '.join(cmd[:2])} failed (exit {proc.returncode}): {tail}")


# ---------------------------------------------------------------- source


def fetch_source(cache: Path, log: Callable[[str], None] = print) -> Path:
    """The verified sdist archive, downloaded once into ``<cache>/downloads``."""
    dl = cache / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    archive = dl / f"{SOURCE_PACKAGE}-{SOURCE_VERSION}.tar.gz"
    if not archive.exists() or sha256_file(archive) != SOURCE_SHA256:
        log(f"[setup] downloading {SOURCE_PACKAGE}=={SOURCE_VERSION} (Caffe 1.0 source, sdist from PyPI)")
        with tempfile.TemporaryDirectory(dir=dl) as tmp:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                 "--disable-pip-version-check", "-q", "-d", tmp,
                 f"{SOURCE_PACKAGE}=={SOURCE_VERSION}"], capture_output=True, text=True)
            got = Path(tmp) / archive.name
            if not got.exists():
                tail = (proc.stderr.strip().splitlines() or ["no archive written"])[-1]
                raise BuildError(f"pip download {SOURCE_PACKAGE}=={SOURCE_VERSION} failed: {tail}")
            os.replace(got, archive)
    digest = sha256_file(archive)
    if digest != SOURCE_SHA256:
        raise BuildError(f"{archive}: sha256 {digest} does not match the pinned {SOURCE_SHA256}")
    return archive


def prepare_source(archive: Path, dest: Path, flags: BuildFlags) -> list[str]:
    """Unpack ``archive`` into ``dest``, apply the fix-set and install caffegen's CMakeLists.txt."""
    if dest.exists():
        shutil.rmtree(dest)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        (top,) = [p for p in Path(tmp).iterdir() if p.is_dir()]
        fix_set = _fixes.fixes_for(gpu=flags.gpu)
        if flags.gpu:
            fix_set += _fixes_cuda.CUDA_FIXES
        done = _fixes.apply(top, fix_set)
        shutil.copyfile(CMAKE_FILE, top / "CMakeLists.txt")
        if flags.gpu:
            shutil.copyfile(CUDA_CMAKE_FILE, top / "caffegen_cuda.cmake")
        os.replace(top, dest)
    return done


# ---------------------------------------------------------------- CUDA libraries (GPU builds only)

# cuBLAS and cuRAND are not part of the nvcc-only CUDA install on the build machine; the nvidia-* PyPI
# wheels carry headers and libraries (``nvidia/cu13/{include,lib}``, versioned .so names only).
# cuBLAS 13.1.0.3 was measured to build and link against cudart 13.0; cuRAND 10.4.0 is CUDA 13.0's.
CUDA_LIB_WHEELS: tuple[str, ...] = ("nvidia-cublas==13.1.0.3", "nvidia-curand==10.4.0.35")
CUDA_LIBS_TAG = "cu13-" + hashlib.sha256(" ".join(CUDA_LIB_WHEELS).encode()).hexdigest()[:8]


def cuda_libs_root(cache: Path | None = None) -> Path:
    """Where :func:`fetch_cuda_libs` installs the wheels: ``<cache>/cuda-libs/<tag>``."""
    return (cache or cache_root()) / "cuda-libs" / CUDA_LIBS_TAG


def fetch_cuda_libs(cache: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Install cuBLAS + cuRAND from PyPI once (~480 MB download, ~700 MB on disk); return their root.

    The root holds ``include/`` and ``lib/`` (what CMake's ``CUDA_EXTRA_ROOT`` expects).
    """
    target = cuda_libs_root(cache)
    root = target / "nvidia" / "cu13"
    marker = target / "INSTALL_OK"
    if marker.exists() and (root / "include" / "cublas_v2.h").exists():
        return root
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"[setup] downloading {' '.join(CUDA_LIB_WHEELS)} from PyPI (~480 MB, once) into {target}")
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".partial-"))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", "-q",
             "--target", str(tmp), *CUDA_LIB_WHEELS], capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise BuildError(f"pip install {' '.join(CUDA_LIB_WHEELS)} failed: {tail}")
        if not (tmp / "nvidia" / "cu13" / "include" / "cublas_v2.h").exists():
            raise BuildError(f"{' '.join(CUDA_LIB_WHEELS)} installed no nvidia/cu13/include/cublas_v2.h")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)  # all or nothing: a killed download leaves only a .partial-* folder
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    marker.write_text(" ".join(CUDA_LIB_WHEELS) + "\n")
    return root


# ---------------------------------------------------------------- build


def build(flags: BuildFlags = BuildFlags(), jobs: int | None = None, force: bool = False,
          cache: Path | None = None, log: Callable[[str], None] = print,
          extra_cmake_args: tuple[str, ...] = ()) -> BuildEntry:
    """Build Caffe for ``flags`` unless the cache already holds it; return the entry."""
    cache = cache or cache_root()
    entry = entry_for(flags, cache)
    if entry.complete() and not force:
        log(f"[setup] Caffe build cached: {entry.root}")
        return entry
    entry.root.mkdir(parents=True, exist_ok=True)
    with open(entry.root.parent / f"{entry.root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second `make setup` waits for the first, then reuses it
        if entry.complete() and not force:
            log(f"[setup] Caffe build cached: {entry.root}")
            return entry
        entry.marker.unlink(missing_ok=True)
        start = time.time()
        if flags.blas == "reference" and not Path(REFERENCE_BLAS).exists():
            ensure_apt(("libblas3",), log)
        archive = fetch_source(cache, log)
        log(f"[setup] unpacking and fixing the source into {entry.source}")
        prepare_source(archive, entry.source, flags)
        cuda_root = fetch_cuda_libs(cache, log) if flags.gpu else None
        build_dir = entry.root / "build"
        shutil.rmtree(build_dir, ignore_errors=True)
        build_dir.mkdir()
        jobs = jobs or os.cpu_count() or 2
        logfile = entry.root / "build.log"
        with open(logfile, "w") as out:
            cmake_args = [a.replace("<source>", str(entry.source)).replace("<cuda-libs>", str(cuda_root))
                          for a in flags.cmake_args()]
            configure = ["cmake", "-S", str(entry.source), "-B", str(build_dir),
                         f"-DPython3_EXECUTABLE={sys.executable}", *cmake_args, *extra_cmake_args]
            log(f"[setup] configuring ({'CUDA sm_' + flags.cuda_arch if flags.gpu else 'CPU only'}); "
                f"log: {logfile}")
            _run_logged(configure, out, logfile, log)
            log(f"[setup] compiling libcaffe, tools{' and pycaffe' if flags.pycaffe else ''} with {jobs} jobs ("
                + ("about 11 min for CUDA" if flags.gpu else "about 5 min") + " on 2 cores; once per cache key)")
            _run_logged(["cmake", "--build", str(build_dir), "-j", str(jobs)], out, logfile, log, progress=True)
        if not (entry.binary.exists() and (not flags.pycaffe or (entry.python_path / "caffe" / "_caffe.so").exists())):
            raise BuildError(f"build finished without tools/caffe or _caffe.so; see {logfile}")
        info = {"key": entry.root.name, "source": f"{SOURCE_PACKAGE}=={SOURCE_VERSION}",
                "sha256": SOURCE_SHA256, "flags": flags.as_dict(), "python_executable": sys.executable,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "build_seconds": round(time.time() - start, 1)}
        if flags.gpu:
            info["cuda_libs"] = {"wheels": list(CUDA_LIB_WHEELS), "root": str(cuda_root)}
        entry.marker.write_text(json.dumps(info, indent=2) + "\n")
        log(f"[setup] Caffe built in {info['build_seconds']:.0f} s: {entry.root}")
        return entry


def _run_logged(cmd: list[str], out, logfile: Path, log: Callable[[str], None], progress: bool = False) -> None:
    """Run ``cmd`` with its output in ``out``; report build progress every 10 %; one-line error on failure."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    last_shown = -10
    first_error = None
    assert proc.stdout is not None
    for line in proc.stdout:
        out.write(line)
        if first_error is None and (" error:" in line or "Error " in line or "CMake Error" in line):
            first_error = line.strip()
        if progress and line.startswith("[") and "%]" in line[:7]:
            try:
                pct = int(line[1:4])
            except ValueError:
                continue
            if pct >= last_shown + 10:
                last_shown = pct
                log(f"[setup]   {pct:3d}%")
    if proc.wait() != 0:
        raise BuildError(f"{cmd[0]} {cmd[1]} failed (exit {proc.returncode}): "
                         f"{first_error or 'see log'}; full log: {logfile}")


# ---------------------------------------------------------------- venv hook


def link_into_environment(entry: BuildEntry) -> Path | None:
    """Make ``import caffe`` work in the running virtualenv through a .pth file; return its path."""
    if sys.prefix == sys.base_prefix:
        return None
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    pth = site / "caffegen_pycaffe.pth"
    pth.write_text(str(entry.python_path) + "\n")
    return pth


def gpu_requested() -> bool:
    """CAFFE_GPU=1 forces a CUDA build, 0 forbids it; otherwise build CUDA when nvcc and a GPU are both here."""
    env = os.environ.get("CAFFE_GPU", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    return bool(shutil.which("nvcc")) and _gpu_visible()


def gpu_arch(default: str = "90") -> str:
    """``$CAFFE_CUDA_ARCH``, else the compute capability of GPU 0 (``9.0`` -> ``90``), else ``default``.

    A GPU-less build machine gets ``default`` (sm_90: H100/H200); CUDA 13 builds sm_75 and newer only.
    """
    env = os.environ.get("CAFFE_CUDA_ARCH", "").strip()
    if env:
        return env
    if shutil.which("nvidia-smi"):
        proc = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader", "-i", "0"],
                              capture_output=True, text=True)
        cap = proc.stdout.strip().replace(".", "")
        if proc.returncode == 0 and cap.isdigit():
            return cap
    return default


def visible_gpus() -> list[str]:
    """The GPUs ``nvidia-smi -L`` lists (``GPU 0: NVIDIA H200 (UUID: ...)``); none without a driver."""
    if not shutil.which("nvidia-smi"):
        return []
    proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return [ln.strip() for ln in proc.stdout.splitlines() if ln.startswith("GPU")] if proc.returncode == 0 else []


def _gpu_visible() -> bool:
    return bool(visible_gpus())


def _build_native() -> None:
    """The native log scanner (``caffegen/logs/native/logscan.c``) for ``caffegen parse``: built into the cache
    here so a fresh machine has it; without a compiler ``caffegen parse`` uses the reference parser alone."""
    from ..logs import native

    lib = native.load()
    if lib is None:
        print(f"[setup] {native.last_error} (caffegen parse uses the reference parser)")
    else:
        print(f"[setup] native log scanner ready ({native.library_path()})")


def requested_flags(lean: bool = False) -> BuildFlags:
    """The build ``CAFFE_GPU`` and this machine ask for (:func:`gpu_requested`): CUDA for :func:`gpu_arch`, or CPU;
    with ``lean``, the :data:`LEAN` variant a GPU bundle is made of."""
    extra = LEAN if lean else {}
    return BuildFlags(gpu=True, cuda_arch=gpu_arch(), **extra) if gpu_requested() else BuildFlags(**extra)


def toolchain_parser(description: str):
    """The options both toolchain commands (``make caffe`` and ``make gpu-bundle``) take."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--force", action="store_true", help="rebuild even when the cache entry exists")
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--no-apt", action="store_true", help="do not install Debian packages")
    return ap


def main(argv: list[str] | None = None) -> int:
    """``python -m caffegen.toolchain``: what ``make caffe`` runs (also ``caffegen build-caffe``)."""
    args = toolchain_parser(__doc__.splitlines()[0]).parse_args(argv)
    try:
        if not args.no_apt:
            ensure_apt()
        flags = requested_flags()
        gpu = flags.gpu
        entry = build(flags, jobs=args.jobs, force=args.force)
    except BuildError as exc:
        print(f"caffegen: error: {exc}", file=sys.stderr)
        return 1
    _build_native()
    if gpu and not _gpu_visible():
        # A CUDA pycaffe imports without a GPU, but the CPU build serves this machine better (and
        # `locate()` picks it here too): keep `import caffe` in the virtualenv pointing at that one.
        print(f"[setup] no GPU visible: pycaffe in {sys.prefix} left as it was (CUDA build: {entry.python_path})")
        return 0
    pth = link_into_environment(entry)
    if pth:
        print(f"[setup] pycaffe linked into {sys.prefix} ({pth.name})")
    return 0


def test_packages_main() -> int:
    """Install :data:`TEST_APT_PACKAGES` (a real browser for the page tests); one error line when it cannot."""
    try:
        ensure_apt(TEST_APT_PACKAGES)
    except BuildError as exc:
        print(f"caffegen: error: the tests need {' '.join(TEST_APT_PACKAGES)}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
