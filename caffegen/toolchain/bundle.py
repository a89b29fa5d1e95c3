"""A self-contained Caffe folder that travels to a machine with no Debian -dev packages and no package registry
(the GPU hosts this project can borrow: one copy of at most 64 MiB), made from a cache entry:

    bundle/bin/caffe            RUNPATH $ORIGIN/../lib
    bundle/lib/libcaffe.so...   and every shared library caffe needs that is not glibc's or CUDA's, RUNPATH $ORIGIN
    bundle/bundle.json          the build flags and key, each file with its size, what the host must provide

glibc (libc, libm, libpthread, libdl, librt, the loader) always comes from the host: the bundle says the newest
GLIBC symbol version it needs. The CUDA libraries (cudart, cuBLAS, cuBLASLt, cuRAND) come from the host too — the
GPU hosts hold them as the ``nvidia-*`` Python packages; ``bench/gpu/run.sh`` finds them and puts them on
``LD_LIBRARY_PATH``. Everything else, libstdc++ included (a host's may be older than the build's), is copied.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .build import BuildEntry, BuildError, build, ensure_apt, requested_flags, toolchain_parser

__all__ = ["Bundle", "make_bundle", "ldd", "main", "HOST_LIBS", "CUDA_LIBS", "LIMIT"]

LIMIT = 64 * 1024 * 1024   # what one call to the GPU machine carries
HOST_LIBS = re.compile(r"^(ld-linux.*|linux-vdso.*|libc|libm|libpthread|libdl|librt|libresolv|libutil)\.so")
CUDA_LIBS = re.compile(r"^lib(cudart|cublas|cublasLt|curand|cuda|nvidia-ml)\.so")


@dataclass
class Bundle:
    root: Path
    files: dict[str, int]          # relative path -> bytes (bin/ and lib/; bundle.json beside them is ~3 kB)
    from_host: list[str]           # libraries the host must provide (glibc's and CUDA's)
    glibc: str | None              # the newest GLIBC_x.y the bundle's files need

    @property
    def size(self) -> int:
        return sum(self.files.values())


def ldd(binary: Path, env: dict[str, str] | None = None) -> dict[str, str | None]:
    """soname -> resolved path (None: not found), as the dynamic loader resolves ``binary``'s libraries."""
    proc = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env)
    out: dict[str, str | None] = {}
    for line in proc.stdout.splitlines():
        line = line.strip()
        if "=>" in line:
            name, _, rest = line.partition("=>")
            rest = rest.strip()
            out[name.strip()] = None if rest.startswith("not found") else rest.split(" (")[0].strip()
        elif line and not line.startswith("statically"):
            path = line.split(" (")[0]
            out[Path(path).name] = path
    return out


def _glibc_needed(files: list[Path]) -> str | None:
    """The newest ``GLIBC_x.y`` version any of ``files`` references (``objdump -T``)."""
    best: tuple[int, ...] = ()
    for f in files:
        proc = subprocess.run(["objdump", "-T", str(f)], capture_output=True, text=True)
        for v in re.findall(r"GLIBC_(\d+(?:\.\d+)+)", proc.stdout):
            best = max(best, tuple(int(x) for x in v.split(".")))
    return ".".join(map(str, best)) if best else None


def make_bundle(entry: BuildEntry, out: Path, *, limit: int = LIMIT,
                log: Callable[[str], None] = print) -> Bundle:
    """Copy ``entry``'s caffe binary and everything it links (but glibc and CUDA) into ``out`` with relative
    RUNPATHs; refuse (one line naming the biggest files) when the result exceeds ``limit`` bytes."""
    if not entry.binary.is_file():
        raise BuildError(f"{entry.root}: no build/tools/caffe to bundle (build that variant first)")
    if not shutil.which("patchelf"):
        ensure_apt(("patchelf",), log)
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "bin").mkdir(parents=True)
    (tmp / "lib").mkdir()
    binary = tmp / "bin" / "caffe"
    shutil.copy2(entry.binary.resolve(), binary)
    libs = ldd(entry.binary)
    missing = [name for name, path in libs.items() if path is None and not CUDA_LIBS.match(name)]
    if missing:
        raise BuildError(f"{entry.binary}: the loader finds no {', '.join(missing)} on this machine")
    from_host = []
    for name, path in sorted(libs.items()):
        if HOST_LIBS.match(name) or CUDA_LIBS.match(name):
            from_host.append(name)
            continue
        shutil.copy2(Path(path).resolve(), tmp / "lib" / name)   # under its soname, the name the loader asks for
    _patch(binary, "$ORIGIN/../lib")
    for lib in sorted((tmp / "lib").iterdir()):
        os.chmod(lib, 0o755)
        _patch(lib, "$ORIGIN")
    files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
    bundle = Bundle(out, files, from_host, _glibc_needed([binary, *sorted((tmp / "lib").iterdir())]))
    if bundle.size > limit:
        biggest = ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sorted(files.items(), key=lambda kv: -kv[1])[:4])
        shutil.rmtree(tmp, ignore_errors=True)
        raise BuildError(f"the bundle would be {bundle.size / 2**20:.1f} MiB, over {limit / 2**20:.0f} MiB "
                         f"(biggest: {biggest}); bundle the lean variant (toolchain.build.LEAN)")
    info = {"key": entry.root.name, "flags": entry.info().get("flags"), "bytes": bundle.size, "files": files,
            "from_host": {"glibc": f">= {bundle.glibc}", "libraries": from_host}}
    (tmp / "bundle.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    log(f"[bundle] {out}: {len(files)} files, {bundle.size / 2**20:.1f} MiB; from the host: {', '.join(from_host)}")
    return bundle


def _patch(path: Path, rpath: str) -> None:
    proc = subprocess.run(["patchelf", "--set-rpath", rpath, str(path)], capture_output=True, text=True)  # RUNPATH
    if proc.returncode != 0:
        raise BuildError(f"patchelf --set-rpath {rpath} {path.name} failed: {proc.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    """``python -m caffegen.toolchain --bundle DIR``: build the lean variant (CUDA when :func:`~caffegen.toolchain.build.gpu_requested` says so, as
    for ``make caffe``: ``CAFFE_GPU=1``, which ``make gpu-bundle`` sets) and bundle it into DIR."""
    import sys

    ap = toolchain_parser("Build the lean Caffe variant and bundle it for a GPU host.")
    ap.add_argument("--bundle", type=Path, required=True, metavar="DIR")
    args = ap.parse_args(argv)
    try:
        if not args.no_apt:
            ensure_apt()
        make_bundle(build(requested_flags(lean=True), jobs=args.jobs, force=args.force), args.bundle)
    except BuildError as exc:
        print(f"caffegen: error: {exc}", file=sys.stderr)
        return 1
    return 0
