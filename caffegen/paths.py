"""Where caffegen keeps things, and the two file operations every stage shares.

* :func:`cache_root`: the cache outside the checkout (Caffe builds, the native log scanner, demo images);
* :func:`package_file`: a file shipped inside the package (templates, specs, CMake files, C source), read through
  :mod:`importlib.resources` so that it works the same from a checkout, an editable install and a wheel;
* :func:`write_atomic`: write then rename, so a reader or a crash never sees half a file;
* :func:`sha256_file`: the hash recorded for reproducibility (manifests, build keys, downloads).
"""
from __future__ import annotations

import hashlib
import os
import secrets
from importlib import resources
from pathlib import Path

__all__ = ["cache_root", "package_file", "write_atomic", "sha256_file"]


def cache_root() -> Path:
    """``$CAFFEGEN_CACHE``, else ``$XDG_CACHE_HOME/caffegen``, else ``~/.cache/caffegen``."""
    if os.environ.get("CAFFEGEN_CACHE"):
        return Path(os.environ["CAFFEGEN_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "caffegen"


def package_file(package: str, *parts: str) -> Path:
    """A data file shipped in ``package`` (e.g. ``package_file("caffegen.templates", "solver.prototxt.j2")``).

    caffegen is installed as files (a checkout, an editable install or an unpacked wheel), so the resource is a
    real path; it need not exist (callers check, and say which file is missing)."""
    return Path(str(resources.files(package).joinpath(*parts)))


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place (parents are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
