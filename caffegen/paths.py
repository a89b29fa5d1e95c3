"""Where caffegen keeps things, and the two file operations every stage shares.

* :func:`cache_root`: the cache outside the checkout (Caffe builds, the native log scanner, demo images);
* :func:`package_file`: a file shipped inside the package (templates, specs, CMake files, C source), read through
  :mod:`importlib.resources` so that it works the same from a checkout, an editable install and a wheel;
* :func:`write_atomic`: write then rename, so a reader or a crash never sees half a file;
* :func:`sha256_file`: the hash recorded for reproducibility (manifests, build keys, downloads);
* :func:`exclusive`: an flock held while one process writes a folder, so a second one refuses instead of mixing in;
* :func:`replace_dir`: a folder written whole beside its place, then swapped in (``eval/``, a TensorBoard export).
"""
from __future__ import annotations

import hashlib
import os
import secrets
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Iterator

__all__ = ["cache_root", "package_file", "write_atomic", "sha256_file", "exclusive", "replace_dir"]


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


@contextmanager
def exclusive(lock: Path, busy: str) -> Iterator[None]:
    """Hold an flock on ``lock`` (which records the holder's pid); while another process holds it, raise one
    CaffegenError line: ``busy`` with ``{pid}`` filled in. The kernel drops the lock when its holder dies."""
    import fcntl

    from .errors import CaffegenError

    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            raise CaffegenError(busy.format(pid=holder)) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)


def replace_dir(tmp: Path, dest: Path) -> Path:
    """Put the finished folder ``tmp`` at ``dest``, replacing what was there (two renames: a reader sees the old
    folder or the new one, never a mix)."""
    import shutil

    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest
