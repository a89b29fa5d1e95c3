"""Caffe's own files that the build does not need, from the same verified source package: its ``tools/extra``
scripts (the reference the log parser is tested and benchmarked against) and the Model Zoo's train_val and solver
files (the user nets the tests and docs try). Never committed here: reached through :func:`caffe_source_dir`."""
from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Callable

from ..paths import cache_root
from .build import SOURCE_PACKAGE, SOURCE_VERSION, BuildFlags, entry_for, fetch_source

__all__ = ["caffe_source_dir", "caffe_tools_extra", "caffe_models_dir", "MODEL_ZOO_NETS"]


def caffe_source_dir(relative: str, names: tuple[str, ...], cache: Path | None = None,
                     log: Callable[[str], None] = print) -> Path:
    """A folder of the Caffe source tree (``relative``, e.g. ``tools/extra``) holding ``names``: from
    ``$CAFFE_ROOT`` when that Caffe has them, else the cached build's source, else the files taken from the verified
    sdist (downloaded once). Never committed here: tests and benchmarks reach Caffe's own files through this."""
    root = os.environ.get("CAFFE_ROOT")
    candidates = [Path(root) / relative] if root else []
    candidates.append(entry_for(BuildFlags(), cache).source / relative)
    for folder in candidates:
        if all((folder / n).is_file() for n in names):
            return folder
    cache = cache or cache_root()
    dest = cache / "downloads" / f"{SOURCE_PACKAGE}-{SOURCE_VERSION}-src" / relative
    if not all((dest / n).is_file() for n in names):
        archive = fetch_source(cache, log)
        wanted = {f"/{relative}/{n}": n for n in names}
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = next((n for suffix, n in wanted.items() if member.name.endswith(suffix)), None)
                if member.isfile() and name:
                    target = dest / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    tmp = target.with_name(f".{target.name}.tmp")
                    tmp.write_bytes(tar.extractfile(member).read())
                    os.replace(tmp, target)
    return dest


def caffe_tools_extra(cache: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """The folder holding Caffe's own ``parse_log.py`` and ``extract_seconds.py``: the reference the log parser is
    tested and benchmarked against."""
    return caffe_source_dir("tools/extra", ("parse_log.py", "extract_seconds.py"), cache, log)


MODEL_ZOO_NETS = ("bvlc_reference_caffenet", "bvlc_alexnet", "bvlc_googlenet", "finetune_flickr_style")


def caffe_models_dir(cache: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """The Caffe source's ``models/`` folder with the train_val and solver files of :data:`MODEL_ZOO_NETS`."""
    names = tuple(f"{net}/{f}" for net in MODEL_ZOO_NETS for f in ("train_val.prototxt", "solver.prototxt"))
    return caffe_source_dir("models", names, cache, log)
