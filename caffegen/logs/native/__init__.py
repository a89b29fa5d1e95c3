"""The native log scanner (``logscan.c``), the reference parser's accelerator: built with the system C
compiler, loaded through ctypes.

:func:`build` compiles ``logscan.c`` once into the caffegen cache (``<cache>/native/logscan-<hash>.so``; the
hash covers the source, the compiler command and the flags), atomically (temp file + rename), and reuses it
afterwards. :func:`load` returns the loaded library, building it on first use, or None when it cannot be had
(no compiler, a failed build, a library that does not load): callers then take the reference parser. No
Python C-API and no extra dependency: the library exports plain C functions (see the comment at the top of
``logscan.c`` for what it reads and what it declines).

``python -m caffegen.toolchain`` (``make setup``) builds it after Caffe, so a fresh machine has it ready.
:mod:`.scan` turns a scan into :class:`~caffegen.logs.curves.Curves`.
"""
from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

from ...cc import compile_c, output_path
from ...paths import package_file

__all__ = ["SOURCE", "FLAGS", "build", "load", "library_path", "last_error"]

SOURCE = package_file("caffegen.logs.native", "logscan.c")
FLAGS = ("-O2", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math")
LIBS = ("-lm",)
_loaded: dict[Path, ctypes.CDLL | None] = {}  # per library path: this process tries each build once
last_error: str | None = None  # why the last load() gave None (for `caffegen doctor`-style reports)


def library_path(cache_dir: str | Path | None = None) -> Path:
    """Where the library for this source, compiler and flags lives (built or not)."""
    return output_path(SOURCE, "logscan", FLAGS, ".so", cache_dir, LIBS)


def build(cache_dir: str | Path | None = None, *, force: bool = False) -> Path:
    """Compile ``logscan.c`` into the cache (reused when present). Raises OSError / CalledProcessError."""
    return compile_c(SOURCE, "logscan", FLAGS, ".so", libs=LIBS, cache_dir=cache_dir, force=force)


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    vp, i64, p64, pd, pu8 = (ctypes.c_void_p, ctypes.c_int64, ctypes.POINTER(ctypes.c_int64),
                             ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_uint8))
    for name, res, args in (
            ("ls_new", vp, []),
            ("ls_free", None, [vp]),
            ("ls_scan_file", ctypes.c_int, [vp, ctypes.c_char_p, i64, i64, p64]),
            ("ls_decline_line", i64, [vp]),
            ("ls_info", None, [vp, p64, pd]),
            ("ls_colname", ctypes.c_char_p, [vp, i64, i64]),
            ("ls_loss", None, [vp, p64, pd]),
            ("ls_fetch_int", None, [vp, i64, i64, p64]),
            ("ls_fetch_float", None, [vp, i64, i64, pd, pu8]),
            ("ls_final_best", None, [vp, i64, i64, i64, p64, pd, p64]),
            ("ls_write", ctypes.c_int, [vp, i64, i64, ctypes.c_char_p]),
            ("ls_parse_num", ctypes.c_int, [ctypes.c_char_p, i64, pd]),
            ("ls_simd", ctypes.c_int, [i64])):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def load(cache_dir: str | Path | None = None) -> ctypes.CDLL | None:
    """The scanner library, built into the cache on first use; None (never an error) when it cannot be had."""
    global last_error
    try:
        path = library_path(cache_dir)
    except OSError as exc:  # the source is missing from the installation
        last_error = f"no scanner source: {exc}"
        return None
    if path in _loaded:
        return _loaded[path]
    lib = None
    try:
        lib = _declare(ctypes.CDLL(str(build(cache_dir))))
        last_error = None
    except (OSError, subprocess.SubprocessError, AttributeError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        last_error = f"native log scanner unavailable: {detail.strip()[:500]}"
    _loaded[path] = lib
    return lib
