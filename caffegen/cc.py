"""The system C compiler, for caffegen's two small native helpers: the log scanner (a shared library, loaded with
ctypes) and the launcher that makes caffe die with the driver (a program). Each is compiled once into
``<cache>/native/<name>-<hash><suffix>`` (the hash covers the source, the compiler command and the flags),
through a temp file and a rename, and reused afterwards. No Python C-API, no extra dependency; where no compiler
exists the callers do without (and say so).
"""
from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import tempfile
from pathlib import Path

from .paths import cache_root

__all__ = ["compiler", "output_path", "compile_c"]


def compiler() -> list[str]:
    """``$CC`` (split like a shell would), else ``cc``."""
    return shlex.split(os.environ.get("CC") or "cc")


def output_path(source: Path, name: str, flags: tuple[str, ...], suffix: str = "",
                cache_dir: str | Path | None = None, libs: tuple[str, ...] = ()) -> Path:
    """Where the build of ``source`` with these flags (and ``libs``, linked after it) lives (built or not)."""
    command = "\0".join(compiler() + list(flags) + list(libs))
    key = hashlib.sha256(source.read_bytes() + command.encode()).hexdigest()[:12]
    return Path(cache_dir if cache_dir is not None else cache_root()) / "native" / f"{name}-{key}{suffix}"


def compile_c(source: Path, name: str, flags: tuple[str, ...], suffix: str = "", *, libs: tuple[str, ...] = (),
              cache_dir: str | Path | None = None, force: bool = False) -> Path:
    """Compile ``source`` (reused when the cache already holds it). Raises OSError / CalledProcessError."""
    dst = output_path(source, name, flags, suffix, cache_dir, libs)
    if dst.is_file() and not force:
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=suffix, dir=dst.parent)
    os.close(fd)
    try:
        subprocess.run([*compiler(), *flags, "-o", tmp, str(source), *libs], check=True, capture_output=True,
                       text=True, timeout=300)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dst
